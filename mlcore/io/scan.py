"""A direct Arrow scan of a delta-rs table: Parquet read in the Python workers, not the JVM.

On the delta-rs engine ``DeltaTables.read`` is a Spark Parquet scan, so a job that only feeds the
rows to a Python transform (model scoring) pays the JVM for reading, for converting rows to Arrow
and for sending them to the Python worker. :class:`ArrowScan` skips all of that: the driver plans
*slices* of the table version's files (a file, or a range of its row groups, with its partition
values), balanced by row counts over N Spark partitions, as a tiny DataFrame; each task's
:class:`SliceReader` reads its slices with ``pyarrow.parquet`` and yields Arrow batches of the
requested columns, typed exactly as Spark would hand ``read(...)``'s rows to ``mapInArrow``.

``scan.then(transform)`` composes the reader with a transform, so
``DeltaTables.write(scan.slices, name, transform=scan.then(t))`` reads, transforms and writes in the
same task. Tables the scan cannot represent faithfully (column mapping, live deletion vectors,
nested or interval columns, files the log does not describe) raise :class:`ScanUnsupported`;
``DeltaTables.scan`` turns that into ``None`` and callers keep the Spark read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcore.io.transform import ArrowTransform, BatchFn
from mlcore.spark_classic import default_parallelism

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

# Columns of the slices DataFrame (partition values travel in the ``partition`` struct, so no
# table column name can clash with them).
PATH, FIRST, STOP, ROWS, PARTITION = (
    "path",
    "row_group_start",
    "row_group_stop",
    "rows",
    "partition",
)
_ATOMIC = {
    "boolean", "tinyint", "smallint", "int", "bigint", "float", "double", "string", "binary",
    "date", "timestamp", "timestamp_ntz",
}  # fmt: skip


class ScanUnsupported(Exception):
    """The table (or the requested columns) cannot be scanned faithfully; read it with Spark."""


@dataclass(frozen=True)
class FileSlice:
    """Row groups ``[first, stop)`` of one data file (``stop`` -1: to the end of the file)."""

    path: str
    first: int
    stop: int
    rows: int
    partition_values: tuple[Any, ...]


class SliceReader:
    """Executor side: slice batches (rows of the slices DataFrame) -> Arrow batches of the columns.

    Picklable (plain values and an Arrow schema). Parquet columns are cast to the table's Spark
    types as ``mapInArrow`` would see them (a column a file lacks is null, as in Spark's scan);
    partition columns are filled from the slice's partition values.
    """

    def __init__(
        self,
        columns: Sequence[str],
        target: pa.Schema,
        partition_columns: Sequence[str],
        batch_rows: int,
    ) -> None:
        self.columns = list(columns)
        self.target = target
        self.partition_columns = [c for c in partition_columns if c in self.columns]
        self.batch_rows = batch_rows

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            paths = batch.column(PATH).to_pylist()
            firsts = batch.column(FIRST).to_pylist()
            stops = batch.column(STOP).to_pylist()
            parts = batch.column(PARTITION) if self.partition_columns else None
            for i, path in enumerate(paths):
                values = {}
                if parts is not None:
                    for column in self.partition_columns:
                        values[column] = parts.field(column)[i]
                yield from self.read_slice(path, firsts[i], stops[i], values)

    def read_slice(
        self, path: str, first: int, stop: int, partition_values: dict[str, pa.Scalar]
    ) -> Iterator[pa.RecordBatch]:
        """Batches of one slice, in file order."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        with open_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            stop = parquet.num_row_groups if stop < 0 else stop
            present = {name: name for name in parquet.schema_arrow.names}
            lowered = {name.lower(): name for name in parquet.schema_arrow.names}
            wanted = [c for c in self.columns if c not in self.partition_columns]
            # Spark matches Parquet columns case-insensitively (spark.sql.caseSensitive=false).
            source = {c: present.get(c) or lowered.get(c.lower()) for c in wanted}
            read = sorted({s for s in source.values() if s is not None})
            if stop <= first:
                return
            if not read:  # only partition columns (or columns no file has): rows, no data
                sizes = [parquet.metadata.row_group(i).num_rows for i in range(first, stop)]
                batches = (pa.record_batch([pa.nulls(n)], names=["_"]) for n in sizes if n)
            else:
                batches = parquet.iter_batches(
                    batch_size=self.batch_rows,
                    row_groups=range(first, stop),
                    columns=read,
                    use_threads=False,
                )
            for raw in batches:
                n = raw.num_rows
                if n == 0:
                    continue
                arrays = []
                for field in self.target:
                    name = field.name
                    if name in partition_values:
                        arrays.append(pa.repeat(partition_values[name].cast(field.type), n))
                    elif source[name] is None:
                        arrays.append(pa.nulls(n, type=field.type))
                    else:
                        arrays.append(raw.column(source[name]).cast(field.type))
                yield pa.RecordBatch.from_arrays(arrays, schema=self.target)


class _Chain:
    """Picklable composition of batch functions: ``fns[-1](...fns[0](batches))``."""

    def __init__(self, *fns: BatchFn) -> None:
        self.fns = fns

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for fn in self.fns:
            batches = fn(batches)
        yield from batches


def chain(*fns: BatchFn) -> BatchFn:
    """One batch function running ``fns`` in order (each consumes the previous one's batches)."""
    return _Chain(*fns)


@dataclass(frozen=True)
class ArrowScan:
    """A planned scan of one table version: slices to distribute and the reader of a slice."""

    table: str
    version: int
    slices: DataFrame
    reader: SliceReader
    schema: StructType
    rows: int
    partitions: int
    plan: tuple[tuple[FileSlice, ...], ...]

    def then(self, transform: ArrowTransform) -> ArrowTransform:
        """``transform`` applied to this scan's rows, as a transform of :attr:`slices`."""
        return ArrowTransform(chain(self.reader, transform.fn), transform.schema)

    def frame(self) -> DataFrame:
        """The scanned rows as a DataFrame (the requested columns; mostly for tests)."""
        return self.slices.mapInArrow(self.reader, self.schema)


def plan_scan(
    spark: SparkSession,
    dt: DeltaTable,
    name: str,
    columns: Sequence[str],
    partitions: int | None = None,
    batch_rows: int | None = None,
) -> ArrowScan:
    """Plan the scan of ``dt`` (already checked readable) for ``columns``; ScanUnsupported if
    the columns or files cannot be read faithfully this way."""
    import json

    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_type
    from pyspark.sql.types import StructType

    from mlcore.io.schema import as_nullable

    table_schema = StructType.fromJson(json.loads(dt.schema().to_json()))
    fields = {f.name: f for f in table_schema.fields}
    missing = [c for c in columns if c not in fields]
    if missing:
        raise ValueError(f"table {name!r} has no columns {missing}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"duplicate columns in {list(columns)}")
    unsupported = [
        f"{c} ({fields[c].dataType.simpleString()})"
        for c in columns
        if fields[c].dataType.simpleString() not in _ATOMIC
        and not fields[c].dataType.simpleString().startswith("decimal(")
    ]
    if unsupported:
        raise ScanUnsupported(f"column types not supported by the direct scan: {unsupported}")
    lowered = [c.lower() for c in table_schema.fieldNames()]
    if len(set(lowered)) != len(lowered):
        raise ScanUnsupported("column names that differ only in case")
    schema = as_nullable(StructType([fields[c] for c in columns]))
    timezone = spark.conf.get("spark.sql.session.timeZone", "UTC")
    target = pa.schema(
        [pa.field(f.name, to_arrow_type(f.dataType, timezone=timezone)) for f in schema.fields]
    )
    partition_cols = list(dt.metadata().partition_columns)
    if batch_rows is None:
        batch_rows = int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch", None) or 10000)
    partitions = partitions or default_parallelism(spark)
    if partitions < 1:
        raise ValueError("partitions must be >= 1")

    files = [
        (path, sum(_row_groups(path)) if rows is None else rows, values)
        for path, rows, values in _data_files(dt, partition_cols)
    ]
    total = sum(rows for _, rows, _ in files)
    target_rows = max(1, math.ceil(total / partitions))
    slices: list[FileSlice] = []
    for path, rows, values in files:
        if rows > target_rows and partitions > 1:
            slices.extend(_split_file(path, rows, values, target_rows))
        elif rows > 0:
            slices.append(FileSlice(path, 0, -1, rows, values))
    groups = balance(slices, partitions)
    used = [f for f in table_schema.fields if f.name in partition_cols]
    slices_df = _slices_frame(spark, groups, used)
    reader = SliceReader(columns, target, partition_cols, max(1, batch_rows))
    return ArrowScan(
        table=name,
        version=dt.version(),
        slices=slices_df,
        reader=reader,
        schema=schema,
        rows=sum(s.rows for s in slices),
        partitions=len(groups),
        plan=tuple(tuple(g) for g in groups),
    )


def _data_files(
    dt: DeltaTable, partition_cols: Sequence[str]
) -> list[tuple[str, int | None, tuple[Any, ...]]]:
    """(file URI, rows or None, partition values) of every data file of the version, by path."""
    import pyarrow as pa

    uris = dt.file_uris()
    actions = pa.table(dt.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    if len(uris) != len(paths) or not all(
        u.endswith(p) or u.endswith(p.replace(" ", "%20")) for u, p in zip(uris, paths, strict=True)
    ):
        raise ScanUnsupported("the file URIs and the add actions do not line up")
    counts = (
        actions.column("num_records").to_pylist()
        if "num_records" in actions.column_names
        else [None] * len(paths)
    )
    values = [actions.column(f"partition.{c}").to_pylist() for c in partition_cols]
    files = [
        (uri, None if n is None else int(n), tuple(v[i] for v in values))
        for i, (uri, n) in enumerate(zip(uris, counts, strict=True))
    ]
    return sorted(files, key=lambda f: f[0])


def open_file(path: str) -> Any:
    """A random-access input file for a data file URI (or a local path)."""
    import pyarrow.fs as pafs

    if "://" not in path:
        return pafs.LocalFileSystem().open_input_file(path)
    fs, file_path = pafs.FileSystem.from_uri(path)
    return fs.open_input_file(file_path)


def _row_groups(path: str) -> list[int]:
    """Rows per row group of one data file (its footer)."""
    import pyarrow.parquet as pq

    with open_file(path) as handle:
        meta = pq.ParquetFile(handle).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def _split_file(path: str, rows: int, values: tuple[Any, ...], target_rows: int) -> list[FileSlice]:
    """Consecutive row groups of one file, grouped into slices of about ``target_rows``."""
    sizes = _row_groups(path)
    if sum(sizes) != rows:
        raise ScanUnsupported(f"{path}: {sum(sizes)} rows in the file, {rows} in the Delta log")
    slices: list[FileSlice] = []
    first, acc = 0, 0
    for i, size in enumerate(sizes):
        if acc and acc + size > target_rows:
            slices.append(FileSlice(path, first, i, acc, values))
            first, acc = i, 0
        acc += size
    if acc:
        slices.append(FileSlice(path, first, len(sizes), acc, values))
    return slices


def balance(slices: Sequence[FileSlice], partitions: int) -> list[list[FileSlice]]:
    """Slices over ``partitions`` groups by rows: largest first onto the least loaded group
    (ties: the lower group), each group then in path order. Deterministic for a given input."""
    groups: list[list[FileSlice]] = [[] for _ in range(partitions)]
    loads = [0] * partitions
    order = sorted(range(len(slices)), key=lambda i: (-slices[i].rows, i))
    for i in order:
        g = min(range(partitions), key=lambda k: (loads[k], k))
        groups[g].append(slices[i])
        loads[g] += slices[i].rows
    return [sorted(g, key=lambda s: (s.path, s.first)) for g in groups]


def _slices_frame(
    spark: SparkSession, groups: list[list[FileSlice]], partition_fields: list
) -> DataFrame:
    """The slices as a DataFrame with exactly ``len(groups)`` partitions, group k in partition k.

    ``range`` gives one row per partition (row k in partition k); a broadcast join on the group
    number attaches group k's slices to it, so partitioning follows ``range`` (no shuffle, no
    Python worker). Partition values are typed by ``createDataFrame`` like the Spark read's.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import (
        IntegerType,
        LongType,
        StringType,
        StructField,
        StructType,
    )

    columns = [
        StructField(PATH, StringType(), False),
        StructField(FIRST, IntegerType(), False),
        StructField(STOP, IntegerType(), False),
        StructField(ROWS, LongType(), False),
    ]
    if partition_fields:
        columns.append(StructField(PARTITION, StructType(partition_fields), False))
    schema = StructType(columns)
    rows = [
        (k, s.path, s.first, s.stop, s.rows, *([s.partition_values] if partition_fields else []))
        for k, group in enumerate(groups)
        for s in group
    ]
    if not rows:
        return spark.createDataFrame([], schema)
    group = "_mlcore_group"
    listed = spark.createDataFrame(
        rows, StructType([StructField(group, LongType(), False), *columns])
    )
    ids = spark.range(0, len(groups), 1, numPartitions=len(groups))
    joined = ids.join(F.broadcast(listed), ids["id"] == listed[group], "inner")
    return joined.select(*[listed[n] for n in schema.fieldNames()])
