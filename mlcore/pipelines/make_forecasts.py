"""make_forecasts: the champion's per-group models forecast the next H days into ``forecasts``.

Run-date semantics: ``--run-date D`` forecasts D .. D+H-1 with the models the registry's
``champion`` alias points at (a ``forecast_models`` table version and training run date, both
recorded on the model version). Future regressors (open, promo, school_holiday, state_holiday)
come from ``forecast_calendar`` (Rossmann ``test.csv`` shape) and, for dates still inside the
sales history (backtests), from ``sales``' calendar columns — never its target. Days absent from
both get the documented defaults: open except Sundays, no promo, no school holiday, no holiday.
The shared features (:mod:`mlcore.forecasting.features`) are computed over that calendar plus the
``context_days`` before and after the horizon, by the same function training uses.
Every group of the champion's training run gets one ``forecast_status`` row: ``ok`` (the
champion's forecast), ``fallback`` (the baseline's, with why the champion was rejected: a model
JSON that no longer matches the content hash stored at training, a load or predict error, or an
implausible forecast above ``forecasting.max_forecast_multiple`` x the group's historical
maximum), ``failed`` (nothing usable: no rows) or ``skipped`` (training left it without a model).
Above ``forecasting.failure_budget`` failed groups nothing is published. Both outputs are one
partition per run date, written idempotently.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from mlcore.config.errors import ConfigError
from mlcore.forecasting.distributed import forecast_groups, group_partitions
from mlcore.forecasting.features import calendar_columns, feature_problems
from mlcore.pipelines._calendar import featurizer, lookahead, planned_calendar
from mlcore.pipelines._progress import StageReporter
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary, TableOutput
from mlcore.spark_classic import default_parallelism

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

FORECASTS, MODELS = "forecasts", "forecast_models"
STATUS = "forecast_status"


def future_calendar(ctx: JobContext, groups: DataFrame) -> tuple[DataFrame, int]:
    """One row per group and horizon day with its calendar (:mod:`mlcore.pipelines._calendar`
    order, then the documented defaults); returns it and the defaulted-row count. With the
    shared features on, the calendar of the ``context_days`` before and after the horizon
    comes along (the featurizer reads and then drops it)."""
    from pyspark.sql import functions as F

    fc = ctx.config.forecasting
    keys = list(fc.group_keys)
    horizon_end = ctx.run_date + dt.timedelta(days=fc.horizon_days)
    days = [ctx.run_date + dt.timedelta(days=i) for i in range(fc.horizon_days)]
    date_col = fc.date_column
    dates = ctx.spark.createDataFrame([(d,) for d in days], f"`{date_col}` date")
    # Built from collected keys (a few thousand at most) so the grid shares no lineage with the
    # models frame it is later co-grouped with.
    key_frame = groups.select(*keys).distinct()
    key_frame = ctx.spark.createDataFrame(key_frame.collect(), key_frame.schema)
    grid = key_frame.crossJoin(F.broadcast(dates))

    columns = calendar_columns(fc)
    # One read (and one validation) of the planned calendar: the horizon, and with the shared
    # features on, the days after it that the featurizer reads
    window = lookahead(ctx) if fc.features.enabled else dt.timedelta(0)
    planned = planned_calendar(ctx, ctx.run_date, horizon_end + window)
    in_horizon = F.col(date_col) < F.lit(horizon_end)
    if planned is not None:
        known = planned.filter(in_horizon).withColumn("_known", F.lit(True))
        calendar = grid.join(known, [*keys, date_col], "left")
    else:
        calendar = grid.withColumn("_known", F.lit(None).cast("boolean"))
        for column in columns:
            calendar = calendar.withColumn(column, F.lit(None))
    defaults = {name: F.lit(0) for name in columns}
    if fc.open_column:  # Sunday is dayofweek 1 in Spark
        defaults[fc.open_column] = F.when(F.dayofweek(date_col) == 1, F.lit(0)).otherwise(F.lit(1))
    if fc.prophet.holidays_column:
        defaults[fc.prophet.holidays_column] = F.lit("0")
    for column, default in defaults.items():
        calendar = calendar.withColumn(column, F.coalesce(F.col(column), default))
    # Small (groups x horizon rows): recomputing it for the count is cheaper than caching it.
    defaulted = calendar.filter(F.col("_known").isNull()).count()
    calendar = calendar.drop("_known")
    if fc.features.enabled:
        around = []
        if ctx.tables.exists("sales"):
            sales = ctx.tables.read("sales")
            recent = (F.col(date_col) >= F.lit(ctx.run_date - window)) & (
                F.col(date_col) < F.lit(ctx.run_date)
            )
            around.append(
                sales.filter(recent).select(*keys, date_col, *[c for c in columns if c in sales.columns])
            )
        if planned is not None:
            around.append(planned.filter(~in_horizon))
        for frame in around:
            calendar = calendar.unionByName(frame, allowMissingColumns=True)
    return calendar, defaulted


def run(ctx: JobContext) -> JobSummary:
    from mlcore.tracking.registry import ModelRegistry
    from mlcore.tracking.runs import TAG_RUN_DATE

    fc = ctx.config.forecasting
    problems = feature_problems(fc)
    if problems:  # before any Spark work: the features cannot be computed as configured
        raise ConfigError("; ".join(problems))
    keys = list(fc.group_keys)
    summary = JobSummary()
    token = ctx.token(FORECASTS)
    if (
        not ctx.dry_run
        and ctx.tables.already_written(FORECASTS, token)
        and ctx.tables.already_written(STATUS, ctx.token(STATUS))
    ):
        summary.add("status", "already published for this run date: nothing to do")
        return summary
    if not ctx.config.mlflow.enabled:
        raise JobFailed("make_forecasts needs the model registry (mlflow.enabled=false)")
    champion = ModelRegistry().champion(fc.model_name)
    if champion is None:
        raise JobFailed(
            f"no '{fc.model_name}' version has the champion alias: run train_forecasts first"
        )
    try:
        models_version = int(champion.tags["mlcore.forecast_models_version"])
        trained_on = dt.date.fromisoformat(champion.tags[TAG_RUN_DATE])
    except (KeyError, ValueError) as exc:
        raise JobFailed(
            f"{fc.model_name} v{champion.version} lacks its forecast_models tags: {exc}"
        ) from exc
    if trained_on > ctx.run_date:
        raise JobFailed(
            f"champion v{champion.version} was trained as of {trained_on}, after run date {ctx.run_date}"
        )
    stored = ctx.tables.read(MODELS, version=models_version, where={"run_date": trained_on})
    wanted = ["champion", "model_json", "baseline_json", "model_sha256", "baseline_sha256",
              "history_max"]  # fmt: skip
    missing = [c for c in wanted if c not in stored.columns]
    if missing:  # a table written before content hashes: every group would fail the check
        raise JobFailed(
            f"forecast_models v{models_version} has no {', '.join(missing)} columns (trained "
            f"before model content hashes): retrain with train_forecasts, then rerun"
        )
    models = stored.filter("model_json is not null").select(*keys, *wanted)
    groups = models.count()
    if not groups:
        raise JobFailed(f"forecast_models v{models_version} has no usable models for {trained_on}")
    # Groups trained without a usable model get a 'skipped' status row, not a silent gap.
    untrained = (
        stored.filter("model_json is null").select(*keys, "status", "status_reason").collect()
    )
    calendar, defaulted = future_calendar(ctx, models)
    partitions = group_partitions(default_parallelism(ctx.spark), fc, groups)
    features = featurizer(
        ctx, ctx.run_date, ctx.run_date + dt.timedelta(days=fc.horizon_days)
    )
    results = forecast_groups(models, calendar, fc, partitions, features).persist()
    try:
        # The forecasting stage runs when _outputs first reads the results.
        with StageReporter(ctx.spark, "forecasting", groups, "groups"):
            _outputs(ctx, summary, results, untrained, champion, trained_on, groups, defaulted)
    except BaseException:
        results.unpersist()
        raise
    summary.cached.append(results)  # released once the runner has published the outputs
    return summary


def _outputs(
    ctx: JobContext,
    summary: JobSummary,
    results: DataFrame,
    untrained: list,
    champion,
    trained_on: dt.date,
    groups: int,
    defaulted: int,
) -> JobSummary:
    """Status rows for every group, the failure budget, then forecasts and forecast_status."""
    import pandas as pd
    from pyspark.sql import functions as F

    from mlcore.forecasting.distributed import split_forecast_results
    from mlcore.io.frames import local_frame

    fc = ctx.config.forecasting
    keys = list(fc.group_keys)
    forecast_rows, status_rows = split_forecast_results(results, keys)
    statuses: Any = status_rows.toPandas()
    skipped = pd.DataFrame(
        [
            {
                **{k: row[k] for k in keys},
                "status": "skipped",
                "status_reason": f"no model: training status {row['status']}"
                + (f" ({row['status_reason']})" if row["status_reason"] else ""),
                "model_type": None,
                "forecast_rows": 0,
            }
            for row in untrained
        ],
        columns=statuses.columns,
    )
    statuses = pd.concat([statuses, skipped], ignore_index=True) if len(skipped) else statuses
    statuses = statuses.sort_values(keys, kind="mergesort").reset_index(drop=True)
    counts = statuses["status"].value_counts().to_dict()
    failed = int(counts.get("failed", 0))
    rows = int(statuses["forecast_rows"].sum())
    summary.add("model", f"{fc.model_name} v{champion.version} (trained as of {trained_on})")
    summary.use_model(fc.model_name, champion.version, "used", champion.run_id)
    summary.add("groups with models", groups, metric="groups")
    summary.add("groups forecast", int((statuses["forecast_rows"] > 0).sum()), metric="groups_forecast")
    for status in ("ok", "fallback", "skipped", "failed"):
        summary.add(f"status {status}", int(counts.get(status, 0)), metric=f"groups_{status}")
    summary.add("forecast rows", rows, metric="forecast_rows")
    summary.add(
        "horizon", f"{ctx.run_date} .. {ctx.run_date + dt.timedelta(days=fc.horizon_days - 1)}"
    )
    summary.add("calendar rows defaulted", defaulted, metric="calendar_rows_defaulted")
    problems = statuses[statuses["status"] != "ok"]
    ctx.artifacts["forecast_failures.csv"] = problems.to_csv(index=False)
    not_forecast = statuses[statuses["forecast_rows"] == 0]
    if len(not_forecast):
        summary.add("not forecast", _named_groups(not_forecast, keys))
    if len(problems) > len(not_forecast):
        fallbacks = problems[problems["forecast_rows"] > 0]
        summary.add("forecast by the fallback", _named_groups(fallbacks, keys))
    if groups and failed / groups > fc.failure_budget:
        raise JobFailed(
            f"{failed} of {groups} groups could not be forecast ({failed / groups:.1%} > failure "
            f"budget {fc.failure_budget:.1%}): {_named_groups(not_forecast, keys)}; nothing "
            "published. See forecast_failures.csv in the MLflow run"
        )
    stamped = {
        "model_name": F.lit(fc.model_name),
        "model_version": F.lit(int(champion.version)).cast("int"),  # as the score tables
        "trained_run_date": F.lit(trained_on),
    }
    forecasts = ctx.stamp(forecast_rows.withColumns(stamped)).withColumn(
        "created_at", F.current_timestamp()
    )
    status_frame = ctx.stamp(
        local_frame(ctx.spark, statuses.to_dict("records"), status_rows.schema).withColumns(stamped)
    )
    summary.outputs.update({FORECASTS: TableOutput(forecasts), STATUS: TableOutput(status_frame)})
    return summary


def _named_groups(frame, keys: list[str], limit: int = 10) -> str:
    """``3 groups: store 17 (reason), ...`` for the summary line and the budget error."""
    named = []
    for row in frame.head(limit).to_dict("records"):
        key = ", ".join(f"{k} {row[k]}" for k in keys)
        reason = str(row.get("status_reason") or row["status"])[:160]
        named.append(f"{key} ({reason})")
    more = f", ... {len(frame) - limit} more" if len(frame) > limit else ""
    return f"{len(frame)} group(s): " + "; ".join(named) + more
