"""Store x item series derived from store-level sales (``sources.sales.items_per_store``).

Our users forecast store x item (the M5 benchmark has 30,490 series); the Rossmann file has
store totals only. This generator splits every real store into ``K`` items whose daily sales
keep the store's calendar (closures, holidays, promos, weekday pattern) and vary per item in:

- scale (log-uniform over a factor of ~11) and noise (lognormal, sigma 0.05-0.30);
- trend (-25 % .. +35 % a year) and yearly and weekday seasonality (own amplitude and phase);
- promo participation (70 % of items take part in the store's promos, each with its own lift;
  the others sell without lift on promo days, so the store-average lift is taken out first);
- intermittency (12 % of items sell on only 20-60 % of open days, at a tenth of the scale);
- short history (10 % of items are introduced between half-way and near the end of the file's
  period: a few have fewer days than ``forecasting.min_history_days``, as real launches do).

Every draw is a hash of (seed, store, item[, date]) in Spark expressions: deterministic by seed,
independent of partitioning and task order, and narrow (no shuffle, no Python on executors).
The future calendar (``forecast_calendar``) is expanded with the same promo participation, so a
planned promo reaches exactly the items that take part in the store's promos.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

from mlcore.ingest.schemas import ITEM_COLUMN

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# Share of items per kind and the ranges of their draws (documented in the module docstring).
PROMO_SHARE = 0.7
STORE_PROMO_LIFT = 1.35  # about the Rossmann store-level promo lift, taken out before the item's
INTERMITTENT_SHARE = 0.12
SHORT_HISTORY_SHARE = 0.10
_UNIT = 1 << 24


def _uniform(seed: int, tag: str, *columns: Column) -> Column:
    """A uniform draw in [0, 1) from a hash of the seed, a tag naming the draw and ``columns``."""
    from pyspark.sql import functions as F

    hashed = F.xxhash64(F.lit(seed), F.lit(tag), *columns)
    return F.pmod(hashed, F.lit(_UNIT)).cast("double") / F.lit(float(_UNIT))


def _between(draw: Column, low: float, high: float) -> Column:
    return draw * (high - low) + low


def _items(df: DataFrame, items_per_store: int) -> DataFrame:
    from pyspark.sql import functions as F

    items = df.sparkSession.range(1, items_per_store + 1).select(
        F.col("id").cast("int").alias(ITEM_COLUMN)
    )
    return df.crossJoin(F.broadcast(items))


def _takes_part_in_promos(seed: int) -> Column:
    from pyspark.sql import functions as F

    return _uniform(seed, "promo", F.col("store"), F.col(ITEM_COLUMN)) < F.lit(PROMO_SHARE)


def expand_sales(
    sales: DataFrame, items_per_store: int, seed: int, period: tuple[dt.date, dt.date]
) -> DataFrame:
    """``K`` item rows per store-level row (the sales contract's columns plus ``item``), minus
    the days before a short-history item's introduction. ``period``: the first and last date of
    the store-level rows, where introductions are placed."""
    from pyspark.sql import functions as F

    store, item, date = F.col("store"), F.col(ITEM_COLUMN), F.col("date")

    def draw(tag: str) -> Column:
        return _uniform(seed, tag, store, item)

    def daily(tag: str) -> Column:
        return _uniform(seed, tag, store, item, date)

    intermittent = draw("kind") < F.lit(INTERMITTENT_SHARE)
    short = draw("launch") < F.lit(SHORT_HISTORY_SHARE)
    scale = F.exp(_between(draw("scale"), -1.2, 1.2)) / F.lit(float(items_per_store))
    scale = F.when(intermittent, scale * F.lit(0.1)).otherwise(scale)
    years = F.datediff(date, F.lit(period[0])).cast("double") / F.lit(365.25)
    trend = F.greatest(F.lit(0.2), F.lit(1.0) + _between(draw("trend"), -0.25, 0.35) * years)
    two_pi = 2 * math.pi
    yearly = F.lit(1.0) + _between(draw("yearly_amp"), 0.0, 0.35) * F.sin(
        F.lit(two_pi) * F.dayofyear(date) / F.lit(365.25) + draw("yearly_phase") * F.lit(two_pi)
    )
    weekly = F.lit(1.0) + _between(draw("weekly_amp"), 0.0, 0.2) * F.cos(
        F.lit(two_pi) * F.col("day_of_week") / F.lit(7.0) + draw("weekly_phase") * F.lit(two_pi)
    )
    in_promo = _takes_part_in_promos(seed) & (F.col("promo") == 1)
    promo_factor = (
        F.when(F.col("promo") != 1, F.lit(1.0))
        .when(in_promo, _between(draw("lift"), 1.0, 1.8) / F.lit(STORE_PROMO_LIFT))
        .otherwise(F.lit(1.0 / STORE_PROMO_LIFT))
    )
    sigma = _between(draw("sigma"), 0.05, 0.30)
    # Irwin-Hall with four uniforms, scaled to unit variance: close enough to a normal draw
    normal = (
        daily("z1") + daily("z2") + daily("z3") + daily("z4") - F.lit(2.0)
    ) * F.lit(math.sqrt(3.0))
    noise = F.exp(sigma * normal - sigma * sigma / F.lit(2.0))
    sells = ~intermittent | (daily("sells") < _between(draw("rate"), 0.2, 0.6))
    level = F.col("sales") * scale * trend * yearly * weekly * promo_factor * noise
    item_sales = F.when((F.col("open") == 1) & sells, F.round(level)).otherwise(F.lit(0.0))
    span = (period[1] - period[0]).days
    launch = F.date_add(
        F.lit(period[0]), (_between(draw("launch_day"), 0.5, 0.95) * F.lit(span)).cast("int")
    )
    expanded = _items(sales, items_per_store)
    return (
        expanded.filter(~short | (date >= launch))
        .withColumn("sales", item_sales.cast("int"))
        .withColumn("customers", F.round(F.col("customers") * scale).cast("int"))
        .withColumn("promo", in_promo.cast("int"))
    )


def expand_calendar(calendar: DataFrame, items_per_store: int, seed: int) -> DataFrame:
    """The future calendar per store x item: the store's days, with ``promo`` set only for the
    items that take part in the store's promos (the rule :func:`expand_sales` applies)."""
    from pyspark.sql import functions as F

    expanded = _items(calendar, items_per_store)
    return expanded.withColumn(
        "promo", (_takes_part_in_promos(seed) & (F.col("promo") == 1)).cast("int")
    )
