"""The known calendar of the forecasting groups, read the same way by training and serving.

A day's calendar (open flag, promo, holidays: never the target) comes from, in this order:
``sales`` for days before the run date (what happened), then ``forecast_calendar`` (what is
planned), then ``sales`` for days on/after the run date (backtests on a complete file). Training
and ``make_forecasts`` build the shared features (:func:`mlcore.forecasting.features.add_features`)
over this one calendar, so a day's features do not depend on which job computed them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from mlcore.forecasting.features import add_features, calendar_columns, context_days
from mlcore.pipelines._validation import check_inputs
from mlcore.pipelines.context import JobContext

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.sql import DataFrame

CALENDAR = "forecast_calendar"


def planned_calendar(ctx: JobContext, start: dt.date, end: dt.date) -> DataFrame | None:
    """Calendar rows for ``start <= date < end`` (on/after the run date): ``forecast_calendar``
    first, then ``sales``' calendar columns; keys, date and the calendar columns (null where a
    source lacks one). None when neither table exists."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    fc = ctx.config.forecasting
    keys, date = list(fc.group_keys), fc.date_column
    columns = calendar_columns(fc)
    in_range = (F.col(date) >= F.lit(start)) & (F.col(date) < F.lit(end))
    sources = []
    for priority, name in enumerate((CALENDAR, "sales")):
        if not ctx.tables.exists(name):
            continue
        frame = ctx.tables.read(name)
        if name == CALENDAR:  # the future calendar is an input of the job: validate it
            frame = check_inputs(ctx, {CALENDAR: frame})[CALENDAR]
        present = [c for c in columns if c in frame.columns]
        sources.append(
            frame.filter(in_range)
            .select(*keys, date, *present)
            .withColumn("_priority", F.lit(priority))
        )
    if not sources:
        return None
    known = sources[0]
    for frame in sources[1:]:
        known = known.unionByName(frame, allowMissingColumns=True)
    for column in columns:
        if column not in known.columns:
            known = known.withColumn(column, F.lit(None))
    first = Window.partitionBy(*keys, date).orderBy("_priority")
    return (
        known.withColumn("_rank", F.row_number().over(first))
        .filter("_rank = 1")
        .drop("_rank", "_priority")
    )


def store_attributes(ctx: JobContext) -> DataFrame | None:
    """The ``stores`` table (validated) when store features are configured and it exists."""
    settings = ctx.config.forecasting.features
    if not settings.enabled or not settings.stores_table:
        return None
    if not ctx.tables.exists(settings.stores_table):
        return None
    frame = ctx.tables.read(settings.stores_table)
    return check_inputs(ctx, {settings.stores_table: frame})[settings.stores_table]


def featurizer(
    ctx: JobContext, start: dt.date | None, end: dt.date
) -> Callable[[DataFrame], DataFrame] | None:
    """What the grouped stage applies to its (key-partitioned) rows: the shared features, then
    only the rows with ``start <= date < end`` (the rows before ``start`` and from ``end`` on
    were there for the days-since / days-until features). None when features are off."""
    from pyspark.sql import functions as F

    fc = ctx.config.forecasting
    if not fc.features.enabled:
        return None
    stores = store_attributes(ctx)
    date = F.col(fc.date_column)

    def featured(rows: DataFrame) -> DataFrame:
        out = add_features(rows, fc, stores).filter(date < F.lit(end))
        return out.filter(date >= F.lit(start)) if start is not None else out

    return featured


def lookahead(ctx: JobContext) -> dt.timedelta:
    """How far before the first and past the last row that needs features the calendar is read."""
    return dt.timedelta(days=context_days(ctx.config.forecasting))
