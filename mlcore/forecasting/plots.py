"""Pictures of a training run (files, logged to MLflow by the pipeline)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def group_label(keys: list[str], key: object) -> str:
    """``store 1`` (``store 1, item 7`` for composite keys): how a group is named on a chart."""
    values = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{k} {v}" for k, v in zip(keys, values, strict=True))


def draw_backtests(
    groups: pd.DataFrame, points: pd.DataFrame, keys: list[str], target: str = "sales"
) -> Figure | None:
    """One panel per group of ``groups`` (keys only, in order): the first backtest window's
    actuals, each model's forecast and the champion's interval; None when nothing to draw."""
    from matplotlib.figure import Figure  # no pyplot: safe to render off the main thread

    frame = points[points["backtest_window"] == 0].merge(groups[keys], on=keys)
    if frame.empty:
        return None
    order = [tuple(row) for row in groups[keys].itertuples(index=False)]
    panels = {k if isinstance(k, tuple) else (k,): part for k, part in frame.groupby(keys)}
    chosen = [(k, panels[k]) for k in order if k in panels]
    fig = Figure(figsize=(11, 2.8 * len(chosen)), layout="constrained")
    axes = fig.subplots(len(chosen), 1, squeeze=False)
    for ax, (key, part) in zip(axes[:, 0], chosen, strict=True):
        champion = part["champion"].iloc[0]
        actual = part.drop_duplicates("ds").sort_values("ds")
        ax.plot(actual["ds"], actual["y"], "k.-", label="actual", linewidth=1)
        for model, series in part.groupby("model"):
            series = series.sort_values("ds")
            style = {"linewidth": 1.8} if model == champion else {"linewidth": 1, "alpha": 0.7}
            ax.plot(series["ds"], series["yhat"], label=str(model), **style)
            if model == champion:
                ax.fill_between(
                    series["ds"], series["yhat_lower"], series["yhat_upper"], alpha=0.2,
                    label=f"{model} interval",
                )  # fmt: skip
        ax.set_title(f"{group_label(keys, key)}: champion {champion}", loc="left", fontsize=10)
        ax.set_ylabel(target)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return fig


def backtest_plot(
    groups: pd.DataFrame,
    points: pd.DataFrame,
    keys: list[str],
    plot_groups: int,
    target: str = "sales",
) -> str | None:
    """PNG of backtest forecasts vs actuals for the first ``plot_groups`` trained groups (in key
    order), each model's line and the champion's interval; None when there is nothing to draw."""
    if plot_groups <= 0:
        return None
    chosen = groups[groups["status"].isin(["ok", "fallback"])].sort_values(keys).head(plot_groups)
    fig = draw_backtests(chosen, points, keys, target)
    if fig is None:
        return None
    path = Path(tempfile.mkdtemp(prefix="mlcore_plot_")) / "backtest_forecasts.png"
    fig.savefig(path, dpi=90)
    return str(path)
