"""``run_manifest``: one row per job run, enough to say which data and code produced an output.

Every output row carries its job's ``run_id``; the manifest row of that run id holds the input
table versions, the config hash, the code version, the model versions used or produced, the
gate outcomes, row counts and timings. Scoring runs list the training runs of the models they
used in ``upstream_run_ids``, so one self-join answers "which data and code produced this
forecast?" (see :data:`LINEAGE_SQL` and README "The nightly loop").

Rows are merged on ``run_id``: a job's reruns for the same run date share one MLflow run (and so
one run id), and the latest attempt's outcome replaces the earlier one. A replay that committed
nothing keeps the row of the attempt that did the work.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlcore._version import __version__
from mlcore.config.loader import config_as_flat_dict
from mlcore.io.frames import local_frame
from mlcore.pipelines._validation import QUARANTINE, RESULTS
from mlcore.validation.checks import DISABLED, TABLE

if TYPE_CHECKING:
    from mlcore.io.delta import DeltaTables
    from mlcore.pipelines.context import JobContext, JobSummary

log = logging.getLogger(__name__)

MANIFEST = "run_manifest"
MANIFEST_DDL = (
    "run_id string, run_date date, job string, env string, revision int, status string, pipeline_run_id string, "
    "started_at timestamp, finished_at timestamp, duration_seconds double, code_version string, "
    "git_sha string, config_hash string, delta_engine string, inputs string, outputs string, "
    "models string, upstream_run_ids array<string>, gates string, row_counts string, "
    "validation string, message string"
)

# The lineage question for forecasts, answered with one query (Spark SQL over the two tables).
LINEAGE_SQL = """
SELECT f.store, f.ds, f.yhat, f.model_version,
       m.run_id AS forecast_run_id, m.code_version, m.git_sha, m.config_hash, m.inputs AS forecast_inputs,
       t.run_id AS training_run_id, t.inputs AS training_inputs, t.code_version AS training_code_version,
       t.git_sha AS training_git_sha, t.config_hash AS training_config_hash, t.validation AS training_validation
FROM forecasts f
JOIN run_manifest m ON m.run_id = f.run_id
LEFT JOIN run_manifest t ON array_contains(m.upstream_run_ids, t.run_id)
"""


def config_hash(config: Any) -> str:
    """A stable hash of the resolved config (secrets-looking keys excluded), 16 hex chars."""
    from mlcore.tracking.runs import safe_params

    flat = safe_params(config_as_flat_dict(config))
    text = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _row_counts(summary: JobSummary | None) -> dict[str, float]:
    if summary is None:
        return {}
    return {
        k: v
        for k, v in sorted(summary.metrics.items())
        if "rows" in k or k.startswith("groups_") or k.endswith("_count")
    }


def _validation_state(ctx: JobContext) -> str:
    statuses = {rec.result.status for rec in ctx.validation if rec.result.rule == TABLE}
    if any(rec.result.rule == DISABLED for rec in ctx.validation):
        return "skipped"
    if "failed" in statuses:
        return "failed"
    return "passed" if statuses else "none"


def manifest_row(
    ctx: JobContext,
    summary: JobSummary | None,
    status: str,
    started_at: datetime,
    finished_at: datetime,
    message: str | None,
    git_sha: str | None,
    tables: DeltaTables,
) -> dict[str, Any]:
    """The run's row; its outputs are the summary's writes, else (a failed run) whatever the
    runner's ``tables`` committed before the failure."""
    writes = summary.writes if summary is not None and summary.writes else tables.writes
    outputs = {
        w.table: {"version": w.version, "rows": w.rows, "committed": w.committed} for w in writes
    }
    models = list(summary.models) if summary is not None else []
    gates: dict[str, str] = dict(summary.gates) if summary is not None else {}
    gates["validation"] = _validation_state(ctx)
    upstream = sorted({m["run_id"] for m in models if m.get("role") == "used" and m.get("run_id")})
    return {
        "run_id": ctx.run_id,
        "run_date": ctx.run_date,
        "job": ctx.job,
        "env": ctx.config.env,
        "revision": ctx.config.run.revision,
        "status": status,
        "pipeline_run_id": ctx.pipeline_run_id
        or (ctx.run_id if ctx.job == "run_pipeline" else None),
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_seconds": (finished_at - started_at).total_seconds(),
        "code_version": __version__,
        "git_sha": git_sha,
        "config_hash": config_hash(ctx.config),
        "delta_engine": ctx.tables.engine_name,
        "inputs": json.dumps(ctx.tables.read_versions, sort_keys=True),
        "outputs": json.dumps(outputs, sort_keys=True),
        "models": json.dumps(models, sort_keys=True),
        "upstream_run_ids": upstream,
        "gates": json.dumps(gates, sort_keys=True),
        "row_counts": json.dumps(_row_counts(summary), sort_keys=True),
        "validation": gates["validation"],
        "message": (message or "")[:2000] or None,
    }


def previous_status(ctx: JobContext) -> str | None:
    """The status recorded for this run id, if any."""
    if not ctx.tables.exists(MANIFEST):
        return None
    from pyspark.sql import functions as F

    row = (
        ctx.tables.read(MANIFEST, record_input=False)
        .where(F.col("run_id") == ctx.run_id)
        .select("status")
        .first()
    )
    return None if row is None else str(row["status"])


def record_run(ctx: JobContext, tables: DeltaTables, row: dict[str, Any]) -> None:
    """Merge this run's row on ``run_id`` (a no-op replay keeps the row of the run that worked);
    the runner's bookkeeping, with its writer ``tables``."""
    if ctx.dry_run:
        return
    bookkeeping = {MANIFEST, RESULTS, QUARANTINE}
    committed = any(w.committed for w in tables.writes if w.table not in bookkeeping)
    if row["status"] == "succeeded" and not committed and previous_status(ctx) == "succeeded":
        return
    frame = local_frame(ctx.spark, [row], MANIFEST_DDL)  # written from the driver, no tasks
    tables.merge(frame, MANIFEST, keys=["run_id"])
