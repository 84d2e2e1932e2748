"""ingest_sales: Rossmann ``train.csv`` + ``store.csv`` -> Delta ``sales`` and ``stores``.

Both files are validated (rules in ``mlcore.ingest.rules``: types, domains such as Open in
{0,1} and StateHoliday in {0,a,b,c}, no negative sales/customers, DayOfWeek agreeing with Date,
one row per (store, date) and per store, dates plausible for the run date and inside the file's
own period) before either table is touched. Rejected rows go to
``sales_quarantine`` / ``stores_quarantine`` with a rule code and a reason.

Both tables are overwritten with the job's idempotency token: the files are full snapshots, so
the table is the latest snapshot (older ones via Delta time travel) and a rerun for the same run
date adds no version. When ``sources.sales.calendar_path`` names a Rossmann ``test.csv``-format
file, it is validated the same way into ``forecast_calendar`` (future open/promo/holiday flags
for make_forecasts). See ``mlcore.pipelines._ingest`` for the shared flow.

``sources.sales.items_per_store`` K > 0 publishes store x item series instead: the validated
store rows are expanded into K generated items each (:mod:`mlcore.ingest.items`), and so is the
calendar; the quarantine keeps the source's store-level rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from mlcore.config.checks import below_minimum
from mlcore.config.errors import ConfigError
from mlcore.ingest.items import expand_calendar, expand_sales
from mlcore.ingest.rules import classify_calendar, classify_sales, classify_stores
from mlcore.ingest.schemas import CALENDAR, ITEM_CONTRACTS, SALES, STORES
from mlcore.ingest.sources import Source, path_exists, read_csv_source, resolve_sales_sources
from mlcore.pipelines._ingest import (
    IngestBatch,
    configured_rules,
    date_policy,
    replay_summary,
    run_ingest,
)
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

MAX_ITEMS_PER_STORE = 1000


def items_per_store(ctx: JobContext) -> int:
    """``sources.sales.items_per_store``, checked before any Spark work."""
    items = ctx.config.sources.sales.items_per_store
    problems = below_minimum("sources.sales", [("items_per_store", items, 0)])
    if items > MAX_ITEMS_PER_STORE:
        problems.append(
            f"sources.sales.items_per_store must be at most {MAX_ITEMS_PER_STORE} (got {items})"
        )
    if problems:
        raise ConfigError("; ".join(problems))
    return items


def sales_per_item(items: int, seed: int) -> Callable[[DataFrame], DataFrame]:
    """The expansion of the good store rows into ``items`` series per store."""

    def expand(good: DataFrame) -> DataFrame:
        from pyspark.sql import functions as F

        first, last = good.agg(F.min("date"), F.max("date")).first() or (None, None)
        today = dt.date.today()
        return expand_sales(good, items, seed, (first or today, last or today))

    return expand


def calendar_source(ctx: JobContext, synthetic: bool) -> Source | None:
    """The optional future calendar (test.csv format); never mixed with synthetic sales."""
    path = ctx.config.sources.sales.calendar_path
    if synthetic or path is None:
        return None
    if not path_exists(path):
        if ctx.config.sources.sales.if_missing == "error":
            raise JobFailed(
                f"sources.sales.calendar_path: {path} does not exist (if_missing: error)"
            )
        log.warning("sources.sales.calendar_path %s does not exist: no forecast_calendar", path)
        return None
    return Source("sources.sales.calendar_path", str(path))


def run(ctx: JobContext) -> JobSummary:
    items = items_per_store(ctx)
    train, store = resolve_sales_sources(ctx.config)
    calendar = calendar_source(ctx, train.synthetic)
    contracts = (SALES, STORES, CALENDAR) if calendar else (SALES, STORES)
    replay = replay_summary(ctx, contracts)
    if replay is not None:
        return replay
    limit = ctx.config.ingest.limit_rows
    dates = date_policy(ctx)
    sales = classify_sales(
        read_csv_source(ctx.spark, train.path, SALES, limit), configured_rules(ctx, SALES), dates
    )
    stores = classify_stores(
        read_csv_source(ctx.spark, store.path, STORES, limit), configured_rules(ctx, STORES)
    )
    sales_batch = IngestBatch(SALES, sales, train)
    batches = [sales_batch, IngestBatch(STORES, stores, store)]
    if calendar is not None:
        raw_calendar = read_csv_source(ctx.spark, calendar.path, CALENDAR, limit)
        future = classify_calendar(raw_calendar, configured_rules(ctx, CALENDAR), dates)
        batches.append(IngestBatch(CALENDAR, future, calendar))
    if items:
        seed = ctx.config.sources.sales.items_seed
        sales_batch.derive = sales_per_item(items, seed)
        sales_batch.notes.append(("sales items per store", f"{items} (seed {seed})"))
        for batch in batches:
            batch.published = ITEM_CONTRACTS.get(batch.contract.table)
        if calendar is not None:
            batches[-1].derive = lambda good: expand_calendar(good, items, seed)
    return run_ingest(ctx, batches)
