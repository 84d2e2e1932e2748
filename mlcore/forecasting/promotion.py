"""The forecasting promotion gate's comparison: challenger vs champion on the same groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlcore.forecasting.results import metric_sums, metrics_from_sums

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class GateComparison:
    """Challenger and champion measured on the groups both backtested (the same rule, the same
    groups): what the promotion gate compares. ``groups`` 0: nothing in common."""

    challenger_value: float
    champion_value: float | None
    groups: int


def compare_on_common_groups(
    challenger: DataFrame, champion: DataFrame | None, keys: list[str], metric: str
) -> GateComparison | None:
    """``metric`` of both sides' champion backtest points (keys, y, yhat) over the groups
    present in both (the evaluation rule of ``compute_metrics``): a 1,115-store challenger is
    judged against a 100-store champion on those 100 stores, not on different store sets.
    Spark aggregates: nothing per point reaches the driver."""
    from pyspark.sql import functions as F

    if champion is None:  # no champion, or one without backtest rows: its stored metric is used
        return None
    common = challenger.select(*keys).distinct().join(champion.select(*keys).distinct(), keys)
    common = common.persist()
    try:
        groups = common.count()
        if not groups:  # nothing in common: nothing measured on either side
            return GateComparison(float("nan"), None, 0)
        sides = (
            challenger.join(common, keys).withColumn("_side", F.lit("challenger"))
            .unionByName(champion.join(common, keys).withColumn("_side", F.lit("champion")))
            .groupBy("_side").agg(*metric_sums())
        )  # fmt: skip
        values = {row["_side"]: metrics_from_sums(row.asDict())[metric] for row in sides.collect()}
    finally:
        common.unpersist()
    return GateComparison(values.get("challenger", float("nan")), values.get("champion", float("nan")), groups)
