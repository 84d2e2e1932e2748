"""monitor_drift: compare current data with the reference each model was trained on -> drift_metrics.

Monitors (``drift.monitors``):
- ``bank_features``: the classifier champion's features, bank table at the version it was trained
  on (recorded with the model) vs the table now. PSI + KS for numerics, PSI + chi-square for
  categoricals.
- ``bank_scores``: prediction drift: the champion's first scoring partition vs this run date's.
- ``ride_features``: the anomaly champion's reference days vs the run's batch days.
- ``sales_per_store``: sales on open days, the last ``sales_window_days`` before the run date vs
  the window before, overall and per store.
- ``forecast_accuracy``: realised WAPE of every past forecast run per store, as actuals arrive.

All metrics are Spark aggregations (the driver only sees counts); thresholds turn them into
``drifted`` flags. One row per (monitor, feature, group, metric) in partition ``run_date``, plus an
HTML report and the table as CSV in the MLflow run. A monitor whose inputs do not exist yet (no
champion, no table) is reported as skipped, not as an error.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlcore.drift.compare import Comparison, Distribution, compare
from mlcore.drift.report import history_columns, report_html
from mlcore.forecasting.metrics import scored_wape
from mlcore.job_catalog import declared_tables
from mlcore.pipelines._progress import StageReporter
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary, TableOutput

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

OUTPUT = "drift_metrics"
SCHEMA = (
    "monitor string, source_table string, feature string, group_key string, metric string, value double, "
    "threshold double, drifted boolean, n_reference long, n_current long, reference_window string, "
    "current_window string"
)


class Skip(Exception):  # noqa: N818 - a monitor's inputs are missing: reported, not an error
    """This monitor has nothing to compare yet."""


def _champion_info(ctx: JobContext, model_name: str) -> tuple[str, dict[str, Any]]:
    from mlcore.pipelines._models import load_champion

    champion, note = load_champion(ctx, model_name)
    if champion is None:
        raise Skip(note or f"no champion for {model_name}")
    return champion.version, champion.info


def bank_features(ctx: JobContext) -> list[Comparison]:
    from mlcore.classification.features import FeatureSpec

    cc = ctx.config.classification
    version, info = _champion_info(ctx, cc.model_name)
    spec = FeatureSpec.from_dict(info["features"])
    table, trained_on = info.get("input_table", cc.input_table), info.get("input_version")
    if trained_on is None:
        raise Skip(f"{cc.model_name} v{version} records no input table version")
    reference = ctx.tables.read(table, version=int(trained_on))
    current = ctx.tables.read(table)
    return [Comparison(
        "bank_features", table, reference, current,
        f"{table}@v{trained_on} (trained {cc.model_name} v{version})", f"{table}@v{ctx.tables.read_versions[table]}",
        numeric=list(spec.numeric), categorical=list(spec.categorical),
    )]  # fmt: skip


def bank_scores(ctx: JobContext) -> list[Comparison]:
    from pyspark.sql import functions as F

    cc = ctx.config.classification
    version, _ = _champion_info(ctx, cc.model_name)
    if not ctx.tables.exists(cc.output_table):
        raise Skip(f"{cc.output_table} does not exist yet")
    scores = ctx.tables.read(cc.output_table).filter(F.col("model_version") == int(version))
    dates = [
        r[0]
        for r in scores.filter(F.col("run_date") <= F.lit(ctx.run_date))
        .select("run_date")
        .distinct()
        .orderBy("run_date")
        .collect()
    ]
    if len(dates) < 2:
        raise Skip(
            f"{cc.output_table} has {len(dates)} scoring run(s) of v{version} up to {ctx.run_date}: need two"
        )
    first, last = dates[0], dates[-1]
    return [Comparison(
        "bank_scores", cc.output_table,
        scores.filter(F.col("run_date") == F.lit(first)), scores.filter(F.col("run_date") == F.lit(last)),
        f"{cc.model_name} v{version} scores of {first}", f"scores of {last}", numeric=["probability"],
    )]  # fmt: skip


def ride_features(ctx: JobContext) -> list[Comparison]:
    from mlcore.pipelines._rides import days_before, read_rides, split_usable

    ac = ctx.config.anomaly
    version, info = _champion_info(ctx, ac.model_name)
    names = [str(n) for n in info["features"]]
    start, end = (dt.date.fromisoformat(d) for d in info["reference_days"])
    reference_days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    current_days = days_before(ctx.run_date, ac.batch_days)
    try:
        reference, _ = split_usable(ctx, read_rides(ctx, reference_days), names)
        current, _ = split_usable(ctx, read_rides(ctx, current_days), names)
    except JobFailed as exc:  # e.g. no rides yet for the run's days
        raise Skip(str(exc)) from None
    return [Comparison(
        "ride_features", ac.input_table, reference, current,
        f"{start} .. {end} ({ac.model_name} v{version} reference)", f"{current_days[0]} .. {current_days[-1]}",
        numeric=names,
    )]  # fmt: skip


def sales_per_store(ctx: JobContext) -> list[Comparison]:
    from pyspark.sql import functions as F

    fc, window = ctx.config.forecasting, ctx.config.drift.sales_window_days
    if not ctx.tables.exists("sales"):
        raise Skip("sales does not exist yet")
    sales = ctx.tables.read("sales").filter(F.col(fc.target_column) > 0)
    if fc.open_column:
        sales = sales.filter(F.col(fc.open_column) == 1)
    cur_start = ctx.run_date - dt.timedelta(days=window)
    ref_start = cur_start - dt.timedelta(days=window)
    date = F.col(fc.date_column)
    reference = sales.filter((date >= F.lit(ref_start)) & (date < F.lit(cur_start)))
    current = sales.filter((date >= F.lit(cur_start)) & (date < F.lit(ctx.run_date)))
    windows = (
        f"{ref_start} .. {cur_start - dt.timedelta(days=1)}",
        f"{cur_start} .. {ctx.run_date - dt.timedelta(days=1)}",
    )
    return [
        Comparison("sales_per_store", "sales", reference, current, *windows, numeric=[fc.target_column]),
        Comparison(
            "sales_per_store", "sales", reference, current, *windows,
            numeric=[fc.target_column], group_keys=list(fc.group_keys),
        ),
    ]  # fmt: skip


def forecast_accuracy(ctx: JobContext) -> list[dict[str, Any]]:
    """Realised WAPE per store of every past forecast run whose days have actuals by now, under
    the backtest's evaluation rule (days with sales > 0; ``forecasting.metrics.scored_wape``)."""
    from pyspark.sql import functions as F

    fc, cfg = ctx.config.forecasting, ctx.config.drift
    if not (ctx.tables.exists("forecasts") and ctx.tables.exists("sales")):
        raise Skip("forecasts or sales do not exist yet")
    keys = list(fc.group_keys)
    forecasts = (
        ctx.tables.read("forecasts")
        .filter(F.col("run_date") < F.lit(ctx.run_date))
        .select(*keys, F.col("ds").alias("_day"), "yhat", F.col("run_date").alias("forecast_run"))
    )
    actuals = ctx.tables.read("sales").filter(F.col(fc.date_column) < F.lit(ctx.run_date))
    if fc.open_column:
        actuals = actuals.filter(F.col(fc.open_column) == 1)
    actuals = actuals.select(
        *keys, F.col(fc.date_column).alias("_day"), F.col(fc.target_column).alias("_y")
    )
    joined = forecasts.join(actuals, [*keys, "_day"])
    per_group = joined.groupBy(*keys, "forecast_run").agg(
        scored_wape("_y", "yhat").alias("wape"),
        F.count("*").alias("days"),
        F.min("_day").alias("first"),
        F.max("_day").alias("last"),
    )
    rows = []
    for row in per_group.orderBy("forecast_run", *keys).collect():
        if row["wape"] is None:
            continue
        rows.append(
            {
                "monitor": "forecast_accuracy", "source_table": "forecasts", "feature": fc.target_column,
                "group_key": "|".join(str(row[k]) for k in keys), "metric": "realised_wape",
                "value": float(row["wape"]), "threshold": cfg.forecast_wape_threshold,
                "drifted": float(row["wape"]) > cfg.forecast_wape_threshold, "n_reference": int(row["days"]),
                "n_current": int(row["days"]), "reference_window": f"forecast run {row['forecast_run']}",
                "current_window": f"actuals {row['first']} .. {row['last']}",
            }
        )  # fmt: skip
    if not rows:
        raise Skip("no past forecast has actuals yet")
    return rows


# The tables each monitor reads (config keys or names): in the nightly chain, a monitor whose
# table an earlier step failed to write tonight is skipped with that reason.
MONITOR_INPUTS: dict[str, tuple[str, ...]] = {
    "bank_features": ("classification.input_table",),
    "bank_scores": ("classification.output_table",),
    "ride_features": ("anomaly.input_table",),
    "sales_per_store": ("sales",),
    "forecast_accuracy": ("forecasts", "sales"),
}

MONITORS: dict[str, Callable[[JobContext], list[Any]]] = {
    "bank_features": bank_features,
    "bank_scores": bank_scores,
    "ride_features": ride_features,
    "sales_per_store": sales_per_store,
    "forecast_accuracy": forecast_accuracy,
}


def earlier_flags(ctx: JobContext, frame: Any, runs: int = 30) -> Any:
    """Earlier runs' rows of the metrics drifted now (the last ``runs`` run dates before this
    one), for the report's "drifted since"; None before any earlier run."""
    from pyspark.sql import functions as F

    drifted = frame[frame["drifted"]] if len(frame) else frame
    if not len(drifted) or not ctx.tables.exists(OUTPUT):
        return None
    earlier = ctx.tables.read(OUTPUT, record_input=False).filter(F.col("run_date") < F.lit(ctx.run_date))
    dates = [r[0] for r in earlier.select("run_date").distinct().orderBy(F.desc("run_date")).limit(runs).collect()]
    if not dates:
        return None
    monitors = sorted(set(drifted["monitor"]))
    return (
        earlier.filter(F.col("run_date").isin(dates) & F.col("monitor").isin(monitors))
        .select(*history_columns())
        .toPandas()
    )


def drifted_store_sales(ctx: JobContext, frame: Any, stores: int = 4) -> Any:
    """Daily sales of the ``stores`` most drifted stores (highest per-store PSI of
    sales_per_store) over the reference and current windows, for the report; None when no store
    drifted."""
    from pyspark.sql import functions as F

    fc, window = ctx.config.forecasting, ctx.config.drift.sales_window_days
    if not len(frame):
        return None
    per_store = frame[
        (frame["monitor"] == "sales_per_store") & frame["drifted"] & frame["group_key"].notna()
        & (frame["metric"] == "psi")
    ].sort_values("value", ascending=False)  # fmt: skip
    top = list(dict.fromkeys(per_store["group_key"]))[:stores]
    if not top or not ctx.tables.exists("sales"):
        return None
    keys = list(fc.group_keys)
    cur_start = ctx.run_date - dt.timedelta(days=window)
    ref_start = cur_start - dt.timedelta(days=window)
    day = F.col(fc.date_column)
    key_text = F.concat_ws("|", *[F.col(k).cast("string") for k in keys])
    rows: Any = (
        ctx.tables.read("sales", record_input=False)
        .filter((day >= F.lit(ref_start)) & (day < F.lit(ctx.run_date)) & key_text.isin(top))
        .filter(F.col(fc.target_column) > 0)  # open days, as the monitor compares them
        .select(
            key_text.alias("group_key"), day.alias("ds"), F.col(fc.target_column).cast("double").alias("y"),
            F.when(day < F.lit(cur_start), "reference").otherwise("current").alias("window"),
        )
        .toPandas()
    )  # fmt: skip
    rank = {group: position for position, group in enumerate(top)}  # most drifted first
    return rows.assign(_rank=rows["group_key"].map(rank)).sort_values(["_rank", "ds"]).drop(columns="_rank")


def drift_flags(ctx: JobContext, monitors: list[str]) -> DataFrame | None:
    """The rows ``monitors`` flagged as drifted for this run date (None before any drift run);
    what the nightly chain's retrain policy reads."""
    from pyspark.sql import functions as F

    if not ctx.tables.exists(OUTPUT):
        return None
    return ctx.tables.read(OUTPUT, where={"run_date": ctx.run_date}).where(
        F.col("drifted") & F.col("monitor").isin(monitors)
    )


def _run_monitor(
    ctx: JobContext,
    name: str,
    summary: JobSummary,
    rows: list[dict[str, Any]],
    distributions: list[Distribution],
    skipped: dict[str, str],
) -> None:
    """One monitor: its metric rows and distributions appended, or the reason it was skipped."""
    held = [t for t in declared_tables(MONITOR_INPUTS[name], ctx.config) if t in ctx.blocked]
    if held:
        skipped[name] = f"{held[0]} was not written tonight ({ctx.blocked[held[0]]})"
        summary.add(f"{name}", f"skipped: {skipped[name]}")
        return
    try:
        found: list[dict[str, Any]] = []
        small = 0
        for item in MONITORS[name](ctx):  # comparisons to compute, or finished metric rows
            if isinstance(item, Comparison):
                compared = compare(item, ctx.config.drift)
                found.extend(compared.rows)
                small += compared.too_small
                distributions.extend(compared.distributions)
            else:
                found.append(item)
    except Skip as reason:
        skipped[name] = str(reason)
        summary.add(f"{name}", f"skipped: {reason}")
        return
    rows.extend(found)
    drifted = sum(r["drifted"] for r in found)
    groups = {r["group_key"] for r in found if r["group_key"] is not None}
    detail = f"{drifted} of {len(found)} metrics drifted" + (
        f" over {len(groups)} groups" if groups else ""
    )
    summary.add(name, detail + (f"; {small} groups too small to compare" if small else ""))
    summary.metrics[f"{name}_metrics"] = float(len(found))
    summary.metrics[f"{name}_drifted"] = float(drifted)
    psis = [r["value"] for r in found if r["metric"] == "psi"]
    if psis:
        summary.metrics[f"{name}_max_psi"] = max(psis)


def run(ctx: JobContext) -> JobSummary:
    import pandas as pd

    summary = JobSummary()
    token = ctx.token(OUTPUT)
    if not ctx.dry_run and ctx.tables.already_written(OUTPUT, token):
        summary.add("status", "already monitored for this run date: nothing to do")
        return summary
    rows: list[dict[str, Any]] = []
    distributions: list[Distribution] = []
    skipped: dict[str, str] = {}
    monitors = list(dict.fromkeys(ctx.config.drift.monitors))
    with StageReporter(None, "drift monitors", len(monitors), "monitors") as progress:
        for done, name in enumerate(monitors):
            progress.reached(done)
            _run_monitor(ctx, name, summary, rows, distributions, skipped)
    frame = pd.DataFrame(rows, columns=[c.split(" ")[0] for c in SCHEMA.split(", ")])
    summary.add("metric rows", len(frame), metric="metric_rows")
    summary.add("drifted", int(frame["drifted"].sum()) if len(frame) else 0, metric="drifted")
    ctx.artifacts["drift/drift_metrics.csv"] = frame.to_csv(index=False)
    ctx.artifacts["drift/drift_report.html"] = report_html(
        frame, skipped, ctx.config.drift, ctx.run_date, distributions,
        earlier_flags(ctx, frame), drifted_store_sales(ctx, frame),
    )  # fmt: skip
    summary.outputs[OUTPUT] = TableOutput(ctx.spark.createDataFrame(frame if len(frame) else [], SCHEMA))
    return summary
