"""ingest_rides: NYC TLC yellow trip CSV -> Delta ``rides``, partitioned by ``pickup_month``.

The file's period is inferred from the data (whole calendar months; months holding under 1 % of
the busiest month's pickups are strays and cannot widen it) and reported in the summary. Rides
are quarantined for negative distance, fare or total, dropoff before pickup, a duration over
``ingest.max_ride_hours``, a pickup or dropoff more than ``ingest.max_days_outside_period`` days
outside the period (the 2008-12-31 rides of TLC samples), exact duplicate records and malformed
lines. Zero distances and empty optional TLC fields (vendor, passenger count, rate code, flag,
payment type, congestion surcharge) are kept; anomaly detection looks at them later.

Written with ``overwrite`` + idempotency token: the file is a snapshot of its period, and a
partial replace on its pickup dates would delete a neighbouring file's rides on the shared
boundary days (see ``mlcore.pipelines._ingest``).
"""

from __future__ import annotations

from mlcore.ingest.rules import classify_rides, infer_period, parse_rides
from mlcore.ingest.schemas import RIDES
from mlcore.ingest.sources import read_csv_source, resolve_rides_source
from mlcore.pipelines._ingest import (
    IngestBatch,
    configured_rules,
    date_policy,
    replay_summary,
    run_ingest,
)
from mlcore.pipelines.context import JobContext, JobSummary


def run(ctx: JobContext) -> JobSummary:
    from pyspark import StorageLevel

    replay = replay_summary(ctx, (RIDES,))
    if replay is not None:
        return replay
    cfg = ctx.config.ingest
    source = resolve_rides_source(ctx.config)
    raw = read_csv_source(ctx.spark, source.path, RIDES, cfg.limit_rows)
    # Parsed once: the period pass and the classification both read this cache.
    parsed = parse_rides(raw).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        dates = date_policy(ctx)
        period = infer_period(parsed, policy=dates)
        classified = classify_rides(
            parsed,
            period,
            cfg.max_ride_hours,
            cfg.max_days_outside_period,
            configured_rules(ctx, RIDES),
            dates,
        )
        notes = [
            (
                "rides period",
                "none (no parseable pickup times)"
                if period is None
                else f"{period} (inferred; +/- {cfg.max_days_outside_period} days tolerated)",
            )
        ]
        summary = run_ingest(ctx, [IngestBatch(RIDES, classified, source, notes)])
        if period is not None:
            summary.metrics["rides.period_days"] = float(period.days)
        return summary
    finally:
        parsed.unpersist()
