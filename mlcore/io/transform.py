"""Per-partition Arrow transforms whose output a Delta write stores.

``DeltaTables.write(df, name, transform=ArrowTransform(fn, schema))`` writes what
``df.mapInArrow(fn, schema)`` would produce. On native Delta that is exactly how it runs. On the
delta-rs engine the write is *fused*: each Spark task runs ``fn`` over its input batches and writes
the Parquet files of the output itself, and only the add actions travel back to the driver, which
commits them once. The output rows never make a second JVM -> Python round trip into the
writer, which for a model-scoring job is a large share of the non-model cost.

``fn`` runs on executors: it must be picklable (a closure over broadcasts and plain values is
fine) and pure (no table IO, no MLflow). It may yield any number of batches per input batch, each
with exactly the declared columns, in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType, StructType

BatchFn = Callable[[Iterator["pa.RecordBatch"]], Iterator["pa.RecordBatch"]]


@dataclass(frozen=True)
class ArrowTransform:
    """``fn`` maps one partition's Arrow record batches to output batches of ``schema``."""

    fn: BatchFn
    schema: StructType

    def apply(self, df: DataFrame) -> DataFrame:
        """The transformed rows as a DataFrame (what an unfused write or a dry run uses)."""
        return df.mapInArrow(self.fn, self.schema)

    def with_constants(
        self, columns: Mapping[str, tuple[Any, DataType]], timezone: str | None = None
    ) -> ArrowTransform:
        """The same transform with constant columns appended to every output batch.

        ``columns`` maps a column name to ``(value, Spark type)``; e.g. the run id and run date
        that every job output row carries. Cheaper than a Spark ``select(lit(...))`` on the
        transform's output, and possible in a fused write, where there is no Spark plan after
        the transform. Timestamps are labelled with ``timezone`` (default: the active session's
        ``spark.sql.session.timeZone``), as Spark expects them in ``mapInArrow`` output.
        """
        from pyspark.sql import SparkSession
        from pyspark.sql.types import StructField, StructType

        if not columns:
            return self
        clash = [name for name in columns if name in self.schema.fieldNames()]
        if clash:
            raise ValueError(f"constant columns {clash} already produced by the transform")
        schema = StructType(
            [*self.schema.fields, *[StructField(n, t, True) for n, (_, t) in columns.items()]]
        )
        if timezone is None:
            session = SparkSession.getActiveSession()
            timezone = (session.conf.get("spark.sql.session.timeZone", None) if session else None) or "UTC"
        constants = _constant_specs(columns)
        return ArrowTransform(_AppendConstants(self.fn, constants, timezone), schema)


def _constant_specs(columns: Mapping[str, tuple[Any, DataType]]) -> list[tuple[str, Any, DataType]]:
    """(name, value, Spark type) per constant, with values checked and made Arrow-ready."""
    specs = []
    for name, (value, data_type) in columns.items():
        if value is not None and not isinstance(
            value, (str, bool, int, float, Decimal, dt.date, dt.datetime)
        ):
            raise ValueError(f"constant column {name!r}: unsupported value {value!r}")
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            # Spark timestamps are instants; a naive value is taken to be UTC.
            value = value.replace(tzinfo=dt.timezone.utc)
        specs.append((name, value, data_type))
    return specs


class _AppendConstants:
    """Picklable wrapper: ``fn``'s batches plus constant columns (built once per batch size)."""

    def __init__(
        self, fn: BatchFn, constants: list[tuple[str, Any, DataType]], timezone: str
    ) -> None:
        self.fn = fn
        self.constants = constants
        self.timezone = timezone

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        from pyspark.sql.pandas.types import to_arrow_type

        scalars = [
            (name, pa.scalar(value, type=to_arrow_type(kind, timezone=self.timezone)))
            for name, value, kind in self.constants
        ]
        cache: dict[int, list[pa.Array]] = {}
        for batch in self.fn(batches):
            n = batch.num_rows
            arrays = cache.get(n)
            if arrays is None:
                arrays = [pa.repeat(scalar, n) for _, scalar in scalars]
                cache.clear()
                cache[n] = arrays
            yield pa.RecordBatch.from_arrays(
                [*batch.columns, *arrays], names=[*batch.schema.names, *[s[0] for s in scalars]]
            )
