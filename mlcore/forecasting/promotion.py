"""The forecasting promotion gate's comparison: challenger vs champion on the same groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlcore.forecasting.metrics import compute_metrics

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class GateComparison:
    """Challenger and champion measured on the groups both backtested (the same rule, the same
    groups): what the promotion gate compares. ``groups`` 0: nothing in common."""

    challenger_value: float
    champion_value: float | None
    groups: int


def compare_on_common_groups(
    challenger: pd.DataFrame, champion: pd.DataFrame | None, keys: list[str], metric: str
) -> GateComparison | None:
    """``metric`` of both sides' champion backtest points over the groups present in both (the
    evaluation rule of ``compute_metrics``): a 1,115-store challenger is judged against a
    100-store champion on those 100 stores, not on different store sets."""
    if champion is None:  # no champion, or one without backtest rows: its stored metric is used
        return None
    common = challenger[keys].drop_duplicates().merge(champion[keys].drop_duplicates(), on=keys)
    mine = challenger.merge(common, on=keys)
    theirs = champion.merge(common, on=keys)
    return GateComparison(
        compute_metrics(mine["y"], mine["yhat"])[metric],
        compute_metrics(theirs["y"], theirs["yhat"])[metric] if len(common) else None,
        len(common),
    )
