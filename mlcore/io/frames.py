"""Small driver-side DataFrames (status rows, manifests, validation results) as local relations.

``spark.createDataFrame(list_of_rows, schema)`` parallelises the rows into an RDD, so every later
action on them (a Delta write above all) runs Spark tasks and starts Python workers for a handful
of rows. :func:`local_frame` builds the same DataFrame from an Arrow table instead, which Spark
keeps as a ``LocalRelation``: the delta-rs engine recognises it and writes it from the driver in
one step (see ``DeltaRsEngine.write``). Measured for a 5-row write: 0.08 s against 0.20 s through
writer tasks in a warm session, and 0.16 s against 4 s when it is the session's first Python work.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession
    from pyspark.sql.types import StructType


def local_frame(
    spark: SparkSession,
    rows: Iterable[Sequence[Any] | Mapping[str, Any]],
    schema: StructType | str,
) -> DataFrame:
    """``spark.createDataFrame(rows, schema)`` as a driver-local relation, same values.

    Rows are tuples in schema order or mappings by column name. Naive datetimes are local time,
    as ``createDataFrame`` takes them; values must fit their column type (Arrow checks them:
    a string for an integer column is a ``TypeError`` or ``ArrowInvalid``, not a silent null).
    """
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType, _parse_datatype_string

    struct = schema if isinstance(schema, StructType) else _parse_datatype_string(schema)
    if not isinstance(struct, StructType):
        raise TypeError(f"local_frame needs a struct schema, got {struct.simpleString()}")
    timezone = spark.conf.get("spark.sql.session.timeZone", "UTC") or "UTC"
    arrow_schema = to_arrow_schema(struct, timezone=timezone)
    names = struct.fieldNames()
    records = []
    for row in rows:
        values = dict(row) if isinstance(row, Mapping) else dict(zip(names, row, strict=True))
        unknown = set(values) - set(names)
        if unknown:
            raise ValueError(f"local_frame: columns {sorted(unknown)} are not in the schema")
        records.append({name: _as_instant(values.get(name)) for name in names})
    table = pa.Table.from_pylist(records, schema=arrow_schema)
    return spark.createDataFrame(table)


def _as_instant(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.astimezone()  # naive = local wall time, as Spark's createDataFrame reads it
    return value


def is_driver_local(df: DataFrame) -> bool:
    """True when ``df``'s optimised plan is a ``LocalRelation``: its rows are already on the
    driver, so collecting them runs no Spark job (a projection of local rows folds into one)."""
    from mlcore.spark_classic import optimized_plan_kind

    return optimized_plan_kind(df) == "LocalRelation"  # None (unknown, Connect): not local


def aggregate_row(df: DataFrame) -> Row:
    """The one row of a global aggregation (``df.agg(...)`` without grouping), which Spark
    always returns, even over no input: typed as a ``Row`` where ``first()`` says ``Row | None``."""
    row = df.first()
    if row is None:
        raise ValueError("a global aggregation returned no row")
    return row
