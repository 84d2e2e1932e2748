"""detect_anomalies: DBSCAN per daily batch of rides; noise (label -1) is an anomaly.

A run for date D clusters the ``anomaly.batch_days`` days before D (one batch per day, or per
day x ``anomaly.batch_keys``). Rides whose features would be meaningless go to
``ride_anomalies_quarantine`` with rule and reason; the rest are standardised per batch and
clustered with ``applyInPandas`` (one status row per batch: ok / skipped / failed). Outputs, all
in partition ``run_date`` and idempotent per run date: ``ride_anomalies`` (ride key, cluster,
flag, features), ``ride_anomaly_batches`` (clusters, noise, silhouette, eps per batch).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcore.anomaly.clustering import FAILED, DbscanSettings
from mlcore.anomaly.distributed import cluster_batches
from mlcore.anomaly.features import ROW_KEY, RULE
from mlcore.io.frames import aggregate_row
from mlcore.pipelines._progress import StageReporter
from mlcore.pipelines._rides import batch_keys, days_before, read_rides, split_usable
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary, TableOutput
from mlcore.spark_classic import default_parallelism

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

ANOMALIES, BATCHES, QUARANTINE = (
    "ride_anomalies",
    "ride_anomaly_batches",
    "ride_anomalies_quarantine",
)


def dbscan_settings(ctx: JobContext) -> DbscanSettings:
    ac = ctx.config.anomaly
    return DbscanSettings(
        features=tuple(ac.features), eps=ac.eps, min_samples=ac.min_samples, eps_quantile=ac.eps_quantile,
        min_batch_rows=ac.min_batch_rows, max_batch_rows=ac.max_batch_rows,
        silhouette_rows=ac.silhouette_rows, min_cluster_share=ac.min_cluster_share, seed=ac.seed,
    )  # fmt: skip


def outputs(ctx: JobContext, results: DataFrame, keys: list[str]) -> tuple[DataFrame, DataFrame]:
    from pyspark.sql import functions as F

    names = list(ctx.config.anomaly.features)
    run_columns = ctx.run_columns()
    batches = results.drop("rides").select("*", *run_columns)
    rides = results.select(*keys, F.explode("rides").alias("r")).select(
        *keys,
        F.col(f"r.{ROW_KEY}").alias(ROW_KEY),
        F.timestamp_micros("r.pickup_ts_us").alias("pickup_datetime"),
        F.col("r.cluster").alias("cluster"),
        F.col("r.is_anomaly").alias("is_anomaly"),
        *[F.col(f"r.{n}").alias(n) for n in names],
        *run_columns,
    )
    return rides, batches


def _plot(ctx: JobContext, results: DataFrame, keys: list[str]) -> str | None:
    """Scatter of the first clustered batch: distance vs duration, noise marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    first = results.filter("status = 'ok'").orderBy(*keys).limit(1).collect()
    if not first:
        return None
    row = first[0]
    rides = pd.DataFrame([r.asDict() for r in row["rides"]])
    names = list(ctx.config.anomaly.features)
    x, y = names[0], names[1] if len(names) > 1 else names[0]
    fig, ax = plt.subplots(figsize=(7, 5))
    clustered = rides[~rides["is_anomaly"]]
    ax.scatter(
        clustered[x], clustered[y], c=clustered["cluster"], cmap="viridis", s=8, label="clustered"
    )
    noise = rides[rides["is_anomaly"]]
    ax.scatter(noise[x], noise[y], c="red", marker="x", s=25, label=f"anomaly ({len(noise)})")
    title = ", ".join(f"{k}={row[k]}" for k in keys)
    ax.set(
        xlabel=x,
        ylabel=y,
        title=f"DBSCAN {title}: {row['clusters']} clusters, eps {row['eps']:.3f}",
    )
    ax.legend()
    fig.tight_layout()
    path = Path(tempfile.mkdtemp(prefix="mlcore_dbscan_")) / "dbscan_batch.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def run(ctx: JobContext) -> JobSummary:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    ac = ctx.config.anomaly
    summary = JobSummary()
    tokens = {name: ctx.token(name) for name in (ANOMALIES, BATCHES, QUARANTINE)}
    if not ctx.dry_run and all(ctx.tables.already_written(n, t) for n, t in tokens.items()):
        summary.add("status", "already published for this run date: nothing to do")
        return summary

    days = days_before(ctx.run_date, ac.batch_days)
    summary.add("days", f"{days[0]} .. {days[-1]}" if len(days) > 1 else str(days[0]))
    usable, quarantined = split_usable(ctx, read_rides(ctx, days))
    keys = batch_keys(ctx)
    usable = usable.persist(StorageLevel.MEMORY_AND_DISK)
    quarantined = quarantined.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n_usable = usable.count()
        by_rule = {r[RULE]: r["count"] for r in quarantined.groupBy(RULE).count().collect()}
        n_batches = usable.select(*keys).distinct().count()
        partitions = max(1, min(4 * default_parallelism(ctx.spark), n_batches))
        results = cluster_batches(usable, keys, dbscan_settings(ctx), partitions).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        with StageReporter(ctx.spark, "clustering", n_batches, "batches"):
            statuses = {r["status"]: r["count"] for r in results.groupBy("status").count().collect()}
        totals = aggregate_row(
            results.agg(F.sum("anomalies"), F.sum("noise"), F.avg("silhouette"), F.avg("eps"))
        )
    finally:
        usable.unpersist()
    summary.add("rides clustered", n_usable, metric="rides_usable")
    summary.add("rides quarantined", sum(by_rule.values()), metric="rides_quarantined")
    for rule, count in sorted(by_rule.items()):
        summary.add(f"  quarantine {rule}", count, metric=f"quarantined_{rule}")
    summary.add("batches", n_batches, metric="batches")
    for status in ("ok", "skipped", "failed"):
        summary.add(f"batches {status}", statuses.get(status, 0), metric=f"batches_{status}")
    anomalies = int(totals[0] or 0)
    summary.add("anomalies (noise + micro-clusters)", anomalies, metric="anomalies")
    summary.add("  of which DBSCAN noise", int(totals[1] or 0), metric="dbscan_noise")
    if n_usable:
        summary.metrics["anomaly_share"] = anomalies / n_usable
    if totals[2] is not None:
        summary.add("mean silhouette", f"{totals[2]:.3f}", metric=None)
        summary.metrics["silhouette_mean"] = float(totals[2])
    if totals[3] is not None:
        summary.metrics["eps_mean"] = float(totals[3])

    failed = statuses.get(FAILED, 0)
    batch_table: Any = results.drop("rides").orderBy(*keys).toPandas()
    ctx.artifacts["batches.csv"] = batch_table.to_csv(index=False)
    if n_batches and failed / n_batches > ac.batch_failure_budget:
        results.unpersist()
        quarantined.unpersist()
        raise JobFailed(
            f"{failed} of {n_batches} batches failed (> budget {ac.batch_failure_budget:.0%}); nothing published. "
            f"First: {batch_table.loc[batch_table['status'] == FAILED, 'status_reason'].iloc[0]}"
        )
    plot = _plot(ctx, results, keys)
    if plot:
        ctx.artifact_files[f"plots/{Path(plot).name}"] = plot

    rides, batches = outputs(ctx, results, keys)
    for name, frame in ((ANOMALIES, rides), (BATCHES, batches), (QUARANTINE, quarantined)):
        summary.outputs[name] = TableOutput(frame)
    summary.cached.extend([results, quarantined])  # released once published
    return summary
