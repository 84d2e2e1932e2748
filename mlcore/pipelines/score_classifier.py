"""score_classifier: score a Delta table with the champion classifier -> ``bank_scores``.

The model is the version the ``champion`` alias points at (or ``classification.score_version``).
Its skops file is loaded with mlcore's own type allow-list (pickle models are refused), and the
input table is checked against the feature spec stored with the model before anything runs: a
missing alias, a missing or mistyped column fails with every problem listed and writes nothing.
Scoring runs in ``mapInPandas`` with the model loaded once per Python worker; the output (row
key, probability, label at the stored threshold, model name/version, run id, run date, scored
time) replaces this run date's partition in one commit, so reruns are idempotent.
"""

from __future__ import annotations

import datetime as dt
import logging

from mlcore.classification.features import FeatureSpec, check_spark_columns
from mlcore.classification.scoring import score_frame
from mlcore.pipelines._models import resolve_for_scoring
from mlcore.pipelines._validation import check_inputs
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary

log = logging.getLogger(__name__)

BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


def run(ctx: JobContext) -> JobSummary:
    from pyspark.sql import functions as F

    cc = ctx.config.classification
    summary = JobSummary()
    token = ctx.token(cc.output_table)
    if not ctx.dry_run and ctx.tables.already_written(cc.output_table, token):
        summary.add("status", "already scored for this run date: nothing to do")
        return summary

    registered = resolve_for_scoring(ctx, cc.model_name, cc.score_alias, cc.score_version)
    version, data, info = registered.version, registered.data, registered.info
    spec = FeatureSpec.from_dict(info["features"])
    threshold = float(info["threshold"])
    source = check_inputs(ctx, {cc.score_table: ctx.tables.read(cc.score_table)})[cc.score_table]
    fields = {f.name: f.dataType.simpleString() for f in source.schema}
    problems = check_spark_columns(fields, spec)
    missing_keys = [c for c in cc.key_columns if c not in fields]
    if missing_keys:
        problems.append(f"missing key columns {missing_keys}")
    if problems:
        raise JobFailed(
            f"{cc.score_table} cannot be scored by {cc.model_name} v{version}: "
            + "; ".join(problems)
        )
    summary.add("model", f"{cc.model_name} v{version} (threshold {threshold:.4f})")
    summary.use_model(cc.model_name, version, "used", registered.run_id)

    scored_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    previous = ctx.spark.conf.get(BATCH_CONF, None)
    ctx.spark.conf.set(BATCH_CONF, str(cc.score_batch_rows))
    try:
        scores = score_frame(source, data, spec, threshold, cc.key_columns).select(
            "*",
            F.lit(cc.model_name).alias("model_name"),
            F.lit(int(version)).alias("model_version"),
            F.lit(threshold).alias("threshold"),
            F.lit(ctx.run_id).alias("run_id"),
            F.lit(ctx.run_date).alias("run_date"),
            F.lit(scored_at).cast("timestamp").alias("scored_at"),
        )
        if ctx.dry_run:
            counts = scores.agg(F.count("*"), F.sum("label")).first()
        else:
            result = ctx.tables.write(
                scores,
                cc.output_table,
                mode="replace_where",
                replace_where={"run_date": ctx.run_date},
                token=token,
            )
            summary.writes.append(result)
            written = ctx.tables.read(
                cc.output_table, version=result.version, where={"run_date": ctx.run_date}
            )
            counts = written.agg(F.count("*"), F.sum("label")).first()
    finally:
        if previous is None:
            ctx.spark.conf.unset(BATCH_CONF)
        else:
            ctx.spark.conf.set(BATCH_CONF, previous)
    rows, positives = int(counts[0]), int(counts[1] or 0)
    summary.add("rows scored", rows, metric="rows_scored")
    summary.add("predicted positive", positives, metric="rows_positive")
    summary.metrics["model_version"] = float(version)
    return summary
