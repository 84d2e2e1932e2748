"""find_similar_stores: each store's k most similar stores -> ``store_neighbours``.

Run-date semantics: ``--run-date D`` profiles every store over the ``similarity.lookback_days``
of ``sales`` before D (weekly shape, yearly seasonality, level, promo lift, trend) plus its
``stores`` attributes, and writes its ``similarity.k`` nearest neighbours with a similarity score
and the per-block distances (:mod:`mlcore.forecasting.similarity`) into partition ``run_date``
of ``store_neighbours`` (replace-where: a rerun for D gives the same rows). The profiles are
Spark aggregations; the neighbour search runs in ``mapInPandas`` over blocks of stores against
the small profile matrix, so the driver holds one row per store, never the pairs. The planners'
service (``mlcore serve``) reads the latest partition.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from mlcore.config.checks import below_minimum
from mlcore.config.errors import ConfigError
from mlcore.forecasting.similarity import (
    NEIGHBOUR_COLUMNS,
    PROFILE_BLOCKS,
    nearest_neighbours,
    profile_matrix,
    store_profiles,
)
from mlcore.ingest.schemas import ITEM_COLUMN
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary, TableOutput

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

log = logging.getLogger(__name__)

OUTPUT = "store_neighbours"
QUERY_BLOCK = 512  # stores per neighbour-search task: a 512 x N distance block


def run(ctx: JobContext) -> JobSummary:
    from pyspark.sql import functions as F

    settings = ctx.config.similarity
    fc = ctx.config.forecasting
    problems = below_minimum(
        "similarity",
        (("k", settings.k, 1), ("lookback_days", settings.lookback_days, 28), ("min_days", settings.min_days, 1)),
    )
    unknown = sorted(set(settings.weights) - set(PROFILE_BLOCKS))
    if unknown:
        problems.append(
            f"similarity.weights: unknown block(s) {', '.join(unknown)}; blocks: {', '.join(PROFILE_BLOCKS)}"
        )
    problems += [
        f"similarity.weights.{block} must be >= 0 (got {weight})"
        for block, weight in settings.weights.items()
        if weight < 0
    ]
    if problems:
        raise ConfigError("; ".join(problems))
    key = fc.features.stores_key
    summary = JobSummary()
    if not ctx.dry_run and ctx.tables.already_written(OUTPUT, ctx.token(OUTPUT)):
        summary.add("status", "already published for this run date: nothing to do")
        return summary
    start = ctx.run_date - dt.timedelta(days=settings.lookback_days)
    date = fc.date_column
    sales = ctx.tables.read("sales").where(
        (F.col(date) >= F.lit(start)) & (F.col(date) < F.lit(ctx.run_date))
    )
    stores_table = fc.features.stores_table
    stores = (
        ctx.tables.read(stores_table)
        if stores_table and ctx.tables.exists(stores_table)
        else None
    )
    promo = fc.features.promo_column if fc.features.promo_column in sales.columns else None
    if ITEM_COLUMN in sales.columns:  # store x item sales: stores are compared on their totals
        sales = sales.groupBy(key, date).agg(
            F.sum(fc.target_column).alias(fc.target_column),
            *[F.max(c).alias(c) for c in (fc.open_column, promo) if c],
        )
    profiles = store_profiles(
        sales, stores, key, date, fc.target_column, fc.open_column, promo
    ).where(F.col("days") >= settings.min_days)
    collected = profiles.toPandas()  # one row per store: the small matrix every task searches
    if len(collected) < 2:
        raise JobFailed(
            f"{len(collected)} store(s) with at least {settings.min_days} days of sales in "
            f"{start} .. {ctx.run_date - dt.timedelta(days=1)}: nothing to compare"
        )
    scaled = profile_matrix(collected, key, dict(settings.weights))
    count = len(scaled.keys)
    blocks = [(first, min(first + QUERY_BLOCK, count)) for first in range(0, count, QUERY_BLOCK)]
    k = settings.k

    def search(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for first, stop in zip(batch["first"], batch["stop"], strict=True):
                yield nearest_neighbours(scaled, range(int(first), int(stop)), k, key)

    key_type = profiles.schema[key].dataType.simpleString()
    schema = (
        f"`{key}` {key_type}, neighbour {key_type}, rank int, "
        + ", ".join(f"{c} double" for c in NEIGHBOUR_COLUMNS if c != "rank")
    )
    tasks = ctx.spark.createDataFrame(blocks, "first long, stop long").repartition(len(blocks))
    neighbours = tasks.mapInPandas(search, schema)
    summary.outputs[OUTPUT] = TableOutput(ctx.stamp(neighbours), expected_rows=count * min(k, count - 1))
    summary.add("stores compared", f"{count} (lookback {start} .. {ctx.run_date - dt.timedelta(days=1)})")
    summary.add("neighbours per store", str(min(k, count - 1)))
    summary.metrics["stores"] = float(count)
    return summary
