"""score_anomalies: the champion anomaly model scores the run's rides -> ``ride_anomaly_scores``.

A run for date D scores the ``anomaly.batch_days`` days before D. Rides whose features would be
meaningless go to ``ride_anomaly_scores_quarantine`` with rule and reason. The model (alias
``anomaly.score_alias`` or ``anomaly.score_version``) is loaded with mlcore's skops allow-list
before any work; scores and flags (score > the model's stored threshold) replace this run date's
partition in one commit, so reruns are idempotent.
"""

from __future__ import annotations

import datetime as dt
import logging

from mlcore.anomaly.features import check_feature_names
from mlcore.anomaly.scoring import score_rides
from mlcore.pipelines._models import resolve_for_scoring
from mlcore.pipelines._rides import PASSTHROUGH, batch_keys, days_before, read_rides, split_usable
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary, TableOutput

log = logging.getLogger(__name__)

SCORES, QUARANTINE = "ride_anomaly_scores", "ride_anomaly_scores_quarantine"


def run(ctx: JobContext) -> JobSummary:
    from pyspark.sql import functions as F

    ac = ctx.config.anomaly
    summary = JobSummary()
    tokens = {name: ctx.token(name) for name in (SCORES, QUARANTINE)}
    if not ctx.dry_run and all(ctx.tables.already_written(n, t) for n, t in tokens.items()):
        summary.add("status", "already scored for this run date: nothing to do")
        return summary

    registered = resolve_for_scoring(ctx, ac.model_name, ac.score_alias, ac.score_version)
    names = [str(n) for n in registered.info["features"]]
    threshold = float(registered.info["threshold"])
    summary.add("model", f"{ac.model_name} v{registered.version} (threshold {threshold:.4f})")
    summary.use_model(ac.model_name, registered.version, "used", registered.run_id)
    days = days_before(ctx.run_date, ac.batch_days)
    configured = ctx.config.anomaly.features
    if sorted(names) != sorted(configured):
        log.warning(
            "model features %s differ from anomaly.features %s: the model's are used",
            names,
            configured,
        )
    try:
        check_feature_names(names)
    except ValueError as exc:
        raise JobFailed(f"{ac.model_name} v{registered.version}: {exc}") from None
    usable, quarantined = split_usable(ctx, read_rides(ctx, days), names)

    keys = batch_keys(ctx)
    features = usable.select(
        "row_key", "pickup_ts_us", *dict.fromkeys([*keys, *PASSTHROUGH]), *names
    )
    scored_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    scores = score_rides(features, registered.data, names, threshold).select(
        "row_key",
        *dict.fromkeys([*keys, *PASSTHROUGH]),
        *names,
        "anomaly_score",
        "is_anomaly",
        F.lit(ac.model_name).alias("model_name"),
        F.lit(int(registered.version)).alias("model_version"),
        F.lit(threshold).alias("threshold"),
        *ctx.run_columns(),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
    )
    summary.outputs[SCORES] = TableOutput(
        scores,
        rows_line=("rides scored", "rows_scored"),
        total_lines={"is_anomaly": ("rides flagged", "rows_flagged")},
        progress="scoring and writing",  # the write is the scoring pass: progress in its tasks
    )
    summary.outputs[QUARANTINE] = TableOutput(
        quarantined, rows_line=("rides quarantined", "rides_quarantined")
    )
    summary.metrics["model_version"] = float(registered.version)
    return summary
