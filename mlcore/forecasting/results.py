"""The per-group training results as the driver sees them: group summaries, Spark aggregates.

``train_groups`` returns one row per group with nested metric and backtest-point arrays. The
driver collects one small summary row per group; the arrays stay in Spark (exploded there,
aggregated there, written by the executors), so the driver's memory grows with the groups'
summaries only, never with their points. Pure functions of a results DataFrame or of pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd
    from pyspark.sql import Column, DataFrame

NESTED = ("metrics", "backtest_points")  # the per-group array columns


_GROUP_COLUMNS = (
    "status", "champion", "action", "trained_run_date", "train_rows", "fit_seconds",
    "backtest_seconds", "status_reason", "error_class", "error_message",
)


@dataclass(frozen=True)
class CollectedResults:
    """What the driver needs of the per-group results: one small row per group, collected, and
    the nested arrays exploded **in Spark** (never on the driver).

    ``groups``: one row per group (keys, status, champion, action, timings, reasons, the
    champion's window-0 WAPE/RMSPE): a summary, ~200 bytes a group. ``metrics`` / ``points``:
    the nested metric and backtest-point arrays exploded to one row each with the group's keys,
    champion and action (Spark DataFrames over the persisted results; ~300 points per trained
    group, 9 million at 30,000 series). Pooled metrics and the gate's comparison are Spark
    aggregates of them, the plots collect the few groups they draw, and ``forecast_metrics`` /
    ``forecast_backtest`` are written from them by the executors: the driver's memory does not
    grow with the points.
    """

    groups: pd.DataFrame
    metrics: DataFrame
    points: DataFrame


def collect_results(results: DataFrame, keys: list[str]) -> CollectedResults:
    """One collect of the group summaries of the persisted results (no model JSON, no nested
    arrays); the arrays as exploded Spark frames (see :class:`CollectedResults`)."""
    from pyspark.sql import functions as F

    def champion_metric(name: str) -> Any:
        chosen = F.filter(
            "metrics",
            lambda m: (m["backtest_window"] == 0) & (m["model"] == F.col("champion")) & (m["metric"] == name),
        )
        return F.when(F.size(chosen) > 0, chosen[0]["value"]).alias(f"champion_{name}")

    table = results.select(*keys, *_GROUP_COLUMNS, champion_metric("wape"), champion_metric("rmspe")).toArrow()
    carry = [*keys, "champion", "action"]

    def exploded(column: str) -> DataFrame:
        return results.select(*carry, F.explode(column).alias("_item")).select(*carry, "_item.*")

    return CollectedResults(
        groups=table.to_pandas(), metrics=exploded("metrics"), points=exploded("backtest_points")
    )


# Sufficient statistics of every metric of ``compute_metrics`` over the scored points (finite
# y > 0 with a finite forecast): sums a Spark aggregate can take over millions of points.
_SUMS = ("n", "abs_error", "squared_error", "abs_pct", "sym_pct", "actual", "squared_pct")


def metric_sums(y: str = "y", yhat: str = "yhat") -> list[Column]:
    """The Spark aggregates :func:`metrics_from_sums` turns into ``compute_metrics``' values."""
    from pyspark.sql import functions as F

    actual, forecast = F.col(y).cast("double"), F.col(yhat).cast("double")
    scored = actual.isNotNull() & ~F.isnan(actual) & forecast.isNotNull() & ~F.isnan(forecast)
    scored = scored & (actual > 0) & (F.abs(actual) < F.lit(float("inf"))) & (F.abs(forecast) < F.lit(float("inf")))
    error = F.abs(actual - forecast)
    terms = {
        "n": F.lit(1.0),
        "abs_error": error,
        "squared_error": error * error,
        "abs_pct": error / actual,
        "sym_pct": F.lit(2.0) * error / (actual + F.abs(forecast)),
        "actual": actual,
        "squared_pct": (error / actual) * (error / actual),
    }
    return [F.sum(F.when(scored, term).otherwise(F.lit(0.0))).alias(name) for name, term in terms.items()]


def metrics_from_sums(sums: Mapping[str, float | None]) -> dict[str, float]:
    """``compute_metrics``' values (no coverage) from :func:`metric_sums`; NaN when no point
    is scored."""
    nan = float("nan")
    n = float(sums.get("n") or 0.0)
    if n == 0:
        return {name: nan for name in ("mae", "rmse", "mape", "smape", "wape", "rmspe")}
    value = {name: float(sums.get(name) or 0.0) for name in _SUMS}
    return {
        "mae": value["abs_error"] / n,
        "rmse": math.sqrt(value["squared_error"] / n),
        "mape": value["abs_pct"] / n,
        "smape": value["sym_pct"] / n,
        "wape": value["abs_error"] / value["actual"] if value["actual"] else nan,
        "rmspe": math.sqrt(value["squared_pct"] / n),
    }


def pooled_metrics(points: DataFrame) -> dict[str, dict[str, float]]:
    """Every model's metrics pooled over ``points`` (keys, model, champion, y, yhat), and the
    champions' (``"champion"``: each group's champion model's points): two Spark aggregates."""
    from pyspark.sql import functions as F

    out = {
        str(row["model"]): metrics_from_sums(row.asDict())
        for row in points.groupBy("model").agg(*metric_sums()).collect()
    }
    champion = points.filter(F.col("model") == F.col("champion")).agg(*metric_sums()).first()
    if champion is not None:
        out["champion"] = metrics_from_sums(champion.asDict())
    return out


def aggregate_metrics(
    groups: pd.DataFrame, pooled: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Aggregates of the trained groups for MLflow and the summary: champions, per-group
    distributions of the champion's window-0 WAPE/RMSPE (``groups``: the trained groups'
    summaries), pooled accuracy per model (``pooled``: :func:`pooled_metrics` of their points).
    Status counts are not repeated here: ``run`` counts them once, for the failure budget.
    """
    out: dict[str, float] = {}
    for champion, count in groups["champion"].dropna().value_counts().items():
        out[f"champion_{champion}"] = float(count)
    out["compute_seconds"] = float(
        groups["fit_seconds"].fillna(0).sum() + groups["backtest_seconds"].fillna(0).sum()
    )
    for name in ("wape", "rmspe"):
        values = groups[f"champion_{name}"].dropna()
        if len(values):
            out[f"{name}_mean"] = float(values.mean())
            out[f"{name}_median"] = float(values.quantile(0.5))
            out[f"{name}_p90"] = float(values.quantile(0.9))
    # Pooled over every group's backtest points, by the same rule as the per-group metrics.
    for model, metrics in pooled.items():
        if math.isfinite(metrics["wape"]):  # a model with no scored point reports nothing
            out[f"pooled_wape_{model}"] = metrics["wape"]
            out[f"pooled_rmspe_{model}"] = metrics["rmspe"]
    return out
