"""The native Delta engine: Spark's own ``format("delta")``, on clusters with Delta (Databricks,
EMR) and on local Spark with the cached Delta jars.

Reads and writes are Spark's; everything else (existence, versions, a write's own commit, MERGE)
is Delta SQL rather than the ``delta.tables`` Python API, so the engine runs the same on a
classic session and over Spark Connect without Delta's Connect plugin. The shared parts (the
write result, schema and merge checks, error classification) live in ``mlcore.io.engines``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlcore.io.engines import (
    WriteMode,
    WriteResult,
    _check_totals,
    _short,
    check_merge_source,
    error_condition,
)
from mlcore.io.errors import (
    ConcurrentWriteError,
    DeltaIOError,
    EngineUnavailableError,
    ReplaceWhereViolation,
)
from mlcore.io.predicates import Predicate, to_spark_column, to_sql
from mlcore.io.schema import check_duplicate_columns, check_write_schema, with_default_string_types
from mlcore.io.tables import TableRef, WriteToken, check_identifier
from mlcore.io.transform import ArrowTransform

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)


def native_write_plan(
    table: TableRef,
    mode: WriteMode,
    replace_where: Predicate | None,
    token: WriteToken | None,
    merge_schema: bool,
    metadata: Mapping[str, str],
    table_exists: bool,
) -> dict[str, Any]:
    """The DataFrameWriter settings for a native Delta write (pure, so it is unit-tested).

    Option names are Delta's own: ``txnAppId``/``txnVersion`` make the write idempotent (Delta
    skips it when the table already holds that version), ``replaceWhere`` replaces exactly the
    predicate's rows and rejects rows outside it, ``userMetadata`` lands in commitInfo.
    """
    options: dict[str, str] = {"userMetadata": json.dumps(dict(metadata), sort_keys=True)}
    if token is not None:
        options["txnAppId"] = token.app_id
        options["txnVersion"] = str(token.version)
    if merge_schema:
        options["mergeSchema"] = "true"
    if table.catalog_name and table.external and not table_exists:
        options["path"] = table.uri  # registered in the catalog, stored at its lake path
    if mode == "append":
        spark_mode = "append"
    elif mode == "overwrite":
        spark_mode = "overwrite"
    elif mode == "replace_where":
        if not replace_where:
            raise ValueError("mode 'replace_where' needs a replace_where predicate")
        spark_mode = "overwrite"
        options["replaceWhere"] = to_sql(replace_where, "spark")
    else:
        raise ValueError(f"unknown write mode {mode!r}")
    return {
        "format": "delta",
        "mode": spark_mode,
        "options": options,
        "partition_by": list(table.partition_by) if not table_exists else [],
        "target": ("table", table.catalog_name) if table.catalog_name else ("path", table.uri),
    }


WRITE_ID_KEY = "mlcore.write_id"
# Delta's optimistic-concurrency failures (error classes and exception names), Spark and Delta 4.
_NATIVE_CONFLICT = re.compile(
    r"DELTA_CONCURRENT_\w+|Concurrent(?:Append|DeleteRead|DeleteDelete|Transaction|Write)Exception"
    r"|MetadataChangedException|ProtocolChangedException|DELTA_METADATA_CHANGED|DELTA_PROTOCOL_CHANGED"
)


def native_conflict(
    table_name: str, mode: WriteMode, replace_where: Predicate | None, exc: BaseException
) -> ConcurrentWriteError | None:
    """Delta's concurrent-commit failure as the same loud error delta-rs writes raise, else None."""
    found = _NATIVE_CONFLICT.search(str(exc))
    if found is None:
        return None
    if mode == "replace_where" and isinstance(replace_where, Mapping):
        where = ", ".join(f"{column}={value}" for column, value in replace_where.items())
        what = f"changed data in the partition this write replaces ({where})"
    elif mode == "overwrite":
        what = "changed data this write overwrites (the whole table)"
    else:
        what = "changed what this write read"
    return ConcurrentWriteError(
        f"concurrent write conflict on table {table_name!r}: another writer {what} "
        f"(Delta: {found.group(0)}); this write was not committed"
    )


def native_merge_condition(keys: Sequence[str]) -> str:
    return " AND ".join(f"t.`{check_identifier(k)}` = s.`{k}`" for k in keys)


def native_merge_statement(target: str, source_view: str, keys: Sequence[str]) -> str:
    """An upsert on ``keys``: matched rows take the source's values, new keys are inserted."""
    return (
        f"MERGE INTO {target} AS t USING {source_view} AS s ON {native_merge_condition(keys)} "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )


NO_DELTA_JARS = (
    "storage.delta_engine is 'spark' but this session has no Delta classes on the JVM classpath "
    "(a Spark Connect server needs them too); add the Delta jars (e.g. ./spark-submit.sh "
    "--with-delta, scripts/connect_server.sh start --with-delta) or use 'auto'/'deltars'"
)
# Delta's answers for a path that holds no Delta table (missing, empty or another format).
NOT_A_DELTA_TABLE = ("DELTA_TABLE_ONLY_OPERATION", "DELTA_MISSING_DELTA_TABLE")


def _is_missing_delta_sql(exc: BaseException) -> bool:
    """What Spark without the Delta extension says to Delta SQL: DESCRIBE HISTORY does not
    parse, and ``delta.`path``` is looked up as a table in a schema named ``delta``."""
    condition = error_condition(exc)
    text = str(exc)
    return condition == "PARSE_SYNTAX_ERROR" or (
        condition == "TABLE_OR_VIEW_NOT_FOUND" and "`delta`." in text
    )


class SparkDeltaEngine:
    """Native ``format("delta")``: used wherever the Delta jars are on the classpath.

    Everything beyond reads and writes (history, existence, MERGE) is Delta SQL, not the
    ``delta.tables`` API: SQL works the same on a classic session and over Spark Connect, where
    the Python API needs Delta's Connect plugin on the server (Databricks has it; a plain Spark
    Connect server with the Delta jars does not)."""

    name = "spark"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self._schemas: set[str] = set()  # catalog schemas known to exist

    @staticmethod
    def sql_name(table: TableRef) -> str:
        """The table as Delta SQL names it: its catalog name, else ``delta.`path```."""
        if table.catalog_name:
            return table.catalog_name
        return "delta.`" + table.uri.replace("`", "``") + "`"

    def _delta_sql(self, statement: str) -> DataFrame:
        """Run one Delta SQL statement; a session without Delta says so in one line."""
        try:
            return self.spark.sql(statement)
        except Exception as exc:
            if _is_missing_delta_sql(exc):
                raise EngineUnavailableError(NO_DELTA_JARS) from None
            raise

    def _history(self, table: TableRef, count: int) -> list[Mapping[str, Any]] | None:
        """The newest ``count`` commits (version, userMetadata, operationMetrics), newest
        first; None where the table's path holds no Delta table."""
        try:
            rows = self._delta_sql(
                f"DESCRIBE HISTORY {self.sql_name(table)} LIMIT {int(count)}"
            ).select("version", "userMetadata", "operationMetrics").collect()
        except EngineUnavailableError:
            raise
        except Exception as exc:
            if error_condition(exc) in NOT_A_DELTA_TABLE:
                return None
            raise
        return [row.asDict() for row in rows]

    def _is_delta_path(self, table: TableRef) -> bool:
        path_only = dataclasses.replace(table, catalog_name=None) if table.catalog_name else table
        return self._history(path_only, 1) is not None

    def exists(self, table: TableRef) -> bool:
        if table.catalog_name:
            if self.spark.catalog.tableExists(table.catalog_name):
                return True
            if not table.external:
                return False
            at_path = self._is_delta_path(table)
            if at_path:  # a lake table the catalog does not know yet: register it, unchanged
                self._create_schema(table)
                location = table.uri.replace("'", "\\'")
                self.spark.sql(
                    f"CREATE TABLE IF NOT EXISTS {table.catalog_name} USING DELTA LOCATION '{location}'"
                )
            return at_path
        return self._is_delta_path(table)

    def _create_schema(self, table: TableRef) -> None:
        """The catalog schema of an external table (storage.catalog_schema), created if missing."""
        schema = table.catalog_name.rsplit(".", 1)[0] if table.catalog_name else None
        if table.external and schema and schema not in self._schemas:
            self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            self._schemas.add(schema)

    def version(self, table: TableRef) -> int | None:
        if table.catalog_name:  # exists() also registers an external lake table
            return self._latest_version(table) if self.exists(table) else None
        # A path table: one DESCRIBE HISTORY answers both "is it there" and "at which version".
        commits = self._history(table, 1)
        return int(commits[0]["version"]) if commits else None

    def layout(self, table: TableRef) -> tuple[StructType, list[str]] | None:
        """The table's schema and partition columns as they are (None: no table)."""
        if not self.exists(table):
            return None
        name = table.catalog_name or f"delta.`{table.uri}`"
        detail = self._delta_sql(f"DESCRIBE DETAIL {name}").collect()[0]
        schema = self.read(table)[0].schema
        return schema, list(detail["partitionColumns"] or [])

    def rewrite(self, df: DataFrame, table: TableRef, metadata: Mapping[str, str]) -> WriteResult:
        """Replace the whole table with ``df``, schema and partitioning included, in one commit
        (a one-time migration; Delta reads the old snapshot while it writes the new one)."""
        before = self.version(table)
        writer = (
            with_default_string_types(df).write.format("delta").mode("overwrite")
            .option("overwriteSchema", "true").option("userMetadata", json.dumps(dict(metadata)))
        )  # fmt: skip
        if table.partition_by:
            writer = writer.partitionBy(*table.partition_by)
        if table.catalog_name:
            writer.saveAsTable(table.catalog_name)
        else:
            writer.save(table.uri)
        after = self.version(table)
        return WriteResult(table.name, self.name, after, committed=after != before)

    def _latest_version(self, table: TableRef) -> int:
        """The version of a table known to exist."""
        commits = self._history(table, 1)
        if not commits:
            raise DeltaIOError(f"table {table.name!r} has no Delta history at {table.uri}")
        return int(commits[0]["version"])

    def transaction_version(self, table: TableRef, app_id: str) -> int | None:
        """The latest txn version of ``app_id`` in the table, so that a replayed job skips its
        work before doing it (Delta itself skips the replayed write either way). delta-spark has
        no public txn API: the log is read with delta-rs where the table has a path (path and
        external catalog tables); None for catalog-managed tables or when delta-rs cannot read it."""
        if table.catalog_name and not table.external:
            return None
        try:
            from deltalake import DeltaTable as RsTable

            return RsTable(table.uri).transaction_version(app_id)
        except Exception:  # noqa: BLE001 - no early skip; the write's txn still makes it a no-op
            log.debug("%s: txn versions unreadable with delta-rs", table.name, exc_info=True)
            return None

    def read(self, table: TableRef, version: int | None = None, where: Predicate | None = None) -> tuple[DataFrame, int | None]:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        df = reader.table(table.catalog_name) if table.catalog_name else reader.load(table.uri)
        if where:
            df = df.filter(to_spark_column(where))
        return df, version if version is not None else self.version(table)

    def write(
        self,
        df: DataFrame,
        table: TableRef,
        mode: WriteMode,
        replace_where: Predicate | None,
        token: WriteToken | None,
        merge_schema: bool,
        metadata: Mapping[str, str],
        transform: ArrowTransform | None = None,
        totals: Sequence[str] = (),
    ) -> WriteResult:
        """Native Delta: a transform runs as ``mapInArrow`` in the write's own plan; ``totals``
        are not counted here (the result's ``totals`` stay None: read the table back)."""
        if transform is not None:
            df = transform.apply(df)
        df = with_default_string_types(df)  # the table schema readable by delta-rs (Connect)
        _check_totals(table.name, df.schema, totals)
        exists = self.exists(table)
        before = self._latest_version(table) if exists else None
        check_duplicate_columns(table.name, df.schema)
        if exists:
            reader = self.spark.read.format("delta")
            current = (
                reader.table(table.catalog_name) if table.catalog_name else reader.load(table.uri)
            )
            check_write_schema(table.name, current.schema, df.schema, merge_schema)
            df = df.select(*[f"`{n}`" for n in current.columns], *[
                f"`{n}`" for n in df.columns if n not in current.columns
            ])
        write_id = uuid.uuid4().hex  # finds this write's own commit among concurrent ones
        metadata = {**metadata, WRITE_ID_KEY: write_id}
        plan = native_write_plan(table, mode, replace_where, token, merge_schema, metadata, exists)
        if not exists:
            self._create_schema(table)
        writer = df.write.format(plan["format"]).mode(plan["mode"]).options(**plan["options"])
        if plan["partition_by"]:
            writer = writer.partitionBy(*plan["partition_by"])
        kind, target = plan["target"]
        try:
            if kind == "table":
                writer.saveAsTable(target)
            else:
                writer.save(target)
        except Exception as exc:
            if "DELTA_REPLACE_WHERE_MISMATCH" in str(exc):
                raise ReplaceWhereViolation(f"table {table.name!r}: {_short(exc)}") from None
            conflict = native_conflict(table.name, mode, replace_where, exc)
            if conflict is not None:
                raise conflict from None
            landed = self._landed_despite(table, before, write_id, exc)
            if landed is not None:
                return landed
            raise DeltaIOError(
                f"write to table {table.name!r} failed, table left at version {before}: {_short(exc)}"
            ) from exc
        return self._own_commit(table, before, write_id)

    def _own_commit(self, table: TableRef, before: int | None, write_id: str) -> WriteResult:
        """This write's commit, found by its write id: with concurrent writers the table's latest
        version may be another writer's, and a write Delta skipped (its txn already applied)
        committed nothing although the version may have moved. One history call in the usual
        case (the latest commit is this write's)."""
        latest = self._recent_commits(table, 1)
        if not latest:
            return WriteResult(table.name, self.name, before, committed=False)
        after = int(latest[0]["version"])
        base = -1 if before is None else before
        if after <= base:
            return WriteResult(table.name, self.name, after, committed=False)
        commits = latest if after - base == 1 else self._recent_commits(table, after - base)
        for row in commits:
            if row["userMetadata"] and write_id in row["userMetadata"]:
                metrics = row["operationMetrics"] or {}
                rows = metrics.get("numOutputRows")
                if rows is None and metrics.get("numFiles") == "0":
                    rows = 0  # an empty write: Delta reports no row count without files
                return WriteResult(
                    table.name,
                    self.name,
                    int(row["version"]),
                    committed=True,
                    rows=int(rows) if rows is not None else None,
                )
        return WriteResult(table.name, self.name, after, committed=False)

    def _landed_despite(
        self, table: TableRef, before: int | None, write_id: str, exc: BaseException
    ) -> WriteResult | None:
        """A write whose call raised after its commit landed (a lost py4j answer, a driver-side
        timeout) is a committed write, not a failure to retry blindly."""
        try:
            result = self._own_commit(table, before, write_id)
        except Exception:  # noqa: BLE001 - the table cannot be read: report the write's error
            return None
        if not result.committed:
            return None
        log.warning(
            "%s: the write raised after its commit landed (v%s): %s",
            table.name,
            result.version,
            _short(exc),
        )
        return result

    def _recent_commits(self, table: TableRef, count: int) -> list[Mapping[str, Any]]:
        """The newest ``count`` commits: version, userMetadata, operationMetrics."""
        return self._history(table, count) or []

    @contextlib.contextmanager
    def _session_txn(
        self, token: WriteToken | None, metadata: Mapping[str, str] | None = None
    ) -> Iterator[None]:
        """Delta reads txn ids and commit user metadata for MERGE from session confs (a MERGE
        has no writer options); set them for one statement only."""
        confs: dict[str, str] = {}
        if token is not None:
            confs["spark.databricks.delta.write.txnAppId"] = token.app_id
            confs["spark.databricks.delta.write.txnVersion"] = str(token.version)
        if metadata:
            confs["spark.databricks.delta.commitInfo.userMetadata"] = json.dumps(
                dict(metadata), sort_keys=True
            )
        for key, value in confs.items():
            self.spark.conf.set(key, value)
        try:
            yield
        finally:
            for key in confs:
                self.spark.conf.unset(key)

    def merge(
        self,
        df: DataFrame,
        table: TableRef,
        keys: Sequence[str],
        token: WriteToken | None,
        metadata: Mapping[str, str],
    ) -> WriteResult:
        if not self.exists(table):
            return self.write(df, table, "append", None, token, False, metadata)
        before = self.version(table)
        check_merge_source(df, table.name, keys)
        source = f"mlcore_merge_source_{uuid.uuid4().hex}"
        with_default_string_types(df).createOrReplaceTempView(source)
        try:
            with self._session_txn(token, metadata):
                self._delta_sql(native_merge_statement(self.sql_name(table), source, keys))
        finally:
            df.sparkSession.catalog.dropTempView(source)
        after = self.version(table)
        return WriteResult(table.name, self.name, after, committed=after != before)
