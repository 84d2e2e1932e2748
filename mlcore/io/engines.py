"""The two Delta engines behind ``DeltaTables``, and how one is chosen; the delta-rs engine and
what both share (the write result, schema and merge checks, error classification).

- ``spark``: native ``format("delta")`` (clusters, or local Spark with the Delta jars), in
  ``mlcore.io.native_engine``.
- ``deltars``: delta-rs (the ``deltalake`` package) for sessions without the jars. Reads are a
  delta-rs file list + Spark's own parquet scan (partition values joined from the Delta log);
  writes go through the distributed Python Data Source in ``deltars_writer``.

Both engines apply the same schema checks and idempotency rules, so a job behaves the same on a
laptop and on a cluster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mlcore.io.errors import (
    ConcurrentWriteError,
    DeltaIOError,
    ReplaceWhereViolation,
    UnsupportedTableError,
)
from mlcore.io.frames import is_driver_local
from mlcore.io.predicates import (
    Predicate,
    partition_columns_only,
    to_partition_filters,
    to_spark_column,
    to_sql,
)
from mlcore.io.schema import (
    as_nullable,
    check_duplicate_columns,
    check_write_schema,
)
from mlcore.io.tables import TableRef, WriteToken, check_identifier
from mlcore.io.transform import ArrowTransform
from mlcore.spark_classic import activate_on_this_thread, status_tracker

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from mlcore.io.scan import ArrowScan
    from mlcore.io.write_leases import WriteLease

log = logging.getLogger(__name__)

WriteMode = Literal["append", "overwrite", "replace_where"]
ENGINE_CONF_KEY = "mlcore.delta.engine"
_READER_FEATURES_OK = {"timestampNtz", "v2Checkpoint", "deletionVectors", "vacuumProtocolCheck"}


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one write: the table version after it and whether it committed anything.

    ``rows`` (rows written) and ``totals`` (sums of the columns the write was asked to total)
    are known when the engine counted them while writing (delta-rs engine; None otherwise).
    """

    table: str
    engine: str
    version: int | None
    committed: bool
    rows: int | None = None
    totals: Mapping[str, float] | None = field(default=None, hash=False)

    @property
    def skipped(self) -> bool:
        return not self.committed


# ----------------------------------------------------------------------------------------------
# Engine detection
# ----------------------------------------------------------------------------------------------
class DeltaEngine(Protocol):
    """What ``DeltaTables`` needs of an engine: the native one (:class:`~mlcore.io.native_engine.
    SparkDeltaEngine`) and delta-rs (:class:`DeltaRsEngine`) both provide it, with the same
    contracts (one commit per write, the idempotency token as a Delta ``txn``, replace-where
    confined to its predicate, a write that raised after its commit reported as committed).
    Engine-specific extras (the direct scan, write leases) are reached by type, not through this."""

    name: str

    def version(self, table: TableRef) -> int | None: ...

    def transaction_version(self, table: TableRef, app_id: str) -> int | None: ...

    def read(
        self, table: TableRef, version: int | None = None, where: Predicate | None = None
    ) -> tuple[DataFrame, int | None]: ...

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
    ) -> WriteResult: ...

    def merge(
        self,
        df: DataFrame,
        table: TableRef,
        keys: Sequence[str],
        token: WriteToken | None,
        metadata: Mapping[str, str],
    ) -> WriteResult: ...

    def layout(self, table: TableRef) -> tuple[StructType, list[str]] | None: ...

    def rewrite(self, df: DataFrame, table: TableRef, metadata: Mapping[str, str]) -> WriteResult: ...


def error_condition(exc: BaseException) -> str | None:
    """Spark's error class of ``exc`` (classic and Spark Connect errors both carry it)."""
    for getter in ("getCondition", "getErrorClass"):
        fn = getattr(exc, getter, None)
        if callable(fn):
            with contextlib.suppress(Exception):
                condition = fn()
                if condition:
                    return str(condition)
    return None


def is_data_source_not_found(exc: BaseException) -> bool:
    condition = error_condition(exc)
    if condition:
        return condition == "DATA_SOURCE_NOT_FOUND"
    text = str(exc)
    return "DATA_SOURCE_NOT_FOUND" in text or "Failed to find data source: delta" in text


def detect_engine(spark: SparkSession, preference: str = "auto") -> str:
    """Resolve ``auto`` by probing ``format("delta")`` once per session.

    The probe loads a path that does not exist: if the *data source* is missing Spark says
    ``DATA_SOURCE_NOT_FOUND``; any other error means the format resolved, i.e. native Delta.
    Deciding from ``import delta`` would be wrong: the Python package imports without the jars.
    """
    if preference in ("spark", "deltars"):
        return preference
    if preference != "auto":
        raise ValueError(f"unknown delta engine {preference!r} (auto | spark | deltars)")
    cached = spark.conf.get(ENGINE_CONF_KEY, None)
    if cached in ("spark", "deltars"):
        return cached
    try:
        # .schema: a Spark Connect client analyses lazily; this asks the server now.
        _ = spark.read.format("delta").load(f"/nonexistent/mlcore-delta-probe-{uuid.uuid4().hex}").schema
        choice = "spark"
    except Exception as exc:  # noqa: BLE001 - classification of the probe's failure
        choice = "deltars" if is_data_source_not_found(exc) else "spark"
    spark.conf.set(ENGINE_CONF_KEY, choice)
    note = spark.conf.get("mlcore.delta.jars", None)  # set by mlcore.spark for embedded runs
    if choice == "spark":
        log.info("delta engine: spark (native Delta: %s)", note or "the session's Delta jars")
    else:
        log.info("delta engine: deltars (delta-rs: %s)", note or "no Delta data source in Spark")
    return choice


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__


# ----------------------------------------------------------------------------------------------
# delta-rs engine
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LeaseSettings:
    """How the delta-rs engine's writes hold leases (``mlcore.io.write_leases``)."""

    timeout: float = 900.0
    heartbeat: float = 30.0

    @contextlib.contextmanager
    def hold(self, table: TableRef, write_id: str) -> Iterator[WriteLease]:
        """Sweep what dead writers left in ``table``, then hold this write's lease."""
        from mlcore.io.write_leases import write_lease

        with write_lease(table.uri, table.name, write_id, self.timeout, self.heartbeat) as lease:
            yield lease


class DeltaRsEngine:
    """Delta through delta-rs, with Spark doing the scanning and the Parquet writing."""

    name = "deltars"

    def __init__(
        self,
        spark: SparkSession,
        rows_per_row_group: int,
        max_rows_per_file: int,
        commit_retries: int = 1,
        lease_timeout: float = 900.0,
        lease_heartbeat: float = 30.0,
    ) -> None:
        self.spark = spark
        self.rows_per_row_group = rows_per_row_group
        self.max_rows_per_file = max_rows_per_file
        self.commit_retries = commit_retries
        self.leases = LeaseSettings(lease_timeout, lease_heartbeat)
        self._register_source()

    def _register_source(self) -> None:
        from mlcore.io.deltars_writer import DeltaRsDataSource

        self.spark.dataSource.register(DeltaRsDataSource)

    def open(self, table: TableRef, version: int | None = None) -> DeltaTable | None:
        """The table (at ``version``), None if it does not exist; a damaged log (truncated or
        corrupt commit JSON, missing checkpoint) is a DeltaIOError naming the table and path."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError, TableNotFoundError

        try:
            return DeltaTable(table.uri, version=version)
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            at = "" if version is None else f" at version {version}"
            raise DeltaIOError(
                f"table {table.name!r} ({table.uri}){at} cannot be opened from its Delta log: "
                f"{_short(exc)} (a damaged _delta_log file must be restored, or the version "
                "does not exist)"
            ) from exc

    def layout(self, table: TableRef) -> tuple[StructType, list[str]] | None:
        """The table's schema and partition columns as they are (None: no table)."""
        dt = self.open(table)
        if dt is None:
            return None
        return self.spark_schema(dt), list(dt.metadata().partition_columns)

    def rewrite(self, df: DataFrame, table: TableRef, metadata: Mapping[str, str]) -> WriteResult:
        """Replace the whole table with ``df``, schema and partitioning included, in one commit
        (a one-time migration: the rows are collected on the driver first, so the new version
        is written from what the old one held)."""
        from deltalake import write_deltalake

        before = self.version(table)
        data = self._collect_arrow(df, df.schema)
        write_deltalake(
            table.uri, data, mode="overwrite", schema_mode="overwrite",
            partition_by=list(table.partition_by) or None,
            commit_properties=self._commit_properties(None, metadata, data.num_rows),
        )  # fmt: skip
        return self._result(table, before)

    def version(self, table: TableRef) -> int | None:
        dt = self.open(table)
        return None if dt is None else dt.version()

    def transaction_version(self, table: TableRef, app_id: str) -> int | None:
        dt = self.open(table)
        return None if dt is None else dt.transaction_version(app_id)

    @staticmethod
    def spark_schema(dt: DeltaTable) -> StructType:
        from pyspark.sql.types import StructType

        # Delta's schema JSON is Spark's StructType JSON.
        return StructType.fromJson(json.loads(dt.schema().to_json()))

    @staticmethod
    def check_readable(dt: DeltaTable, name: str) -> None:
        """Refuse tables a plain Parquet scan would read wrongly (instead of returning bad rows)."""
        protocol = dt.protocol()
        unknown = set(protocol.reader_features or []) - _READER_FEATURES_OK
        if unknown:
            raise UnsupportedTableError(
                f"table {name!r} needs reader features {sorted(unknown)} that the delta-rs engine "
                "cannot read through Spark; read it with native Delta"
            )
        mapping = dt.metadata().configuration.get("delta.columnMapping.mode", "none")
        if mapping not in (None, "none"):
            raise UnsupportedTableError(
                f"table {name!r} uses column mapping ({mapping}); the delta-rs engine refuses it "
                "rather than return physical column names"
            )
        if "deletionVectors" in (protocol.reader_features or []):
            import pyarrow as pa

            if pa.table(dt.deletion_vectors()).num_rows:
                raise UnsupportedTableError(
                    f"table {name!r} has live deletion vectors; a Parquet scan would return "
                    "deleted rows. Purge them (REORG/optimize) or read with native Delta"
                )

    def read(self, table: TableRef, version: int | None = None, where: Predicate | None = None) -> tuple[DataFrame, int]:
        import pyarrow as pa
        from pyspark.sql import functions as F
        from pyspark.sql.types import StringType, StructField, StructType

        dt = self.open(table, version)
        if dt is None:
            raise DeltaIOError(f"table {table.name!r} does not exist at {table.uri}")
        self.check_readable(dt, table.name)
        schema = self.spark_schema(dt)
        partition_cols = list(dt.metadata().partition_columns)
        # Files are chosen by the predicate's partition columns (the whole predicate is applied
        # below, so pruning on part of it is exact): rides by month, filtered by day.
        prune = {k: v for k, v in (where or {}).items() if k in partition_cols and v is not None}
        uris = dt.file_uris(partition_filters=to_partition_filters(prune) if prune else None)
        if not uris:
            df = self.spark.createDataFrame([], schema)
        else:
            data_schema = StructType([f for f in schema.fields if f.name not in partition_cols])
            df = self.spark.read.schema(data_schema).parquet(*uris)
            if partition_cols:
                actions = pa.table(dt.get_add_actions(flatten=True))
                names = [PurePosixPath(p).name for p in actions.column("path").to_pylist()]
                if len(set(names)) != len(names):
                    raise UnsupportedTableError(
                        f"table {table.name!r} has data files with the same name in different "
                        "partitions; the delta-rs read path cannot attribute partition values"
                    )
                columns = [actions.column(f"partition.{c}").to_pylist() for c in partition_cols]
                rows = [(name, *values) for name, *values in zip(names, *columns, strict=True)]
                part_schema = StructType(
                    [StructField("_mlcore_file", StringType(), False)]
                    + [schema[c] for c in partition_cols]
                )
                values_df = self.spark.createDataFrame(rows, part_schema)
                df = (
                    df.withColumn("_mlcore_file", F.col("_metadata.file_name"))
                    .join(F.broadcast(values_df), "_mlcore_file")
                    .drop("_mlcore_file")
                )
            df = df.select(*[F.col(f"`{n}`") for n in schema.fieldNames()])
        if where:
            df = df.filter(to_spark_column(where))
        return df, dt.version()

    def scan(
        self,
        table: TableRef,
        columns: Sequence[str],
        version: int | None = None,
        partitions: int | None = None,
        batch_rows: int | None = None,
    ) -> ArrowScan:
        """A direct Arrow scan of ``columns`` (``mlcore.io.scan``): Parquet read in the Python
        workers instead of a Spark scan. ScanUnsupported where it would not be faithful."""
        from mlcore.io.scan import ScanUnsupported, plan_scan

        dt = self.open(table, version)
        if dt is None:
            raise DeltaIOError(f"table {table.name!r} does not exist at {table.uri}")
        try:
            self.check_readable(dt, table.name)
        except UnsupportedTableError as exc:
            raise ScanUnsupported(str(exc)) from exc
        return plan_scan(self.spark, dt, table.name, columns, partitions, batch_rows)

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
        """Write ``df`` (or, with ``transform``, what the transform makes of it) in one commit.

        With a transform the write is fused: each task transforms its partition and writes the
        output files itself (``deltars_writer.FusedWriteTask``); the driver commits the add
        actions the tasks return, with the same checks, txn and cleanup as the Data Source path.
        """
        from pyspark.sql.types import StructType

        dt = self.open(table)
        before = None if dt is None else dt.version()
        if token is not None and dt is not None:
            applied = dt.transaction_version(token.app_id)
            if applied is not None and applied >= token.version:
                log.info("%s: already written by %s v%s; skipping", table.name, token.app_id, applied)
                return WriteResult(table.name, self.name, before, committed=False)
        schema = transform.schema if transform is not None else df.schema
        check_duplicate_columns(table.name, schema)
        _check_totals(table.name, schema, totals)
        if dt is not None:
            partition_cols = list(dt.metadata().partition_columns)
            if table.partition_by and list(table.partition_by) != partition_cols:
                raise DeltaIOError(
                    f"table {table.name!r} is partitioned by {partition_cols} but config says "
                    f"{list(table.partition_by)}"
                )
            new_fields = check_write_schema(table.name, self.spark_schema(dt), schema, merge_schema)
            if new_fields:
                from deltalake.schema import Field

                # Added columns must be nullable: existing rows have no value for them.
                nullable = as_nullable(StructType(new_fields)).fields
                dt.alter.add_columns([Field.from_json(json.dumps(f.jsonValue())) for f in nullable])
                dt = self.open(table)
                if dt is None:
                    raise DeltaIOError(f"table {table.name!r} vanished while its schema was extended")
            target = as_nullable(self.spark_schema(dt))
            if transform is None:
                df = df.select(*[f"`{n}`" for n in target.fieldNames()])
        else:
            partition_cols = list(table.partition_by)
            missing = [c for c in partition_cols if c not in schema.fieldNames()]
            if missing:
                raise DeltaIOError(f"table {table.name!r}: partition columns {missing} not in data")
            target = as_nullable(schema)

        partition_filters = None
        delta_mode = "append"
        if mode == "overwrite":
            delta_mode = "overwrite"
        elif mode == "replace_where":
            if not replace_where:
                raise ValueError("mode 'replace_where' needs a replace_where predicate")
            if not partition_columns_only(replace_where, partition_cols):
                if transform is not None:  # delta-rs replaces data-column predicates on the driver
                    df = transform.apply(df).select(*[f"`{n}`" for n in target.fieldNames()])
                return self._replace_where_on_driver(df, table, dt, target, replace_where, token, metadata)
            partition_filters = [list(f) for f in to_partition_filters(replace_where)]
            delta_mode = "overwrite" if dt is not None else "append"
        elif mode != "append":
            raise ValueError(f"unknown write mode {mode!r}")

        write_id = uuid.uuid4().hex[:12]
        # the snapshot the schema checks ran against (after any schema evolution commit)
        read_version = None if dt is None else dt.version()
        with self.leases.hold(table, write_id):
            return self._write_leased(
                df, table, transform, write_id, target, partition_cols, delta_mode,
                partition_filters, token, metadata, before, read_version, totals,
            )  # fmt: skip

    def _write_leased(
        self,
        df: DataFrame,
        table: TableRef,
        transform: ArrowTransform | None,
        write_id: str,
        target: StructType,
        partition_cols: list[str],
        delta_mode: str,
        partition_filters: list[list[Any]] | None,
        token: WriteToken | None,
        metadata: Mapping[str, str],
        before: int | None,
        read_version: int | None,
        totals: Sequence[str],
    ) -> WriteResult:
        """The write itself, while this write's lease is held (``write_leases``)."""
        from mlcore.io.deltars_writer import SOURCE_NAME, WriterOptions

        options = WriterOptions(
            table_uri=table.uri,
            table_schema_json=target.json(),
            partition_by=partition_cols,
            mode=delta_mode,
            partition_filters=partition_filters,
            app_id=token.app_id if token else None,
            txn_version=token.version if token else None,
            commit_metadata=dict(metadata),
            rows_per_row_group=self.rows_per_row_group,
            max_rows_per_file=self.max_rows_per_file,
            write_id=write_id,
            read_version=read_version,
            commit_retries=self.commit_retries,
            totals=tuple(totals),
            table_name=table.name,
        )
        # Python data sources are looked up in the JVM's *active* session, which a thread that
        # never touched the session (a score_batch scorer thread) lacks: DATA_SOURCE_NOT_FOUND.
        activate_on_this_thread(self.spark)
        try:
            if transform is None and is_driver_local(df):
                self._driver_write(df, target, options)
            elif transform is None:
                df.write.format(SOURCE_NAME).mode("append").options(**options.to_options()).save()
            else:
                self._fused_write(df, transform, options)
        except Exception as exc:  # noqa: BLE001 - classified (landed / violation / conflict / failed) below
            landed = self._landed_despite(table, before, write_id, exc, f"write {write_id}")
            if landed is not None:
                return landed
            self._remove_partial_files(table, write_id)
            error = _write_error(table, before, exc)
            raise error from (exc if type(error) is DeltaIOError else None)
        landed = self._find_commit(table, before, write_id)
        if landed is not None:
            return landed
        # No commit carries this write's id: the commit found the token already applied (a
        # concurrent replay of the same job run) and kept the table as it was.
        return WriteResult(table.name, self.name, self.version(table), committed=False)

    def _fused_write(self, df: DataFrame, transform: ArrowTransform, options) -> None:
        """Transform and write on the executors, then commit the returned add actions here.

        One Spark job: each task runs ``FusedWriteTask`` over its input partition and returns
        its commit message (a few hundred bytes), so the output rows never come back to the JVM.
        The commit is the Data Source writer's own ``commit`` (txn check, conflict check, retry,
        sweep of files from failed attempts), run in the driver instead of a driver-side worker.
        """
        from mlcore.io.deltars_writer import (
            MESSAGE_DDL,
            DeltaRsArrowWriter,
            DeltaRsCommitMessage,
            FusedWriteTask,
        )

        task = FusedWriteTask(options, transform.fn, transform.schema.json())
        rows = df.mapInArrow(task, MESSAGE_DDL).collect()
        messages: list[Any] = [DeltaRsCommitMessage.from_json(row[0]) for row in rows]
        DeltaRsArrowWriter(options).commit(messages)

    def _driver_write(self, df: DataFrame, target: StructType, options) -> None:
        """Rows already on the driver (a local relation: status rows, a manifest): the writer's
        own task and commit code, run here, instead of a Spark job that starts Python workers
        and a driver-side commit process for a few rows. Same files, checks, txn and cleanup."""
        from mlcore.io.deltars_writer import DeltaRsArrowWriter

        data = self._collect_arrow(df, target)
        writer = DeltaRsArrowWriter(options)
        message = writer.write(iter(data.to_batches()))
        writer.commit([message])

    def _landed_despite(
        self, table: TableRef, before: int | None, write_id: str, exc: Exception, what: str
    ) -> WriteResult | None:
        """This write's commit if it is in the table although the call raised: only the response
        was lost (driver/JVM hiccup after the commit), so the write succeeded and its files stay."""
        landed = self._find_commit(table, before, write_id)
        if landed is not None:
            log.warning(
                "%s: %s raised after its commit landed (version %s): %s",
                table.name, what, landed.version, _short(exc),
            )  # fmt: skip
        return landed

    def _find_commit(
        self, table: TableRef, before: int | None, write_id: str
    ) -> WriteResult | None:
        """This write's commit (found by the write id in its commit info), if it landed."""
        from mlcore.io.deltars_writer import WRITE_ID_KEY

        dt = self.open(table)
        if dt is None or dt.version() == before:
            return None
        newer = dt.version() - (-1 if before is None else before)
        for info in dt.history(newer):
            if info.get(WRITE_ID_KEY) == write_id:
                version = int(info["version"])
                return WriteResult(
                    table.name, self.name, version, committed=True, **_counted(info)
                )
        return None

    def _remove_partial_files(self, table: TableRef, write_id: str, timeout: float = 60.0) -> None:
        """After a failed job: wait for cancelled tasks to stop, then delete this write's files.

        Spark calls the writer's ``abort`` while cancelled tasks may still be running, and a
        killed task never runs its own cleanup, so the driver finishes the job here.
        """
        import time

        from mlcore.io.deltars_writer import sweep_write_files

        tracker = status_tracker(self.spark)
        deadline = time.monotonic() + timeout
        while tracker is not None and tracker.getActiveStageIds() and time.monotonic() < deadline:
            time.sleep(0.2)
        # A killed Python worker may still be closing its file after its stage ended (seen on a
        # loaded 2-core machine well after 0.5 s): sweep until two sweeps in a row find nothing.
        removed, quiet, settle = 0, 0, time.monotonic() + 10.0
        while quiet < 2 and time.monotonic() < settle:
            time.sleep(0.5)
            found = sweep_write_files(table.uri, write_id)
            removed += found
            quiet = 0 if found else quiet + 1
        if removed:
            log.info("%s: removed %d files of the failed write %s", table.name, removed, write_id)

    def _result(self, table: TableRef, before: int | None) -> WriteResult:
        dt = self.open(table)
        after = None if dt is None else dt.version()
        committed = after is not None and after != before
        counted = _counted(dt.history(1)[0]) if committed and dt is not None else {}
        return WriteResult(table.name, self.name, after, committed=committed, **counted)

    def _commit_properties(
        self, token: WriteToken | None, metadata: Mapping[str, str], rows: int, write_id: str = ""
    ):
        from deltalake.transaction import CommitProperties, Transaction

        from mlcore.io.deltars_writer import WRITE_ID_KEY

        extra = {"mlcore.rows": str(rows)}
        if write_id:
            extra[WRITE_ID_KEY] = write_id
        return CommitProperties(
            custom_metadata=dict(metadata, **extra),
            app_transactions=[Transaction(token.app_id, token.version)] if token else None,
        )

    def _collect_arrow(self, df: DataFrame, target: StructType):
        from mlcore.io.deltars_writer import target_arrow_schema

        return df.toArrow().cast(target_arrow_schema(target.json()))

    def _replace_where_on_driver(
        self,
        df: DataFrame,
        table: TableRef,
        dt: DeltaTable | None,
        target: StructType,
        predicate: Predicate,
        token: WriteToken | None,
        metadata: Mapping[str, str],
    ) -> WriteResult:
        """Replace rows matching a predicate on non-partition columns (delta-rs on the driver).

        delta-rs's transaction API can only replace whole partitions, so predicates on data
        columns go through ``write_deltalake(predicate=...)``, which collects the new rows on the
        driver: use partition columns in replace-where predicates for large outputs.
        """
        from deltalake import write_deltalake

        outside = df.filter(~to_spark_column(predicate)).limit(1).collect()
        if outside:
            raise ReplaceWhereViolation(
                f"table {table.name!r}: row {outside[0].asDict()} is outside the replace-where "
                f"predicate {to_sql(predicate, 'spark')}; nothing written"
            )
        if dt is None:
            return self.write(df, table, "append", None, token, False, metadata)
        before = dt.version()
        data = self._collect_arrow(df, target)
        write_id = uuid.uuid4().hex[:12]
        with self.leases.hold(table, write_id) as lease:
            try:
                write_deltalake(
                    dt,
                    data,
                    mode="overwrite",
                    predicate=to_sql(predicate, "deltars"),
                    commit_properties=self._commit_properties(
                        token, metadata, data.num_rows, write_id
                    ),
                )
            except Exception as exc:  # noqa: BLE001 - classified (landed / conflict / failed) below
                return self._driver_commit_failed(
                    table, before, write_id, exc, "replace-where write to", lease
                )
        return self._find_commit(table, before, write_id) or self._result(table, before)

    def _driver_commit_failed(
        self,
        table: TableRef,
        before: int | None,
        write_id: str,
        exc: Exception,
        what: str,
        lease: WriteLease | None = None,
    ) -> WriteResult:
        """A driver-side delta-rs commit raised: success if it landed anyway, else a clear error
        (a concurrent-commit conflict is a ``ConcurrentWriteError``). delta-rs leaves the data
        files of a failed commit behind; they are removed here as a dead writer's would be."""
        from deltalake.exceptions import CommitFailedError

        landed = self._landed_despite(table, before, write_id, exc, what)
        if landed is not None:
            return landed
        if lease is not None:
            lease.release_as_dead(self.leases.timeout)
        if isinstance(exc, CommitFailedError):
            raise ConcurrentWriteError(
                f"concurrent write conflict on table {table.name!r}: a commit after version "
                f"{before} changed what this write read; nothing written ({_short(exc)})"
            ) from exc
        raise DeltaIOError(
            f"{what} {table.name!r} failed, table left at version {before}: {_short(exc)}"
        ) from exc

    def merge(
        self,
        df: DataFrame,
        table: TableRef,
        keys: Sequence[str],
        token: WriteToken | None,
        metadata: Mapping[str, str],
    ) -> WriteResult:
        """Upsert on ``keys`` (driver-side MERGE through delta-rs; the source is collected)."""
        dt = self.open(table)
        if dt is None:
            return self.write(df, table, "append", None, token, False, metadata)
        before = dt.version()
        if token is not None:
            applied = dt.transaction_version(token.app_id)
            if applied is not None and applied >= token.version:
                return WriteResult(table.name, self.name, before, committed=False)
        target = as_nullable(self.spark_schema(dt))
        check_write_schema(table.name, target, df.schema, merge_schema=False)
        check_merge_keys(df.columns, table.name, keys)
        data = self._collect_arrow(df.select(*[f"`{n}`" for n in target.fieldNames()]), target)
        return self.merge_arrow(table, data, keys, token, metadata)

    def merge_arrow(
        self,
        table: TableRef,
        data: Any,
        keys: Sequence[str],
        token: WriteToken | None,
        metadata: Mapping[str, str],
    ) -> WriteResult:
        """The delta-rs MERGE of a source already on the driver (an Arrow table), under a lease.

        Upserts on ``keys`` in one commit; the token makes a replay a no-op, a commit that raised
        after landing counts as done, and a merge that failed or was killed leaves no files behind
        (its own cleanup, or the next write's sweep).
        """
        check_merge_rows(data, table.name, keys)  # the source is on the driver now: no Spark jobs
        predicate = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
        write_id = uuid.uuid4().hex[:12]
        with self.leases.hold(table, write_id) as lease:
            dt = self.open(table)
            if dt is None:
                raise DeltaIOError(f"merge into {table.name!r}: table does not exist at {table.uri}")
            before = dt.version()
            if token is not None:
                applied = dt.transaction_version(token.app_id)
                if applied is not None and applied >= token.version:
                    return WriteResult(table.name, self.name, before, committed=False)
            try:
                (
                    dt.merge(
                        source=data,
                        predicate=predicate,
                        source_alias="s",
                        target_alias="t",
                        commit_properties=self._commit_properties(
                            token, metadata, data.num_rows, write_id
                        ),
                    )
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute()
                )
            except Exception as exc:  # noqa: BLE001 - classified (landed / conflict / failed) below
                return self._driver_commit_failed(table, before, write_id, exc, "merge into", lease)
        return self._find_commit(table, before, write_id) or self._result(table, before)


def _counted(info: Mapping[str, Any]) -> dict[str, Any]:
    """``rows`` and ``totals`` of a WriteResult from an mlcore commit's info."""
    from mlcore.io.deltars_writer import ROWS_KEY, TOTALS_KEY

    rows = int(info[ROWS_KEY]) if ROWS_KEY in info else None
    totals = json.loads(info[TOTALS_KEY]) if TOTALS_KEY in info else None
    return {"rows": rows, "totals": totals}


def _check_totals(table_name: str, schema: StructType, totals: Sequence[str]) -> None:
    from pyspark.sql.types import NumericType

    types = {f.name: f.dataType for f in schema.fields}
    bad = [c for c in totals if not isinstance(types.get(c), NumericType)]
    if bad:
        raise ValueError(f"writing table {table_name!r}: totals need numeric output columns, not {bad}")


def _write_error(table: TableRef, before: int | None, exc: BaseException) -> DeltaIOError:
    """The error for a failed distributed write (nothing committed, files already removed)."""
    from mlcore.io.deltars_writer import CONFLICT_MARKER, REPLACE_WHERE_MARKER

    text = str(exc)
    if REPLACE_WHERE_MARKER in text:
        detail = text.split(REPLACE_WHERE_MARKER + ": ", 1)[1].splitlines()[0]
        return ReplaceWhereViolation(f"table {table.name!r}: {detail}; nothing written")
    if CONFLICT_MARKER in text:
        detail = text.split(CONFLICT_MARKER + ": ", 1)[1].splitlines()[0]
        return ConcurrentWriteError(f"concurrent write conflict on table {table.name!r}: {detail}")
    return DeltaIOError(
        f"write to table {table.name!r} failed, table left at version {before}: {_task_error(exc)}"
    )


def _task_error(exc: BaseException) -> str:
    """The Python error a failed Spark task raised (its last ``XxxError: ...`` line), else the
    exception's first line: "An exception was thrown from the Python worker" says nothing."""

    found = re.findall(r"^(\w+(?:Error|Exception|Exit|Interrupt)): (.+)$", str(exc), re.MULTILINE)
    if found:
        kind, message = found[-1]
        return f"{kind}: {message.strip()}"[:500]
    return _short(exc)


def check_merge_keys(columns: Sequence[str], table_name: str, keys: Sequence[str]) -> None:
    """The merge keys are valid identifiers present in the source."""
    if not keys:
        raise ValueError("merge needs at least one key column")
    for key in keys:
        check_identifier(key)
        if key not in columns:
            raise DeltaIOError(f"merge into {table_name!r}: key column {key!r} not in data")


def check_merge_rows(data: Any, table_name: str, keys: Sequence[str]) -> None:
    """``check_merge_source`` on a collected Arrow source (the delta-rs merge collects it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table: pa.Table = data
    for key in keys:
        column = table.column(key)
        if column.null_count:
            first = pc.index(pc.is_null(column), True).as_py()
            row = {k: table.column(k)[first].as_py() for k in keys}
            raise DeltaIOError(f"merge into {table_name!r}: source has null keys, e.g. {row}")
    if table.num_rows < 2:
        return
    counts = table.select(list(keys)).group_by(list(keys), use_threads=False).aggregate(
        [([], "count_all")]
    )
    dupes = counts.filter(pc.greater(counts.column("count_all"), 1))
    if dupes.num_rows:
        row = {k: dupes.column(k)[0].as_py() for k in keys}
        row["count"] = dupes.column("count_all")[0].as_py()
        raise DeltaIOError(f"merge into {table_name!r}: source has duplicate keys, e.g. {row}")


def check_merge_source(df: DataFrame, table_name: str, keys: Sequence[str]) -> None:
    """MERGE needs non-null, unique keys in the source, or it fails (or worse) mid-commit."""
    from pyspark.sql import functions as F

    check_merge_keys(df.columns, table_name, keys)
    null_keys = df.filter(F.greatest(*[F.col(k).isNull() for k in keys], F.lit(False))).limit(1).collect()
    if null_keys:
        raise DeltaIOError(f"merge into {table_name!r}: source has null keys, e.g. {null_keys[0].asDict()}")
    dupes = df.groupBy(*keys).count().filter("count > 1").limit(1).collect()
    if dupes:
        raise DeltaIOError(
            f"merge into {table_name!r}: source has duplicate keys, e.g. {dupes[0].asDict()}"
        )
