"""score_classifier: score a Delta table with the champion classifier -> ``bank_scores``.

The model is the version the ``champion`` alias points at (or ``classification.score_version``).
Its skops file is loaded with mlcore's own type allow-list (pickle models are refused), and the
input table is checked against the feature spec stored with the model before anything runs: a
missing alias, a missing or mistyped column fails with every problem listed and writes nothing.
Scoring is an Arrow transform (``mapInArrow``) with the model loaded once per Python worker; the
output (row key, probability, label at the stored threshold, model name/version, run id, run
date, scored time) replaces this run date's partition in one commit, so reruns are idempotent.
The transform goes to the write itself: on the delta-rs engine the scoring tasks write the score
files and the driver commits them (one pass over the data), and the rows and positives reported
come from that write's own counts rather than from reading the table back.

On delta-rs the rows normally bypass the JVM entirely (``classification.direct_scan``): the input
table version that was validated is scanned by the Python workers themselves (``mlcore.io.scan``:
Parquet slices balanced over the Spark partitions), ``row_key`` is Spark's ``xxhash64`` computed in
numpy, and each task reads, scores and writes its slices. That needs row-key columns numpy can
hash like Spark (integral, boolean, date, timestamp: e.g. ``key_columns: [client_id]``) and a
validation that dropped no rows; otherwise (string or no key columns, quarantined rows, native
Delta, dry runs) the rows come from the Spark read as before. Both paths write identical output;
the log says which one ran and why.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from mlcore.classification.features import FeatureSpec, check_spark_columns
from mlcore.classification.scoring import (
    row_key_columns,
    scan_columns,
    scan_scoring,
    scoring,
    unhashable_in_python,
)
from mlcore.pipelines._models import resolve_for_scoring
from mlcore.pipelines._validation import check_inputs
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary, TableOutput

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from mlcore.io.transform import ArrowTransform

log = logging.getLogger(__name__)

BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


def run(ctx: JobContext) -> JobSummary:
    from pyspark.sql.types import DateType, DoubleType, IntegerType, StringType, TimestampType

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
    read = ctx.tables.read(cc.score_table)
    source = check_inputs(ctx, {cc.score_table: read})[cc.score_table]
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

    scored_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    direct = direct_scoring(ctx, read, source, data, spec, threshold)
    if direct is not None:
        rows_in, scored = direct
    else:
        scores = scoring(source, data, spec, threshold, cc.key_columns)
        rows_in, scored = scores.input, scores.transform
    transform = scored.with_constants(
        {
            "model_name": (cc.model_name, StringType()),
            "model_version": (int(version), IntegerType()),
            "threshold": (threshold, DoubleType()),
            "run_id": (ctx.run_id, StringType()),
            "run_date": (ctx.run_date, DateType()),
            "scored_at": (scored_at, TimestampType()),
        }
    )
    summary.outputs[cc.output_table] = TableOutput(
        rows_in,
        transform=transform,
        totals=("label",),
        rows_line=("rows scored", "rows_scored"),
        total_lines={"label": ("predicted positive", "rows_positive")},
        progress="scoring and writing",  # one pass: progress in the write's tasks
        spark_conf={BATCH_CONF: str(cc.score_batch_rows)},
    )
    summary.metrics["model_version"] = float(version)
    return summary


def direct_scoring(
    ctx: JobContext,
    read: DataFrame,
    source: DataFrame,
    model_bytes: bytes,
    spec: FeatureSpec,
    threshold: float,
) -> tuple[DataFrame, ArrowTransform] | None:
    """(slices, scoring transform of the slices) for a direct scan of the validated table
    version, or None (logged with the reason) when the Spark read must be used."""
    cc = ctx.config.classification
    table = cc.score_table
    if not cc.direct_scan:
        log.info("scoring %s via the Spark read: classification.direct_scan is false", table)
        return None
    if ctx.dry_run:
        log.info("scoring %s via the Spark read: dry run", table)
        return None
    if source is not read:
        log.info("scoring %s via the Spark read: validation set rows aside", table)
        return None
    hashed = row_key_columns(source.columns, cc.key_columns, spec.label)
    unhashable = unhashable_in_python(source.schema, hashed)
    if unhashable:
        log.info(
            "scoring %s via the Spark read: row_key hashes %s, which only Spark's xxhash64 "
            "hashes (key_columns %s)",
            table, ", ".join(unhashable), list(cc.key_columns) or "not set: every input column",
        )  # fmt: skip
        return None
    scan = ctx.tables.scan(
        table,
        scan_columns(spec, cc.key_columns, hashed),
        version=ctx.tables.read_versions.get(table),  # exactly the version validated
        batch_rows=cc.score_batch_rows,
    )
    if scan is None:
        log.info("scoring %s via the Spark read: no direct scan of the table (see above)", table)
        return None
    transform = scan_scoring(
        scan, source.schema, model_bytes, spec, threshold, cc.key_columns, hashed
    )
    log.info(
        "scoring %s v%s via a direct Arrow scan: %d rows in %d slices over %d partitions",
        table, scan.version, scan.rows, sum(len(g) for g in scan.plan), scan.partitions,
    )  # fmt: skip
    return scan.slices, transform
