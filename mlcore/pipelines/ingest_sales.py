"""ingest_sales: Rossmann ``train.csv`` + ``store.csv`` -> Delta ``sales`` and ``stores``.

Both files are validated (rules in ``mlcore.ingest.rules``: types, domains such as Open in
{0,1} and StateHoliday in {0,a,b,c}, no negative sales/customers, DayOfWeek agreeing with Date,
one row per (store, date) and per store) before either table is touched. Rejected rows go to
``sales_quarantine`` / ``stores_quarantine`` with a rule code and a reason.

Both tables are overwritten with the job's idempotency token: the files are full snapshots, so
the table is the latest snapshot (older ones via Delta time travel) and a rerun for the same run
date adds no version. See ``mlcore.pipelines._ingest`` for the shared flow.
"""

from __future__ import annotations

from mlcore.ingest.rules import classify_sales, classify_stores
from mlcore.ingest.schemas import SALES, STORES
from mlcore.ingest.sources import read_csv_source, resolve_sales_sources
from mlcore.pipelines._ingest import IngestBatch, replay_summary, run_ingest
from mlcore.pipelines.context import JobContext, JobSummary


def run(ctx: JobContext) -> JobSummary:
    replay = replay_summary(ctx, (SALES, STORES))
    if replay is not None:
        return replay
    train, store = resolve_sales_sources(ctx.config)
    limit = ctx.config.ingest.limit_rows
    sales = classify_sales(read_csv_source(ctx.spark, train.path, SALES, limit))
    stores = classify_stores(read_csv_source(ctx.spark, store.path, STORES, limit))
    return run_ingest(ctx, [IngestBatch(SALES, sales, train), IngestBatch(STORES, stores, store)])
