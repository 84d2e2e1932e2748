"""Shared IO for the ride anomaly jobs: which days a run covers, usable rides with features, and
the quarantined rest (rule + reason), all from the ``rides`` table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlcore.anomaly.features import (
    FEATURES,
    REASON,
    ROW_KEY,
    RULE,
    check_feature_names,
    classify_rides,
    row_key,
)
from mlcore.io.tables import RUN_COLUMNS
from mlcore.pipelines._validation import check_inputs
from mlcore.pipelines.context import JobContext, JobFailed

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

PASSTHROUGH = ("pickup_datetime", "pickup_location_id", "dropoff_location_id")
MONTH_COLUMN = "pickup_month"  # rides' partition column (YYYY-MM of pickup_date)


def days_before(run_date: dt.date, days: int) -> list[dt.date]:
    """The ``days`` calendar days before ``run_date`` (inputs strictly before the run date)."""
    if days < 1:
        raise JobFailed(f"need at least one day, got {days}")
    return [run_date - dt.timedelta(days=i) for i in range(days, 0, -1)]


def read_rides(ctx: JobContext, days: list[dt.date]) -> DataFrame:
    ac = ctx.config.anomaly
    try:
        check_feature_names(ac.features)
    except ValueError as exc:
        raise JobFailed(f"anomaly.features: {exc}") from None
    where: dict[str, Any] = {ac.date_column: days}
    if MONTH_COLUMN in ctx.tables.ref(ac.input_table).partition_by:  # reads only those months
        where[MONTH_COLUMN] = sorted({day.strftime("%Y-%m") for day in days})
    rides = ctx.tables.read(ac.input_table, where=where)
    rides = check_inputs(ctx, {ac.input_table: rides})[ac.input_table]
    if rides.limit(1).count() == 0:
        raise JobFailed(f"no rides in {ac.input_table} for {days[0]} .. {days[-1]}")
    missing = sorted(
        {
            *PASSTHROUGH,
            ac.date_column,
            *ac.batch_keys,
            "dropoff_datetime",
            "trip_distance",
            "fare_amount",
        }
        - set(rides.columns)
    )
    if missing:
        raise JobFailed(f"{ac.input_table} lacks columns {missing}")
    return rides


def split_usable(
    ctx: JobContext, rides: DataFrame, features: Sequence[str] | None = None
) -> tuple[DataFrame, DataFrame]:
    """(usable rides: row_key, pickup_ts_us, day, batch keys, pass-through and feature columns;
    quarantined rides: every source column plus rule, reason, run_id, run_date).

    ``features`` defaults to ``anomaly.features``; scoring passes the model's own list.
    """
    from pyspark.sql import functions as F

    ac = ctx.config.anomaly
    names = list(features if features is not None else ac.features)
    source = sorted(
        c for c in rides.columns if c not in RUN_COLUMNS
    )  # the ingest run, not a ride attribute
    keyed = classify_rides(rides, ac, names).withColumn(ROW_KEY, row_key(source))
    keys = [ac.date_column, *[k for k in ac.batch_keys if k != ac.date_column]]
    usable = keyed.filter(F.col(RULE).isNull()).select(
        ROW_KEY,
        F.unix_micros("pickup_datetime").alias("pickup_ts_us"),
        *dict.fromkeys([*keys, *PASSTHROUGH]),
        *[FEATURES[name]().alias(name) for name in names],
    )
    quarantined = keyed.filter(F.col(RULE).isNotNull()).select(
        ROW_KEY,
        *[c for c in source],
        RULE,
        REASON,
        *ctx.run_columns(),
    )
    return usable, quarantined


def batch_keys(ctx: JobContext) -> list[str]:
    ac = ctx.config.anomaly
    return [ac.date_column, *[k for k in ac.batch_keys if k != ac.date_column]]
