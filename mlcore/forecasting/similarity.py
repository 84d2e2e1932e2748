"""Similar stores: a profile per store and its k nearest neighbours (``find_similar_stores``).

A planner looking at one store wants the stores that behave like it: the same weekly shape
(which days sell, Sunday openings), the same yearly seasonality, a similar level, promo lift and
trend, and the same kind of store. Each of those is a *block* of profile columns; columns are
standardised across stores, and each block is scaled to carry its configured weight whatever
its width (a 12-month block does not outvote a 3-column one). The distance is Euclidean over
the scaled profile; ``similarity = 1 / (1 + distance)`` (1: the same profile). The per-block
distances are kept, so a planner can see *why* two stores are close.

:func:`store_profiles` builds the profiles with Spark aggregations (one row per store);
:func:`profile_matrix` and :func:`nearest_neighbours` are pure numpy/pandas, run per block of
stores inside ``mapInPandas`` by the job. No table IO here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

WEEKDAY_COLUMNS: Final[tuple[str, ...]] = tuple(f"weekday_{day}" for day in range(1, 8))
MONTH_COLUMNS: Final[tuple[str, ...]] = tuple(f"month_{month}" for month in range(1, 13))
LEVEL_COLUMNS: Final[tuple[str, ...]] = ("log_level", "promo_lift", "trend")
ATTRIBUTE_COLUMNS: Final[tuple[str, ...]] = (
    "store_type_a", "store_type_b", "store_type_c", "store_type_d",
    "assortment_a", "assortment_b", "assortment_c",
    "log_competition_distance", "promo2",
)  # fmt: skip
# Block name -> profile columns; the order is the order of the per-block distance columns.
PROFILE_BLOCKS: Final[dict[str, tuple[str, ...]]] = {
    "shape": (*WEEKDAY_COLUMNS, "open_share"),
    "seasonality": MONTH_COLUMNS,
    "level": LEVEL_COLUMNS,
    "attributes": ATTRIBUTE_COLUMNS,
}
PROFILE_COLUMNS: Final[tuple[str, ...]] = tuple(c for cols in PROFILE_BLOCKS.values() for c in cols)
NEIGHBOUR_COLUMNS: Final[tuple[str, ...]] = (
    "rank", "similarity", "distance", "level_ratio",
    *(f"{block}_distance" for block in PROFILE_BLOCKS),
)  # fmt: skip


@dataclass(frozen=True)
class ScaledProfiles:
    """Standardised, block-weighted profile vectors (rows in ``keys`` order) and each store's
    mean daily sales on open days (for the level ratio)."""

    keys: np.ndarray
    vectors: np.ndarray
    mean_sales: np.ndarray
    block_slices: tuple[tuple[str, slice], ...]


def store_profiles(
    sales: DataFrame,
    stores: DataFrame | None,
    key: str,
    date_column: str,
    target_column: str,
    open_column: str | None,
    promo_column: str | None,
    trend_days: int = 91,
) -> DataFrame:
    """One row per store: ``key``, ``mean_sales``, ``days`` and :data:`PROFILE_COLUMNS`.

    ``sales`` holds the lookback window only. Shapes are ratios to the store's mean on days it
    sold (so level does not leak into shape); a weekday or month without sales is 0 / 1
    (closed / unknown, i.e. no seasonal effect); ``trend`` is the log ratio of the last
    ``trend_days`` to the whole window; attributes come from ``stores`` (absent: zeros)."""
    from pyspark.sql import functions as F

    target = F.col(target_column).cast("double")
    selling = target > 0
    if open_column:
        selling = selling & (F.coalesce(F.col(open_column).cast("int"), F.lit(1)) == 1)
    rows = sales.select(
        F.col(key),
        F.col(date_column).cast("date").alias("_date"),
        target.alias("_sales"),
        selling.alias("_selling"),
        (F.col(promo_column).cast("int") == 1).alias("_promo") if promo_column else F.lit(False).alias("_promo"),
    )
    last = rows.agg(F.max("_date")).first()
    last_date = last[0] if last is not None else None
    if last_date is None:
        return sales.sparkSession.createDataFrame([], _profile_ddl(key, sales))
    recent = F.col("_date") > F.date_sub(F.lit(last_date), trend_days)
    sold = F.when(F.col("_selling"), F.col("_sales"))
    weekday = F.dayofweek("_date")  # 1 = Sunday .. 7 = Saturday
    iso_weekday = F.when(weekday == 1, 7).otherwise(weekday - 1)
    month = F.month("_date")
    mean_sales = F.avg(sold)
    aggregations = [
        mean_sales.alias("mean_sales"),
        F.count(F.lit(1)).alias("days"),
        F.avg(F.col("_selling").cast("double")).alias("open_share"),
        F.avg(F.when(F.col("_promo"), sold)).alias("_promo_mean"),
        F.avg(F.when(~F.col("_promo"), sold)).alias("_plain_mean"),
        F.avg(F.when(recent, sold)).alias("_recent_mean"),
        *(F.avg(F.when(iso_weekday == d, sold)).alias(f"_wd{d}") for d in range(1, 8)),
        *(F.avg(F.when(month == m, sold)).alias(f"_m{m}") for m in range(1, 13)),
    ]
    profile = rows.groupBy(key).agg(*aggregations).where(F.col("mean_sales") > 0)
    ratio = lambda name, default: F.coalesce(F.col(name) / F.col("mean_sales"), F.lit(default))  # noqa: E731
    log_ratio = lambda top, bottom: F.coalesce(F.log(F.col(top) / F.col(bottom)), F.lit(0.0))  # noqa: E731
    profile = profile.select(
        key,
        "mean_sales",
        "days",
        *(ratio(f"_wd{d}", 0.0).alias(f"weekday_{d}") for d in range(1, 8)),
        "open_share",
        *(ratio(f"_m{m}", 1.0).alias(f"month_{m}") for m in range(1, 13)),
        F.log("mean_sales").alias("log_level"),
        log_ratio("_promo_mean", "_plain_mean").alias("promo_lift"),
        log_ratio("_recent_mean", "mean_sales").alias("trend"),
    )
    if stores is None:
        attributes = [F.lit(0.0).alias(c) for c in ATTRIBUTE_COLUMNS]
        return profile.select("*", *attributes)
    kinds = stores.select(
        F.col(key),
        *(
            (F.lower(F.col("store_type")) == letter).cast("double").alias(f"store_type_{letter}")
            for letter in "abcd"
        ),
        *(
            (F.lower(F.col("assortment")) == letter).cast("double").alias(f"assortment_{letter}")
            for letter in "abc"
        ),
        F.log1p(F.col("competition_distance").cast("double")).alias("log_competition_distance"),
        F.coalesce(F.col("promo2").cast("double"), F.lit(0.0)).alias("promo2"),
    )
    joined = profile.join(kinds, on=key, how="left")
    return joined.select(
        key, "mean_sales", "days",
        *(F.coalesce(F.col(c), F.lit(0.0)).alias(c) if c != "log_competition_distance" else F.col(c)
          for c in PROFILE_COLUMNS),
    )  # fmt: skip


def _profile_ddl(key: str, sales: DataFrame) -> str:
    key_type = sales.schema[key].dataType.simpleString()
    columns = ", ".join(f"{c} double" for c in PROFILE_COLUMNS)
    return f"`{key}` {key_type}, mean_sales double, days long, {columns}"


def profile_matrix(profiles: pd.DataFrame, key: str, weights: Mapping[str, float]) -> ScaledProfiles:
    """Standardise each profile column across stores (a missing competition distance gets the
    median; a constant column contributes nothing) and scale each block to ``weights[block]``
    divided by the square root of its width. Rows are sorted by ``key``."""
    frame = profiles.sort_values(key, kind="mergesort").reset_index(drop=True)
    columns = []
    slices = []
    start = 0
    for block, names in PROFILE_BLOCKS.items():
        block_frame = frame[list(names)].astype("float64")
        values = block_frame.fillna(block_frame.median()).fillna(0.0).to_numpy()
        spread = values.std(axis=0)
        centred = values - values.mean(axis=0)
        scaled = np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)
        columns.append(scaled * (float(weights.get(block, 1.0)) / np.sqrt(len(names))))
        slices.append((block, slice(start, start + len(names))))
        start += len(names)
    vectors = np.hstack(columns) if columns else np.zeros((len(frame), 0))
    return ScaledProfiles(
        keys=frame[key].to_numpy(),
        vectors=vectors,
        mean_sales=frame["mean_sales"].to_numpy(dtype="float64"),
        block_slices=tuple(slices),
    )


def nearest_neighbours(
    profiles: ScaledProfiles, rows: Sequence[int] | np.ndarray, k: int, key: str
) -> pd.DataFrame:
    """The ``k`` nearest other stores of the stores at positions ``rows``: one row per (store,
    neighbour) with :data:`NEIGHBOUR_COLUMNS`. Ties are broken by the neighbour's key, so the
    result does not depend on how stores were split across tasks."""
    positions = np.asarray(rows, dtype=np.int64)
    count = len(profiles.keys)
    take = min(int(k), count - 1)
    names = [key, "neighbour", *NEIGHBOUR_COLUMNS]
    if take <= 0 or len(positions) == 0:
        return pd.DataFrame(columns=names)
    queries = profiles.vectors[positions]
    squared = (
        (queries**2).sum(axis=1)[:, None]
        + (profiles.vectors**2).sum(axis=1)[None, :]
        - 2.0 * queries @ profiles.vectors.T
    )
    distances = np.sqrt(np.clip(squared, 0.0, None))
    distances[np.arange(len(positions)), positions] = np.inf  # a store is not its own neighbour
    # keys are sorted, so a stable sort on distance breaks ties by key
    order = np.argsort(distances, axis=1, kind="stable")[:, :take]
    out: dict[str, np.ndarray] = {
        key: np.repeat(profiles.keys[positions], take),
        "neighbour": profiles.keys[order].ravel(),
        "rank": np.tile(np.arange(1, take + 1, dtype=np.int32), len(positions)),
    }
    chosen = np.take_along_axis(distances, order, axis=1).ravel()
    out["similarity"] = 1.0 / (1.0 + chosen)
    out["distance"] = chosen
    out["level_ratio"] = (
        profiles.mean_sales[order] / profiles.mean_sales[positions][:, None]
    ).ravel()
    for block, columns in profiles.block_slices:
        difference = queries[:, None, columns] - profiles.vectors[order][:, :, columns]
        out[f"{block}_distance"] = np.sqrt((difference**2).sum(axis=2)).ravel()
    return pd.DataFrame(out, columns=names)
