"""One-time table migrations: what changed in a table's schema or layout between mlcore
versions, how to tell an old table, and how to convert it.

A job never writes to a table that still has the old shape: it stops with one line naming the
change and the command (``python -m mlcore migrate --env <env>``), which rewrites each such
table in one commit with every row kept (the old version stays in the Delta log until VACUUM).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

    from mlcore.io.tables import TableRef


@dataclass(frozen=True)
class Migration:
    """``applies(schema, partition_columns, table)`` says whether a table as it is needs it;
    ``convert`` turns its rows into the new shape (written with the configured partitioning)."""

    table: str
    change: str
    applies: Callable[[StructType, list[str], TableRef], bool]
    convert: Callable[[DataFrame], DataFrame]


def _type_of(schema: StructType, column: str) -> str | None:
    return schema[column].dataType.simpleString() if column in schema.fieldNames() else None


def _model_version_int(df: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    return df.withColumn("model_version", F.col("model_version").cast("int"))


def _backtest_window(df: DataFrame) -> DataFrame:
    return df.withColumnRenamed("window", "backtest_window")


def _pickup_month(df: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    if "pickup_month" in df.columns:
        return df
    # The new column sits after pickup_date, as ingest_rides writes it.
    columns = df.columns
    at = columns.index("pickup_date") + 1
    month = F.date_format(F.col("pickup_date"), "yyyy-MM").alias("pickup_month")
    return df.select(*columns[:at], month, *columns[at:])


def _repartitioned(schema: StructType, partitions: list[str], table: TableRef) -> bool:
    return list(partitions) != list(table.partition_by)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "forecasts", "model_version string -> int (the type the score tables use)",
        lambda schema, _, __: _type_of(schema, "model_version") == "string", _model_version_int,
    ),
    Migration(
        "forecast_metrics", "column window -> backtest_window (no quoting needed in SQL)",
        lambda schema, _, __: "window" in schema.fieldNames(), _backtest_window,
    ),
    Migration(
        "forecast_backtest", "column window -> backtest_window (no quoting needed in SQL)",
        lambda schema, _, __: "window" in schema.fieldNames(), _backtest_window,
    ),
    Migration(
        "rides", "partitioned by pickup_month (one partition a month, was one a day)",
        _repartitioned, _pickup_month,
    ),
)  # fmt: skip

TABLES_WITH_MIGRATIONS = frozenset(m.table for m in MIGRATIONS)


def pending(
    table: TableRef, layout: tuple[StructType, list[str]] | None
) -> list[Migration]:
    """The migrations ``table`` (as ``layout`` describes it; None: it does not exist) needs."""
    if layout is None:
        return []
    schema, partitions = layout
    return [m for m in MIGRATIONS if m.table == table.name and m.applies(schema, partitions, table)]


def convert(df: DataFrame, migrations: list[Migration]) -> DataFrame:
    for migration in migrations:
        df = migration.convert(df)
    return df
