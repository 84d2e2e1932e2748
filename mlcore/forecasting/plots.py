"""Pictures of a training run (files, logged to MLflow by the pipeline)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def backtest_plot(
    groups: pd.DataFrame, points: pd.DataFrame, keys: list[str], plot_groups: int
) -> str | None:
    """PNG of backtest forecasts vs actuals for the first ``plot_groups`` trained groups (in key
    order), each model's line and the champion's interval; None when there is nothing to draw."""
    from matplotlib.figure import Figure  # no pyplot: safe to render off the main thread

    n = plot_groups
    if n <= 0:
        return None
    chosen = groups[groups["status"].isin(["ok", "fallback"])].sort_values(keys).head(n)[keys]
    frame = points[points["window"] == 0].merge(chosen, on=keys)
    if frame.empty:
        return None
    groups = list(frame.groupby(keys))
    fig = Figure(figsize=(10, 3 * len(groups)))
    axes = fig.subplots(len(groups), 1, squeeze=False)
    for ax, (key, part) in zip(axes[:, 0], groups, strict=True):
        actual = part.drop_duplicates("ds").sort_values("ds")
        ax.plot(actual["ds"], actual["y"], "k.-", label="actual", linewidth=1)
        for model, series in part.groupby("model"):
            series = series.sort_values("ds")
            ax.plot(series["ds"], series["yhat"], label=model, linewidth=1.2)
            if model == part["champion"].iloc[0]:
                ax.fill_between(series["ds"], series["yhat_lower"], series["yhat_upper"], alpha=0.2)
        ax.set_title(
            f"{dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))} — champion: {part['champion'].iloc[0]}"
        )
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(tempfile.mkdtemp(prefix="mlcore_plot_")) / "backtest_forecasts.png"
    fig.savefig(path, dpi=90)
    return str(path)
