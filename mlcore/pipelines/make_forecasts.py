"""make_forecasts: the champion's per-group models forecast the next H days into ``forecasts``.

Run-date semantics: ``--run-date D`` forecasts D .. D+H-1 with the models the registry's
``champion`` alias points at (a ``forecast_models`` table version and training run date, both
recorded on the model version). Future regressors (open, promo, school_holiday, state_holiday)
come from ``forecast_calendar`` (Rossmann ``test.csv`` shape) and, for dates still inside the
sales history (backtests), from ``sales``' calendar columns — never its target. Days absent from
both get the documented defaults: open except Sundays, no promo, no school holiday, no holiday.
Output is one partition per run date, written idempotently.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from mlcore.forecasting.distributed import forecast_groups, group_partitions
from mlcore.pipelines._validation import check_inputs
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

FORECASTS, CALENDAR, MODELS = "forecasts", "forecast_calendar", "forecast_models"


def future_calendar(ctx: JobContext, groups: DataFrame) -> tuple[DataFrame, int]:
    """One row per group and horizon day with regressors; returns it and the defaulted-row count."""
    from pyspark.sql import functions as F

    fc = ctx.config.forecasting
    keys = list(fc.group_keys)
    days = [ctx.run_date + dt.timedelta(days=i) for i in range(fc.horizon_days)]
    date_col = fc.date_column
    dates = ctx.spark.createDataFrame([(d,) for d in days], f"`{date_col}` date")
    # Built from collected keys (a few thousand at most) so the grid shares no lineage with the
    # models frame it is later co-grouped with.
    key_frame = groups.select(*keys).distinct()
    key_frame = ctx.spark.createDataFrame(key_frame.collect(), key_frame.schema)
    grid = key_frame.crossJoin(F.broadcast(dates))

    calendar_cols = [
        c for c in (fc.open_column, *fc.prophet.regressors, fc.prophet.holidays_column) if c
    ]
    in_horizon = (F.col(date_col) >= F.lit(days[0])) & (F.col(date_col) <= F.lit(days[-1]))
    sources = []
    for name in (CALENDAR, "sales"):
        if ctx.tables.exists(name):
            frame = ctx.tables.read(name)
            if name == CALENDAR:  # the future calendar is an input of this job: validate it
                frame = check_inputs(ctx, {CALENDAR: frame})[CALENDAR]
            present = [c for c in calendar_cols if c in frame.columns]
            sources.append(
                frame.filter(in_horizon)
                .select(*keys, date_col, *present)
                .withColumn("_priority", F.lit(0 if name == CALENDAR else 1))
            )
    known = None
    for frame in sources:
        known = frame if known is None else known.unionByName(frame, allowMissingColumns=True)
    if known is not None:
        from pyspark.sql import Window

        first = Window.partitionBy(*keys, date_col).orderBy("_priority")
        known = (
            known.withColumn("_n", F.row_number().over(first))
            .filter("_n = 1")
            .drop("_n", "_priority")
            .withColumn("_known", F.lit(True))
        )
        calendar = grid.join(known, [*keys, date_col], "left")
    else:
        calendar = grid.withColumn("_known", F.lit(None).cast("boolean"))
    for column in calendar_cols:
        if column not in calendar.columns:
            calendar = calendar.withColumn(column, F.lit(None))
    defaults = {name: F.lit(0) for name in fc.prophet.regressors}
    if fc.open_column:  # Sunday is dayofweek 1 in Spark
        defaults[fc.open_column] = F.when(F.dayofweek(date_col) == 1, F.lit(0)).otherwise(F.lit(1))
    if fc.prophet.holidays_column:
        defaults[fc.prophet.holidays_column] = F.lit("0")
    for column, default in defaults.items():
        calendar = calendar.withColumn(column, F.coalesce(F.col(column), default))
    # Small (groups x horizon rows): recomputing it for the count is cheaper than caching it.
    defaulted = calendar.filter(F.col("_known").isNull()).count()
    return calendar.drop("_known"), defaulted


def run(ctx: JobContext) -> JobSummary:
    from mlflow.tracking import MlflowClient
    from pyspark.sql import functions as F

    from mlcore.tracking.registry import champion_version

    fc = ctx.config.forecasting
    keys = list(fc.group_keys)
    summary = JobSummary()
    token = ctx.token(FORECASTS)
    if not ctx.dry_run and ctx.tables.already_written(FORECASTS, token):
        summary.add("status", "already published for this run date: nothing to do")
        return summary
    if not ctx.config.mlflow.enabled:
        raise JobFailed("make_forecasts needs the model registry (mlflow.enabled=false)")
    champion = champion_version(MlflowClient(), fc.model_name)
    if champion is None:
        raise JobFailed(
            f"no '{fc.model_name}' version has the champion alias: run train_forecasts first"
        )
    try:
        models_version = int(champion.tags["mlcore.forecast_models_version"])
        trained_on = dt.date.fromisoformat(champion.tags["mlcore.run_date"])
    except (KeyError, ValueError) as exc:
        raise JobFailed(
            f"{fc.model_name} v{champion.version} lacks its forecast_models tags: {exc}"
        ) from exc
    if trained_on > ctx.run_date:
        raise JobFailed(
            f"champion v{champion.version} was trained as of {trained_on}, after run date {ctx.run_date}"
        )
    models = (
        ctx.tables.read(MODELS, version=models_version, where={"run_date": trained_on})
        .filter("model_json is not null")
        .select(*keys, "champion", "model_json", "baseline_json")
    )
    groups = models.count()
    if not groups:
        raise JobFailed(f"forecast_models v{models_version} has no usable models for {trained_on}")
    calendar, defaulted = future_calendar(ctx, models)
    partitions = group_partitions(ctx.spark.sparkContext.defaultParallelism, fc, groups)
    forecasts = (
        forecast_groups(models, calendar, fc, partitions)
        .withColumn("model_name", F.lit(fc.model_name))
        .withColumn("model_version", F.lit(str(champion.version)))
        .withColumn("trained_run_date", F.lit(trained_on))
        .withColumn("run_id", F.lit(ctx.run_id))
        .withColumn("run_date", F.lit(ctx.run_date))
        .withColumn("created_at", F.current_timestamp())
    ).persist()
    rows = forecasts.count()
    forecast_groups_count = forecasts.select(*keys).distinct().count()
    summary.add("model", f"{fc.model_name} v{champion.version} (trained as of {trained_on})")
    summary.use_model(fc.model_name, champion.version, "used", champion.run_id)
    summary.add("groups with models", groups, metric="groups")
    summary.add("groups forecast", forecast_groups_count, metric="groups_forecast")
    summary.add("forecast rows", rows, metric="forecast_rows")
    summary.add(
        "horizon", f"{ctx.run_date} .. {ctx.run_date + dt.timedelta(days=fc.horizon_days - 1)}"
    )
    summary.add("calendar rows defaulted", defaulted, metric="calendar_rows_defaulted")
    if forecast_groups_count < groups:
        log.warning("%d groups produced no forecast", groups - forecast_groups_count)
    if not ctx.dry_run:
        summary.writes.append(
            ctx.tables.write(
                forecasts,
                FORECASTS,
                mode="replace_where",
                replace_where={"run_date": ctx.run_date},
                token=token,
            )
        )
    forecasts.unpersist()
    return summary
