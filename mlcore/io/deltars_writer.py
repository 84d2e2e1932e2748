"""Distributed Delta writer for Spark without the Delta jars (Spark 4 Python Data Source).

Executors write Parquet files and return add actions; the driver side commits them once through
delta-rs's transaction API. The same task code also serves fused writes (``FusedWriteTask``):
a Spark task that transforms its input partition (``mlcore.io.transform``) and writes the result
itself, returning only the add actions, which the driver then commits with the same ``commit``.
The result is one atomic Delta commit per write, no data collected on the driver, and no stray
files on failure: a failing task deletes what it wrote, ``abort`` deletes
the files of the tasks that succeeded, and ``commit`` deletes everything when the idempotency
token says the write was already applied.

This module runs inside Spark's Python workers, so it imports nothing heavy at module level
beyond pyarrow and reports results only through the table itself (its log and commit info).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql.datasource import DataSource, DataSourceArrowWriter, WriterCommitMessage

from mlcore.io import faults
from mlcore.io.predicates import partition_value_string as partition_string

SOURCE_NAME = "mlcore_deltars"
REPLACE_WHERE_MARKER = "MLCORE_REPLACE_WHERE_VIOLATION"
CONFLICT_MARKER = "MLCORE_CONCURRENT_WRITE_CONFLICT"
WRITE_ID_KEY = "mlcore.write_id"
ROWS_KEY = "mlcore.rows"
TOTALS_KEY = "mlcore.totals"
# What a fused write task returns to the driver: one JSON commit message per task.
MESSAGE_DDL = "message string"
# Characters Spark/Hive escape in partition directory names (ExternalCatalogUtils.escapePathName).
_HIVE_ESCAPE = set("\"#%'*/:=?\\\x7f{[]^") | {chr(c) for c in range(1, 32)}
_STRING_STATS_MAX = 32


def hive_escape(value: str) -> str:
    return "".join(f"%{ord(ch):02X}" if ch in _HIVE_ESCAPE else ch for ch in value)


@dataclass
class DeltaRsCommitMessage(WriterCommitMessage):
    """What one task wrote: Delta add actions and the absolute paths for cleanup."""

    adds: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"adds": self.adds, "files": self.files, "totals": self.totals})

    @classmethod
    def from_json(cls, text: str) -> DeltaRsCommitMessage:
        data = json.loads(text)
        return cls(adds=data["adds"], files=data["files"], totals=data.get("totals") or {})


@dataclass(frozen=True)
class WriterOptions:
    """Options passed from the driver (Spark lower-cases option keys, hence snake_case)."""

    table_uri: str
    table_schema_json: str
    partition_by: list[str]
    mode: str  # append | overwrite
    partition_filters: list[list[Any]] | None
    app_id: str | None
    txn_version: int | None
    commit_metadata: dict[str, str]
    rows_per_row_group: int
    max_rows_per_file: int
    write_id: str
    # Table version the driver read when the write started (None: the table did not exist).
    # Commits that landed after it are checked for conflicts before this write commits.
    read_version: int | None = None
    commit_retries: int = 1
    # Numeric columns whose sums the write records in its commit info (``mlcore.totals``).
    totals: tuple[str, ...] = ()
    # The logical table name (fault injection and messages only).
    table_name: str = ""

    @classmethod
    def from_options(cls, options: dict[str, str]) -> WriterOptions:
        lowered = {k.lower(): v for k, v in options.items()}
        txn_version = lowered.get("txn_version")
        read_version = lowered.get("read_version")
        return cls(
            table_uri=lowered["path"],
            table_schema_json=lowered["table_schema"],
            partition_by=json.loads(lowered.get("partition_by", "[]")),
            mode=lowered.get("mlcore_mode", "append"),
            partition_filters=json.loads(lowered.get("partition_filters", "null")),
            app_id=lowered.get("txn_app_id") or None,
            txn_version=int(txn_version) if txn_version else None,
            commit_metadata=json.loads(lowered.get("commit_metadata", "{}")),
            rows_per_row_group=int(lowered.get("rows_per_row_group", 1_000_000)),
            max_rows_per_file=int(lowered.get("max_rows_per_file", 5_000_000)),
            write_id=lowered.get("write_id") or uuid.uuid4().hex,
            read_version=int(read_version) if read_version not in (None, "") else None,
            commit_retries=int(lowered.get("commit_retries", 1)),
            totals=tuple(json.loads(lowered.get("totals", "[]"))),
            table_name=lowered.get("table_name", ""),
        )

    def to_options(self) -> dict[str, str]:
        options = {
            "path": self.table_uri,
            "table_schema": self.table_schema_json,
            "partition_by": json.dumps(self.partition_by),
            "mlcore_mode": self.mode,
            "partition_filters": json.dumps(self.partition_filters),
            "commit_metadata": json.dumps(self.commit_metadata),
            "rows_per_row_group": str(self.rows_per_row_group),
            "max_rows_per_file": str(self.max_rows_per_file),
            "write_id": self.write_id,
            "read_version": "" if self.read_version is None else str(self.read_version),
            "commit_retries": str(self.commit_retries),
            "totals": json.dumps(list(self.totals)),
            "table_name": self.table_name,
        }
        if self.app_id is not None and self.txn_version is not None:
            options["txn_app_id"] = self.app_id
            options["txn_version"] = str(self.txn_version)
        return options


class DeltaRsDataSource(DataSource):
    """``df.write.format("mlcore_deltars")``: distributed writes committed by delta-rs."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def writer(self, schema: Any, overwrite: bool) -> DeltaRsArrowWriter:
        return DeltaRsArrowWriter(WriterOptions.from_options(dict(self.options)))


def target_arrow_schema(schema_json: str) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    spark_schema = StructType.fromJson(json.loads(schema_json))
    arrow = to_arrow_schema(spark_schema, timezone="UTC")
    # Delta "timestamp" is UTC-adjusted microseconds; every field stays nullable.
    fields = []
    for f in arrow:
        tp = f.type
        if pa.types.is_timestamp(tp) and tp.tz is not None:
            tp = pa.timestamp("us", tz="UTC")
        fields.append(pa.field(f.name, tp, nullable=True))
    return pa.schema(fields)


class _StatsAccumulator:
    """Delta per-file statistics (numRecords, minValues, maxValues, nullCount)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.num_records = 0
        self.null_count: dict[str, int] = {f.name: 0 for f in schema}
        self.min: dict[str, Any] = {}
        self.max: dict[str, Any] = {}
        self.disabled: set[str] = {f.name for f in schema if not _stats_supported(f.type)}

    def update(self, table: pa.Table) -> None:
        self.num_records += table.num_rows
        for f in self.schema:
            column = table.column(f.name)
            self.null_count[f.name] += column.null_count
            if f.name in self.disabled or column.null_count == len(column):
                continue
            if pa.types.is_floating(f.type) and pc.any(pc.is_nan(column)).as_py():
                self.disabled.add(f.name)
                continue
            bounds = pc.min_max(column)
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            if isinstance(low, str) and (
                len(low) > _STRING_STATS_MAX or len(high) > _STRING_STATS_MAX
            ):
                self.disabled.add(f.name)
                continue
            if f.name not in self.min or low < self.min[f.name]:
                self.min[f.name] = low
            if f.name not in self.max or high > self.max[f.name]:
                self.max[f.name] = high

    def to_json(self) -> str:
        def encode(value: Any, upper: bool) -> Any:
            if isinstance(value, datetime):
                # Millisecond precision, rounded outward so data skipping stays safe.
                micros = value.microsecond % 1000
                if micros:
                    value = value - timedelta(microseconds=micros)
                    if upper:
                        value += timedelta(milliseconds=1)
                text = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"
                return text + ("Z" if value.tzinfo is not None else "")
            if isinstance(value, date):
                return value.isoformat()
            if isinstance(value, Decimal):
                return str(value)
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return value

        keep = [n for n in self.min if n not in self.disabled]
        stats = {
            "numRecords": self.num_records,
            "minValues": {n: encode(self.min[n], False) for n in keep},
            "maxValues": {n: encode(self.max[n], True) for n in keep},
            "nullCount": self.null_count,
        }
        return json.dumps(stats, separators=(",", ":"))


def _stats_supported(tp: pa.DataType) -> bool:
    return (
        pa.types.is_integer(tp)
        or pa.types.is_floating(tp)
        or pa.types.is_date(tp)
        or pa.types.is_timestamp(tp)
        or pa.types.is_string(tp)
        or pa.types.is_large_string(tp)
        or pa.types.is_decimal(tp)
    )


class _OpenFile:
    def __init__(self, fs: pafs.FileSystem, root: str, rel_path: str, schema: pa.Schema) -> None:
        self.fs = fs
        self.rel_path = rel_path
        self.abs_path = f"{root}/{rel_path}"
        parent = self.abs_path.rsplit("/", 1)[0]
        fs.create_dir(parent, recursive=True)
        self.sink = fs.open_output_stream(self.abs_path)
        self.writer = pq.ParquetWriter(self.sink, schema, compression="snappy")
        self.buffer: list[pa.Table] = []
        self.buffered_rows = 0
        self.rows = 0
        self.stats = _StatsAccumulator(schema)

    def add(self, table: pa.Table, rows_per_row_group: int) -> None:
        self.buffer.append(table)
        self.buffered_rows += table.num_rows
        self.rows += table.num_rows
        if self.buffered_rows >= rows_per_row_group:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            chunk = pa.concat_tables(self.buffer)
            self.writer.write_table(chunk, row_group_size=max(chunk.num_rows, 1))
            self.stats.update(chunk)
            self.buffer, self.buffered_rows = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()
        self.sink.close()


class DeltaRsArrowWriter(DataSourceArrowWriter):
    """Executor: write Parquet + return add actions. Driver side: one delta-rs commit."""

    def __init__(self, options: WriterOptions) -> None:
        self.options = options

    # --- executor side -------------------------------------------------------------------
    def write(self, iterator: Iterator[pa.RecordBatch]) -> DeltaRsCommitMessage:
        from pyspark import TaskContext

        opts = self.options
        context = TaskContext.get()
        task = context.partitionId() if context else 0
        attempt = context.attemptNumber() if context else 0
        target = target_arrow_schema(opts.table_schema_json)
        data_schema = pa.schema([f for f in target if f.name not in opts.partition_by])
        fs, root = pafs.FileSystem.from_uri(_as_uri(opts.table_uri))
        root = root.rstrip("/")
        open_files: dict[tuple, _OpenFile] = {}
        done: list[dict[str, Any]] = []
        written: list[str] = []
        totals: dict[str, Any] = {}
        filters = _compile_filters(opts.partition_filters)
        try:
            for batch in iterator:
                table = _conform(pa.Table.from_batches([batch]), target)
                _add_totals(totals, table, opts.totals)
                for key, part in _split_by_partition(table, opts.partition_by):
                    _check_filters(key, opts.partition_by, filters)
                    handle = open_files.get(key)
                    if handle is not None and handle.rows >= opts.max_rows_per_file:
                        done.append(self._finish(handle, key))
                        handle = None
                    if handle is None:
                        handle = self._open(fs, root, key, task, attempt, data_schema)
                        written.append(handle.abs_path)
                        open_files[key] = handle
                    handle.add(part.select(data_schema.names), opts.rows_per_row_group)
            for key, handle in open_files.items():
                done.append(self._finish(handle, key))
            open_files.clear()
        except BaseException:
            for handle in open_files.values():
                try:
                    handle.writer.close()
                    handle.sink.close()
                except Exception:  # noqa: BLE001 - best effort before deleting the file
                    pass
            _delete_files(fs, written)
            raise
        return DeltaRsCommitMessage(adds=done, files=written, totals=totals)

    def _open(
        self, fs: pafs.FileSystem, root: str, key: tuple, task: int, attempt: int, schema: pa.Schema
    ) -> _OpenFile:
        directory = "/".join(
            f"{hive_escape(col)}={'__HIVE_DEFAULT_PARTITION__' if v is None else hive_escape(v)}"
            for col, v in zip(self.options.partition_by, key, strict=True)
        )
        name = f"part-{task:05d}-{self.options.write_id}-a{attempt}-{uuid.uuid4().hex}.c000.snappy.parquet"
        rel_path = f"{directory}/{name}" if directory else name
        return _OpenFile(fs, root, rel_path, schema)

    def _finish(self, handle: _OpenFile, key: tuple) -> dict[str, Any]:
        handle.close()
        faults.at_first_file(self.options.table_name)
        size = handle.fs.get_file_info(handle.abs_path).size
        return {
            "path": handle.rel_path,
            "size": int(size),
            "partition_values": dict(zip(self.options.partition_by, key, strict=True)),
            "modification_time": int(time.time() * 1000),
            "data_change": True,
            "stats": handle.stats.to_json(),
        }

    # --- driver side ---------------------------------------------------------------------
    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        """Commit every task's files as one Delta version (runs once, in a driver-side worker).

        Optimistic concurrency: commits that landed since the driver read the table
        (``read_version``) are checked first. A conflicting one (data changed in the partitions
        this write replaces, a full overwrite, a schema or protocol change) fails this write
        loudly and deletes its files; anything else (appends, other partitions) is rebased onto,
        so writers of disjoint partitions both succeed. A commit race lost inside delta-rs is
        retried ``commit_retries`` times, each time re-checking from ``read_version``.
        """
        from deltalake.exceptions import CommitFailedError

        opts = self.options
        real = [m for m in messages if isinstance(m, DeltaRsCommitMessage)]
        adds = [a for m in real for a in m.adds]
        files = [f for m in real for f in m.files]
        totals: dict[str, Any] = {}
        for m in real:
            for column, value in m.totals.items():
                totals[column] = totals.get(column, 0) + value
        attempts = max(0, opts.commit_retries) + 1
        for attempt in range(attempts):
            table = _open_latest(opts.table_uri)
            if attempt and table is not None and self._committed_by_us(table):
                break  # the previous attempt did commit (its response was lost): done
            if table is not None and opts.app_id is not None and opts.txn_version is not None:
                applied = table.transaction_version(opts.app_id)
                if applied is not None and applied >= opts.txn_version:
                    # Already committed by an earlier run: keep the table exactly as it is.
                    self._sweep(keep=set())
                    return
            conflict = self._conflict(table)
            if conflict:
                self._sweep(keep=set())
                raise RuntimeError(f"{CONFLICT_MARKER}: {conflict}")
            try:
                self._commit_once(table, adds, totals)
                break
            except CommitFailedError as exc:
                if attempt + 1 >= attempts:
                    self._sweep(keep=set())
                    raise RuntimeError(
                        f"{CONFLICT_MARKER}: a concurrent commit kept winning the race for the next "
                        f"version ({attempts} attempts; storage.commit_retries={opts.commit_retries}): "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                    ) from None
        # Files of failed attempts that Spark retried are not in the log: remove them now.
        self._sweep(keep=set(files))

    def _commit_once(
        self, table: Any, adds: list[dict[str, Any]], totals: dict[str, Any] | None = None
    ) -> None:
        from deltalake import Schema
        from deltalake.transaction import (
            AddAction,
            CommitProperties,
            Transaction,
            create_table_with_add_actions,
        )

        opts = self.options
        rows = sum(json.loads(a["stats"])["numRecords"] for a in adds)
        metadata = dict(
            opts.commit_metadata,
            **{
                ROWS_KEY: str(rows),
                "mlcore.files": str(len(adds)),
                WRITE_ID_KEY: opts.write_id,
            },
        )
        if opts.totals:
            sums = totals or {}
            metadata[TOTALS_KEY] = json.dumps({c: sums.get(c, 0) for c in opts.totals})
        transactions = (
            [Transaction(opts.app_id, opts.txn_version)]
            if opts.app_id is not None and opts.txn_version is not None
            else None
        )
        properties = CommitProperties(custom_metadata=metadata, app_transactions=transactions)
        actions = [AddAction(**a) for a in adds]
        schema = target_arrow_schema(opts.table_schema_json)
        if table is None:
            create_table_with_add_actions(
                opts.table_uri,
                Schema.from_arrow(schema),
                actions,
                mode="append",
                partition_by=opts.partition_by or None,
                commit_properties=properties,
            )
        else:
            filters = [tuple(f) for f in opts.partition_filters] if opts.partition_filters else None
            table.create_write_transaction(
                actions,
                mode=opts.mode,
                schema=schema,
                partition_by=opts.partition_by or None,
                partition_filters=filters,
                commit_properties=properties,
            )

    def _committed_by_us(self, table: Any) -> bool:
        start = -1 if self.options.read_version is None else self.options.read_version
        return any(
            info.get(WRITE_ID_KEY) == self.options.write_id
            for _, actions in _log_entries(self.options.table_uri, start, table.version())
            for info in [_commit_info(actions)]
        )

    def _conflict(self, table: Any) -> str | None:
        """Why a commit that landed after ``read_version`` conflicts with this write, or None."""
        opts = self.options
        if table is None:
            return None
        start = -1 if opts.read_version is None else opts.read_version
        latest = table.version()
        if latest <= start:
            return None
        filters = {
            column: ({value} if op == "=" else set(value))
            for column, op, value in opts.partition_filters or []
        }
        for version, actions in _log_entries(opts.table_uri, start, latest):
            if actions is None:
                return f"version {version} landed after this write read version {start}, and its log entry is unreadable"
            what = _conflicting_change(actions, opts.mode, filters, opts.read_version is None)
            if what:
                info = _commit_info(actions)
                by = ", ".join(
                    f"{k.removeprefix('mlcore.')} {info[k]}"
                    for k in ("mlcore.job", "mlcore.run_date", "mlcore.run_id")
                    if info.get(k)
                )
                return (
                    f"table version {version} ({info.get('operation', 'commit')}"
                    + (f" by {by}" if by else "")
                    + f") {what} after this write read version {start}; this write was not "
                    "committed (re-run it to write against the new version)"
                )
        return None

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        """Delete every file of this write, including those of attempts Spark killed.

        A killed task's writer never reaches its own cleanup and sends no message, so the
        files are found by the write id embedded in every file name.
        """
        self._sweep(keep=set())

    def _sweep(self, keep: set[str]) -> None:
        sweep_write_files(self.options.table_uri, self.options.write_id, keep)


def sweep_write_files(table_uri: str, write_id: str, keep: set[str] | None = None) -> int:
    """Delete the data files of one write (found by the write id in their names) not in ``keep``.

    Returns how many were deleted. Used by commit/abort and by the driver after a failed job.
    """
    fs, root = pafs.FileSystem.from_uri(_as_uri(table_uri))
    marker = f"-{write_id}-"
    selector = pafs.FileSelector(root.rstrip("/"), recursive=True, allow_not_found=True)
    doomed = [
        info.path
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File
        and marker in info.base_name
        and info.path not in (keep or set())
        and "/_delta_log/" not in info.path
    ]
    _delete_files(fs, doomed)
    return len(doomed)


def _as_uri(table_uri: str) -> str:
    return table_uri if "://" in table_uri else f"file://{table_uri}"


def _open_latest(table_uri: str) -> Any:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(table_uri)
    except TableNotFoundError:
        return None


def _log_entries(
    table_uri: str, after: int, latest: int
) -> Iterator[tuple[int, list[dict] | None]]:
    """The actions of each commit ``after < version <= latest`` (None when unreadable)."""
    fs, root = pafs.FileSystem.from_uri(_as_uri(table_uri))
    for version in range(after + 1, latest + 1):
        path = f"{root.rstrip('/')}/_delta_log/{version:020d}.json"
        try:
            with fs.open_input_stream(path) as stream:
                text = stream.read().decode("utf-8")
            yield version, [json.loads(line) for line in text.splitlines() if line.strip()]
        except (OSError, ValueError):
            yield version, None


def _commit_info(actions: list[dict] | None) -> dict[str, Any]:
    for action in actions or []:
        if "commitInfo" in action:
            return action["commitInfo"] or {}
    return {}


def _conflicting_change(
    actions: list[dict], mode: str, filters: dict[str, set[str]], created_here: bool
) -> str | None:
    """What in one concurrent commit conflicts with this write (Delta's conflict rules, for the
    operations mlcore issues: blind appends, whole-table and partition overwrites)."""
    for action in actions:
        if "metaData" in action:
            return "created the table" if created_here else "changed the table's schema or settings"
        if "protocol" in action:
            return "changed the table protocol"
    if mode == "append":
        return None  # a blind append reads nothing, so nothing it read can have changed
    for action in actions:
        change = action.get("add") or action.get("remove")
        if not change or change.get("dataChange") is False:
            continue
        values = change.get("partitionValues") or {}
        if not filters:
            return "changed data this write overwrites (the whole table)"
        if all(values.get(column) in allowed for column, allowed in filters.items()):
            where = ", ".join(f"{c}={values.get(c)}" for c in filters)
            return f"changed data in the partition this write replaces ({where})"
    return None


def _delete_files(fs: pafs.FileSystem, paths: list[str]) -> None:
    for path in paths:
        try:
            fs.delete_file(path)
        except (FileNotFoundError, OSError):
            pass


def _conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    """Order and cast columns to the table schema (Spark may hand over session-tz timestamps)."""
    table = table.select(target.names)
    if table.schema.equals(target, check_metadata=False):
        return table
    return table.cast(target)


def _split_by_partition(
    table: pa.Table, partition_by: list[str]
) -> Iterator[tuple[tuple, pa.Table]]:
    """(partition key, rows) per distinct partition value combination, rows in input order.

    Vectorised: a batch with one partition value (a job writing its run date) is passed through
    whole; otherwise Arrow groups the row indices (no Python loop over rows).
    """
    if not partition_by:
        yield (), table
        return
    if table.num_rows == 0:
        return
    uniques = [pc.unique(table.column(c)) for c in partition_by]
    if all(len(u) == 1 for u in uniques):
        yield tuple(partition_string(u[0].as_py()) for u in uniques), table
        return
    index = "__mlcore_row__"
    while index in table.column_names:
        index += "_"
    keyed = pa.table(
        {
            **{f"k{i}": table.column(c) for i, c in enumerate(partition_by)},
            index: pa.array(range(table.num_rows), type=pa.int64()),
        }
    )
    key_names = [f"k{i}" for i in range(len(partition_by))]
    groups = keyed.group_by(key_names, use_threads=False).aggregate([(index, "list")])
    merged: dict[tuple, list[pa.Array]] = {}
    for row, indices in zip(
        groups.select(key_names).to_pylist(), groups.column(f"{index}_list"), strict=True
    ):
        key = tuple(partition_string(row[k]) for k in key_names)
        merged.setdefault(key, []).append(indices.values)
    for key, parts in merged.items():
        yield key, table.take(pa.concat_arrays(parts) if len(parts) > 1 else parts[0])


def _add_totals(totals: dict[str, Any], table: pa.Table, columns: tuple[str, ...]) -> None:
    for column in columns:
        value = pc.sum(table.column(column)).as_py()
        if value is not None:
            totals[column] = totals.get(column, 0) + value


class FusedWriteTask:
    """Executor side of a fused transform-and-write: one call per Spark task (``mapInArrow``).

    Runs the transform over the task's input batches, writes the output like the Data Source
    writer's tasks do (same files, stats, replace-where check, cleanup of this task's files on
    failure) and yields one row: the task's commit message as JSON, for the driver to commit.
    """

    def __init__(self, options: WriterOptions, fn: Any, output_schema_json: str) -> None:
        self.options = options
        self.fn = fn
        self.output_schema_json = output_schema_json

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        declared = target_arrow_schema(self.output_schema_json)
        output = _checked_output(self.fn(batches), declared)
        message = DeltaRsArrowWriter(self.options).write(output)
        yield pa.RecordBatch.from_arrays(
            [pa.array([message.to_json()], type=pa.string())], names=["message"]
        )


def _checked_output(
    batches: Iterator[pa.RecordBatch], declared: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """The transform's batches, held to its declared schema (as Spark's mapInArrow would)."""
    for batch in batches:
        if batch.schema.names != declared.names:
            raise ValueError(
                f"transform output columns {batch.schema.names} differ from its declared "
                f"schema {declared.names}"
            )
        if batch.schema.types != declared.types:
            wrong = [
                f"{f.name}: {f.type} (declared {d.type})"
                for f, d in zip(batch.schema, declared, strict=True)
                if f.type != d.type
                and not (pa.types.is_timestamp(f.type) and pa.types.is_timestamp(d.type))
            ]
            if wrong:
                raise ValueError(f"transform output types differ from its schema: {wrong}")
            batch = batch.cast(declared)  # timestamps in another unit or zone: same instants
        yield batch


def _compile_filters(filters: list[list[Any]] | None) -> list[tuple[str, set[str]]]:
    compiled = []
    for column, op, value in filters or []:
        allowed = {value} if op == "=" else set(value)
        compiled.append((column, allowed))
    return compiled


def _check_filters(
    key: tuple, partition_by: list[str], filters: list[tuple[str, set[str]]]
) -> None:
    for column, allowed in filters:
        value = key[partition_by.index(column)]
        if value not in allowed:
            raise ValueError(
                f"{REPLACE_WHERE_MARKER}: row with {column}={value!r} is outside the replace-where "
                f"predicate ({column} in {sorted(allowed)})"
            )
