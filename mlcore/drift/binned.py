"""Binned counts of a reference and a current window, per feature and optionally per group.

Numeric features: bin edges are the reference window's quantiles (per group when grouped),
computed with ``percentile_approx``; each row's bin is the number of edges at or below its value.
Categorical features: counts per category. Everything is a Spark aggregation; the driver only
receives counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

WINDOW = "_window"
GROUP = "_group"


def _with_group(df: DataFrame, group_keys: Sequence[str]) -> DataFrame:
    from pyspark.sql import functions as F

    if not group_keys:
        return df.withColumn(GROUP, F.lit(None).cast("string"))
    return df.withColumn(GROUP, F.concat_ws("|", *[F.col(f"`{k}`").cast("string") for k in group_keys]))


def numeric_counts(
    reference: DataFrame, current: DataFrame, feature: str, group_keys: Sequence[str], bins: int
) -> dict[str | None, tuple[list[float], list[float], int, int]]:
    """{group: (reference counts per bin, current counts per bin, n_reference, n_current)}."""
    from pyspark.sql import functions as F

    value = F.col(f"`{feature}`").cast("double")
    ref = _with_group(reference, group_keys).select(GROUP, value.alias("v")).filter(F.col("v").isNotNull() & ~F.isnan("v"))
    cur = _with_group(current, group_keys).select(GROUP, value.alias("v")).filter(F.col("v").isNotNull() & ~F.isnan("v"))
    probabilities = [i / bins for i in range(1, bins)]
    edges = ref.groupBy(GROUP).agg(F.percentile_approx("v", probabilities, 10_000).alias("edges"))
    both = ref.withColumn(WINDOW, F.lit("reference")).unionByName(cur.withColumn(WINDOW, F.lit("current")))
    binned = both.join(F.broadcast(edges), GROUP, "inner") if group_keys else both.crossJoin(F.broadcast(edges.drop(GROUP)))
    binned = binned.withColumn("bin", F.expr("size(filter(edges, e -> e <= v))"))
    rows = binned.groupBy(GROUP, WINDOW, "bin").count().collect()
    out: dict[str | None, tuple[list[float], list[float], int, int]] = {}
    for row in rows:
        ref_counts, cur_counts, _, _ = out.setdefault(row[GROUP], ([0.0] * bins, [0.0] * bins, 0, 0))
        target = ref_counts if row[WINDOW] == "reference" else cur_counts
        target[min(int(row["bin"]), bins - 1)] += row["count"]
    return {g: (r, c, int(sum(r)), int(sum(c))) for g, (r, c, _, _) in out.items()}


def merge_bins(counts: Sequence[float], bins: int) -> list[float]:
    """Counts over ``k * bins`` reference-quantile bins -> counts over ``bins`` of them.

    The edges of the coarse bins (quantiles j/bins) are every k-th edge of the fine ones, and a
    value's bin is the number of edges at or below it, so its coarse bin is its fine bin // k:
    one aggregation gives both the PSI and the KS counts.
    """
    factor = len(counts) // bins
    return [float(sum(counts[i * factor : (i + 1) * factor])) for i in range(bins)]


def categorical_counts(
    reference: DataFrame, current: DataFrame, feature: str, group_keys: Sequence[str]
) -> dict[str | None, tuple[list[float], list[float], int, int, list[str]]]:
    """{group: (reference counts, current counts, n_reference, n_current, categories)}."""
    from pyspark.sql import functions as F

    value = F.coalesce(F.col(f"`{feature}`").cast("string"), F.lit("__null__")).alias("v")
    both = (
        _with_group(reference, group_keys).select(GROUP, value).withColumn(WINDOW, F.lit("reference"))
        .unionByName(_with_group(current, group_keys).select(GROUP, value).withColumn(WINDOW, F.lit("current")))
    )  # fmt: skip
    rows = both.groupBy(GROUP, WINDOW, "v").count().collect()
    grouped: dict[str | None, dict[str, list[float]]] = {}
    for row in rows:
        counts = grouped.setdefault(row[GROUP], {}).setdefault(row["v"], [0.0, 0.0])
        counts[0 if row[WINDOW] == "reference" else 1] += row["count"]
    out = {}
    for group, by_category in grouped.items():
        categories = sorted(by_category)
        ref = [by_category[c][0] for c in categories]
        cur = [by_category[c][1] for c in categories]
        out[group] = (ref, cur, int(sum(ref)), int(sum(cur)), categories)
    return out
