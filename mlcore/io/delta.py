"""``DeltaTables``: the one API jobs use for Delta tables, by logical name.

Job and pipeline code never calls ``format("delta")`` or ``deltalake`` directly: the engine is
picked once per session (config ``storage.delta_engine``: auto | spark | deltars) and recorded on
the run, and every read's table version is remembered so tracking can log input versions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from mlcore.config.models import MlcoreConfig
from mlcore.io import faults
from mlcore.io.engines import DeltaEngine, DeltaRsEngine, WriteMode, WriteResult, detect_engine
from mlcore.io.errors import DeltaIOError, EngineUnavailableError
from mlcore.io.migrations import TABLES_WITH_MIGRATIONS, Migration, convert, pending
from mlcore.io.native_engine import SparkDeltaEngine
from mlcore.io.predicates import Predicate, check_predicate
from mlcore.io.tables import TableRef, WriteToken, resolve_table
from mlcore.io.transform import ArrowTransform

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from mlcore.io.scan import ArrowScan

log = logging.getLogger(__name__)

__all__ = ["ArrowTransform", "DeltaTables", "TableReader", "WriteResult"]


class TableReader(Protocol):
    """What a job's stage may do with the tables (``JobContext.tables``): read them (a read is
    recorded as an input of the run), look them up and check tokens. Writing is not in it: the
    runner publishes what the stage returns (``mlcore.pipelines._publish``), so mypy rejects a
    stage that writes. :class:`DeltaTables` is the implementation."""

    engine_name: str
    read_versions: dict[str, int | None]

    def ref(self, name: str) -> TableRef: ...

    def version(self, name: str) -> int | None: ...

    def exists(self, name: str) -> bool: ...

    def already_written(self, name: str, token: WriteToken) -> bool: ...

    def read(
        self,
        name: str,
        version: int | None = None,
        where: Predicate | None = None,
        record_input: bool = True,
    ) -> DataFrame: ...

    def scan(
        self,
        name: str,
        columns: Sequence[str],
        partitions: int | None = None,
        version: int | None = None,
        batch_rows: int | None = None,
        record_input: bool = True,
    ) -> ArrowScan | None: ...


class DeltaTables:
    """Read, write and merge Delta tables by logical name on the session's engine."""

    def __init__(
        self,
        spark: SparkSession,
        config: MlcoreConfig,
        engine: str | None = None,
        commit_metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.spark = spark
        self.config = config
        self.engine_name = detect_engine(spark, engine or config.storage.delta_engine)
        if self.engine_name == "spark":
            self._engine: DeltaEngine = SparkDeltaEngine(spark)
        else:
            self._engine = DeltaRsEngine(
                spark,
                rows_per_row_group=config.storage.rows_per_row_group,
                max_rows_per_file=config.storage.max_rows_per_file,
                commit_retries=config.storage.commit_retries,
                lease_timeout=config.storage.write_lease_timeout_seconds,
                lease_heartbeat=config.storage.write_lease_heartbeat_seconds,
            )
        self.commit_metadata: dict[str, str] = dict(commit_metadata or {})
        self.read_versions: dict[str, int | None] = {}
        self.writes: list[WriteResult] = []

    def ref(self, name: str) -> TableRef:
        return resolve_table(self.config, name)

    def version(self, name: str) -> int | None:
        """Current table version, or ``None`` when the table does not exist yet."""
        return self._engine.version(self.ref(name))

    def exists(self, name: str) -> bool:
        return self.version(name) is not None

    def sweep_dead_writers(self, names: Iterable[str]) -> int:
        """Remove what killed writers left in these tables (``mlcore.io.write_leases``): for a
        job whose rerun is a replay and writes nothing, so the next write is not the only
        cleanup. Returns the files removed; a no-op on native Delta (VACUUM's job there)."""
        if not isinstance(self._engine, DeltaRsEngine):
            return 0
        from mlcore.io.write_leases import sweep_dead_writes

        removed = 0
        for name in sorted(set(names)):
            ref = self.ref(name)
            removed += len(sweep_dead_writes(ref.uri, name, self._engine.leases.timeout).files)
        return removed

    def already_written(self, name: str, token: WriteToken) -> bool:
        """True when ``token`` (or a later version of its app id) is already in the table.

        Jobs call this before expensive work so that a replay costs nothing; the write itself
        checks again at commit time.
        """
        applied = self._engine.transaction_version(self.ref(name), token.app_id)
        return applied is not None and applied >= token.version

    def read(
        self,
        name: str,
        version: int | None = None,
        where: Predicate | None = None,
        record_input: bool = True,
    ) -> DataFrame:
        """Read a table (optionally at ``version``), filtered by an equality predicate.

        The version read is recorded as an input of the run unless ``record_input`` is false
        (bookkeeping reads: the run manifest, earlier validation results)."""
        if where is not None:
            check_predicate(where)
        try:
            df, resolved = self._engine.read(self.ref(name), version, where)
        except Exception as exc:
            if self.engine_name == "spark" and "DATA_SOURCE_NOT_FOUND" in str(exc):
                raise EngineUnavailableError(
                    "storage.delta_engine is 'spark' but this session has no Delta data source; "
                    "add the Delta jars or use 'auto'/'deltars'"
                ) from exc
            raise
        if record_input:
            self.read_versions[name] = resolved
        return df

    def scan(
        self,
        name: str,
        columns: Sequence[str],
        partitions: int | None = None,
        version: int | None = None,
        batch_rows: int | None = None,
        record_input: bool = True,
    ) -> ArrowScan | None:
        """A direct Arrow scan of ``columns`` of a table (version), or None: use :meth:`read`.

        On delta-rs the Python workers read the Parquet files themselves (``mlcore.io.scan``), so
        a job whose rows only feed a Python transform keeps the JVM out of the data path. None on
        native Delta, and for tables or columns the scan cannot represent faithfully (the reason
        is logged). ``partitions``: Spark partitions of the slices (default: defaultParallelism);
        ``batch_rows``: rows per Arrow batch (default: the session's maxRecordsPerBatch).
        """
        from mlcore.io.scan import ScanUnsupported

        if self.engine_name != "deltars" or not isinstance(self._engine, DeltaRsEngine):
            log.info("%s: no direct scan on the %s engine", name, self.engine_name)
            return None
        try:
            scan = self._engine.scan(self.ref(name), columns, version, partitions, batch_rows)
        except ScanUnsupported as exc:
            log.info("%s: no direct scan (%s)", name, exc)
            return None
        if record_input:
            self.read_versions[name] = scan.version
        return scan

    def write(
        self,
        df: DataFrame,
        name: str,
        mode: WriteMode = "append",
        replace_where: Predicate | None = None,
        token: WriteToken | None = None,
        merge_schema: bool = False,
        transform: ArrowTransform | None = None,
        totals: Sequence[str] = (),
    ) -> WriteResult:
        """Write ``df`` as one atomic commit.

        Modes: ``append``; ``overwrite`` (the whole table); ``replace_where`` (exactly the rows
        matching ``replace_where``; rows outside it are an error). With a ``token`` a replayed
        write is a no-op. Schema mismatches are errors unless ``merge_schema`` adds new columns.

        With ``transform`` the table receives ``transform.apply(df)`` (a per-partition Arrow
        transform, e.g. model scoring); the delta-rs engine then writes from inside the transform's
        tasks instead of sending its output through a second Spark stage (``mlcore.io.transform``).
        ``totals`` names numeric output columns whose sums the result reports (with ``rows``)
        when the engine counts them during the write (delta-rs); otherwise they are None.
        """
        if replace_where is not None:
            check_predicate(replace_where)
        self.check_migrated(name)
        result = self._engine.write(
            df,
            self.ref(name),
            mode,
            replace_where,
            token,
            merge_schema,
            self.commit_metadata,
            transform=transform,
            totals=tuple(totals),
        )
        self.writes.append(result)
        faults.after_commit(name, result.committed)
        return result

    def pending_migrations(self, name: str) -> list[Migration]:
        """The one-time migrations ``name`` still needs (``mlcore.io.migrations``)."""
        if name not in TABLES_WITH_MIGRATIONS:
            return []
        ref = self.ref(name)
        return pending(ref, self._engine.layout(ref))

    def check_migrated(self, name: str) -> None:
        """Refuse to write to a table of an older shape: one line with the command that fixes it."""
        needed = self.pending_migrations(name)
        if needed:
            changes = "; ".join(m.change for m in needed)
            raise DeltaIOError(
                f"table {name!r} was written by an older mlcore ({changes}): convert it once with "
                f"`python -m mlcore migrate --env {self.config.env}`, then rerun"
            )

    def migrate(self, name: str) -> WriteResult | None:
        """Apply ``name``'s pending migrations in one commit (every row kept); None if none."""
        needed = self.pending_migrations(name)
        if not needed:
            return None
        df, _ = self._engine.read(self.ref(name))
        metadata = dict(self.commit_metadata, **{"mlcore.migration": "; ".join(m.change for m in needed)})
        result = self._engine.rewrite(convert(df, needed), self.ref(name), metadata)
        self.writes.append(result)
        return result

    def merge(
        self, df: DataFrame, name: str, keys: Sequence[str], token: WriteToken | None = None
    ) -> WriteResult:
        """Upsert ``df`` on ``keys`` (update matches, insert the rest) in one commit."""
        result = self._engine.merge(df, self.ref(name), keys, token, self.commit_metadata)
        self.writes.append(result)
        faults.after_commit(name, result.committed)
        return result
