"""The forecast report of a training run: one self-contained HTML page a planner or an ML engineer
reads in a minute (images inline, no network), logged to MLflow as ``reports/forecast_report.html``.

What it answers, in order: how accurate is this run overall and per store (distribution, worst
stores), which models won, what failed and why, and what a few stores' forecasts look like
against what happened (the first backtest window: actuals, each model, the champion's interval).
"""

from __future__ import annotations

import datetime as dt
import html
import math
from typing import TYPE_CHECKING

from mlcore.figures import png_data_uri
from mlcore.forecasting.plots import draw_backtests, group_label

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px;color:#222}"
    "h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}"
    ".kpis{display:flex;gap:14px;flex-wrap:wrap}.kpi{border:1px solid #ddd;border-radius:6px;"
    "padding:8px 14px}.kpi b{display:block;font-size:20px}table{border-collapse:collapse;"
    "font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}"
    "th{background:#f4f4f4}td.num{text-align:right}.note{color:#666;font-size:13px}"
)



def _table(frame: pd.DataFrame, numeric: tuple[str, ...] = ()) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            if column in numeric and isinstance(value, float):
                cells.append(f"<td class='num'>{'' if math.isnan(value) else f'{value:.4f}'}</td>")
            else:
                cells.append(f"<td>{html.escape('' if value is None else str(value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _accuracy_histogram(values: pd.Series, metric: str) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3), layout="constrained")
    ax = fig.subplots()
    ax.hist(values.clip(upper=values.quantile(0.99)), bins=40, color="#4c72b0")
    ax.axvline(values.median(), color="k", linestyle="--", linewidth=1, label=f"median {values.median():.3f}")
    ax.set_xlabel(f"champion {metric.upper()} per store (first backtest window)")
    ax.set_ylabel("stores")
    ax.legend(frameon=False)
    return fig


def forecast_report_html(
    groups: pd.DataFrame,
    points: pd.DataFrame,
    keys: list[str],
    aggregates: dict[str, float],
    run_date: dt.date,
    model_name: str,
    target: str = "sales",
    example_groups: int = 4,
) -> str:
    """The report page. ``groups``: one row per group of this run (keys, status, champion,
    action, champion_wape/_rmspe, status_reason); ``points``: the backtest points (keys, model,
    champion, backtest_window, ds, y, yhat, yhat_lower, yhat_upper); ``aggregates``: the run's pooled
    metrics (``results.aggregate_metrics``)."""
    trained = groups[groups["action"] == "trained"]
    statuses = groups["status"].value_counts()
    kpis = [("groups", f"{len(groups):,}"), ("trained", f"{len(trained):,}")]
    for metric in ("wape", "rmspe"):
        value = aggregates.get(f"pooled_{metric}_champion")
        if value is not None:
            kpis.append((f"pooled {metric.upper()} (champions)", f"{value:.4f}"))
    for status in ("ok", "fallback", "skipped", "failed"):
        kpis.append((status, f"{int(statuses.get(status, 0)):,}"))
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Forecast report {run_date}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Forecast report: {html.escape(model_name)}, run date {run_date}</h1>",
        "<p class='note'>Accuracy is measured on the backtest: each model is fitted on the days "
        "before a held-out window and scored on it (days with sales &gt; 0). Pooled metrics sum "
        "errors over every store's points; per-store metrics use the first window.</p>",
        "<div class='kpis'>",
        *(f"<div class='kpi'>{html.escape(label)}<b>{value}</b></div>" for label, value in kpis),
        "</div>",
    ]

    parts.append("<h2>Champion mix</h2>")
    mix = trained["champion"].fillna("none").value_counts()
    if len(mix):
        frame = mix.rename_axis("champion").reset_index(name="stores")
        frame["share"] = (frame["stores"] / frame["stores"].sum()).map(lambda v: f"{v:.1%}")
        pooled = []
        for model in frame["champion"]:
            value = aggregates.get(f"pooled_wape_{model}")
            pooled.append(f"{value:.4f}" if value is not None else "")
        frame["pooled WAPE of the model over all stores"] = pooled
        parts.append(_table(frame))
    else:
        parts.append("<p>No group was trained in this run (every model was kept).</p>")

    parts.append("<h2>Accuracy by store</h2>")
    scored = trained.dropna(subset=["champion_wape"])
    if len(scored):
        values = scored["champion_wape"].astype(float)
        parts.append(f"<img alt='WAPE distribution' src='{png_data_uri(_accuracy_histogram(values, 'wape'))}'>")
        quantiles = values.quantile([0.1, 0.5, 0.9]).to_dict()
        parts.append(
            f"<p>Champion WAPE per store: p10 {quantiles[0.1]:.3f}, median {quantiles[0.5]:.3f}, "
            f"p90 {quantiles[0.9]:.3f} over {len(values):,} stores.</p>"
        )
        worst = scored.sort_values("champion_wape", ascending=False).head(10)
        columns = [*keys, "champion", "champion_wape", "champion_rmspe", "status_reason"]
        parts.append("<p><b>Worst stores</b> (highest WAPE):</p>")
        parts.append(_table(worst[columns], numeric=("champion_wape", "champion_rmspe")))
    else:
        parts.append("<p>No store has a scored backtest window in this run.</p>")

    parts.append("<h2>Failures, fallbacks and skipped groups</h2>")
    problems = groups[groups["status"].isin(["failed", "fallback", "skipped"])]
    if len(problems):
        reasons = (
            problems.assign(reason=problems["status_reason"].fillna("").str.split(":").str[0])
            .groupby(["status", "reason"]).size().reset_index(name="groups")
            .sort_values("groups", ascending=False).head(15)
        )  # fmt: skip
        parts.append(_table(reasons))
        parts.append("<p class='note'>Every group's reason is in failures.csv in this MLflow run.</p>")
    else:
        parts.append("<p>None: every group trained with its selected model.</p>")

    parts.append("<h2>Forecasts against what happened</h2>")
    examples = drawn_examples(scored, keys, example_groups)
    fig = draw_backtests(examples, points, keys, target) if len(examples) else None
    if fig is not None:
        named = ", ".join(
            f"{group_label(keys, tuple(row))} ({why})"
            for row, why in zip(examples[keys].itertuples(index=False), examples["why"], strict=True)
        )
        parts.append(f"<p>First backtest window of {html.escape(named)}.</p>")
        parts.append(f"<img alt='backtest forecasts' src='{png_data_uri(fig)}'>")
    else:
        parts.append("<p>No backtest points to show.</p>")
    parts.append("</body></html>")
    return "".join(parts)


def drawn_examples(scored: pd.DataFrame, keys: list[str], count: int) -> pd.DataFrame:
    """The best, the median and the worst stores by WAPE (``count`` in all), labelled: the
    groups the report draws (train_forecasts collects their points alone)."""
    if count <= 0 or scored.empty:
        return scored.head(0).assign(why=[])
    ranked = scored.sort_values("champion_wape").reset_index(drop=True)
    positions: dict[int, str] = {0: "best"}
    positions.setdefault(len(ranked) // 2, "median")
    positions.setdefault(len(ranked) - 1, "worst")
    if count > 3:
        positions.setdefault(len(ranked) * 9 // 10, "p90")
    chosen = sorted(positions.items())[:count]
    frame = ranked.iloc[[i for i, _ in chosen]][keys].copy()
    frame["why"] = [why for _, why in chosen]
    return frame.reset_index(drop=True)

