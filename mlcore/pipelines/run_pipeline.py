"""run_pipeline: the nightly chain for one run date, with gates, retraining only what needs it.

Each step is a job of its own (same flags, same config, its own MLflow run and run_manifest
row), run in this Spark application one after another. The chain:

1. ``ingest_*``: snapshots in, bad rows quarantined (a budget or freshness failure stops it);
2. ``validate_inputs``: the validation rules on every input table (gate);
3. ``monitor_drift``: drift of features, scores and per-store sales vs each champion's reference;
4. retrain what needs it:
   - ``train_forecasts`` runs with ``forecasting.only_needed`` once a champion exists: only new,
     restated, drifted or too-old groups are refitted, the others keep their model;
   - ``train_classifier`` / ``train_anomaly_model`` run only when there is no champion, the
     champion is older than ``pipeline.max_model_age_days``, or monitor_drift flagged its
     features for this run date (``pipeline.retrain_on_drift``); otherwise they are skipped
     with the reason;
   - promotion is each training job's own champion/challenger gate;
5. ``make_forecasts`` and ``score_batch`` with the champions.

A failed step stops the chain (exit 1, with the step's reason). Rerunning the same run date
resumes: steps whose run_manifest row for this run date and revision says ``succeeded`` are
not run again. ``--dry-run`` prints the plan (what would run, what would be skipped and why).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field

from mlcore.pipelines._manifest import MANIFEST, PIPELINE_RUN_ENV
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary
from mlcore.pipelines.monitor_drift import drift_flags

log = logging.getLogger(__name__)

# Training steps gated by the retrain policy: job -> (registered model, drift monitors).
GATED_TRAINING = {
    "train_classifier": ("classification", ("bank_features", "bank_scores")),
    "train_anomaly_model": ("anomaly", ("ride_features",)),
}


@dataclass(frozen=True)
class StepPlan:
    step: str
    run: bool
    reason: str
    overrides: list[str] = field(default_factory=list)


def finished_steps(ctx: JobContext) -> set[str]:
    """Steps that already succeeded for this run date and config revision (from run_manifest)."""
    if not ctx.tables.exists(MANIFEST):
        return set()
    from pyspark.sql import functions as F

    rows = (
        ctx.tables.read(MANIFEST, where={"run_date": ctx.run_date}, record_input=False)
        .where((F.col("status") == "succeeded") & (F.col("revision") == ctx.config.run.revision))
        .select("job")
        .distinct()
        .collect()
    )
    return {r["job"] for r in rows}


def champion_age_days(ctx: JobContext, model_name: str) -> tuple[int | None, str]:
    """Age in days of the champion's training run date (None when there is no champion)."""
    if not ctx.config.mlflow.enabled:
        return None, "MLflow disabled"
    from mlcore.tracking.registry import ModelRegistry
    from mlcore.tracking.runs import TAG_RUN_DATE

    registry = ModelRegistry()
    champion = registry.champion(model_name)
    if champion is None:
        return None, f"{model_name} has no champion"
    trained = registry.training_run_tag(champion, TAG_RUN_DATE)
    if trained is None:
        return None, f"{model_name} v{champion.version} has no training run date"
    return (ctx.run_date - dt.date.fromisoformat(trained)).days, f"{model_name} v{champion.version}"


def plan_step(ctx: JobContext, step: str) -> StepPlan:
    """Whether ``step`` runs tonight, why, and with which extra settings."""
    pc = ctx.config.pipeline
    if step == "train_forecasts":
        age, _ = champion_age_days(ctx, ctx.config.forecasting.model_name)
        if pc.incremental_forecasting and age is not None:
            return StepPlan(
                step, True, "incremental: only new, restated, drifted or old groups are refitted",
                ["forecasting.only_needed=true", f"forecasting.max_model_age_days={pc.max_model_age_days}"],
            )  # fmt: skip
        return StepPlan(step, True, "all groups (no champion yet or incremental_forecasting off)")
    if step in GATED_TRAINING:
        section, monitors = GATED_TRAINING[step]
        model_name = getattr(ctx.config, section).model_name
        age, what = champion_age_days(ctx, model_name)
        if age is None:
            return StepPlan(step, True, f"{what}: train")
        if age > pc.max_model_age_days:
            return StepPlan(
                step, True, f"{what} is {age} d old > max_model_age_days {pc.max_model_age_days}"
            )
        flags = drift_flags(ctx, list(monitors)) if pc.retrain_on_drift else None
        if flags is not None:
            drifted = [
                f"{r['monitor']}.{r['feature']}"
                for r in flags.select("monitor", "feature").distinct().collect()
            ]
            if drifted:
                shown = ", ".join(sorted(drifted)[:5])
                return StepPlan(step, True, f"drift flagged for {what}: {shown}")
        return StepPlan(
            step,
            False,
            f"{what} is {age} d old (<= {pc.max_model_age_days}) and no drift flagged for its inputs",
        )
    return StepPlan(step, True, "always runs")


def _step_argv(ctx: JobContext, plan: StepPlan) -> list[str]:
    argv = [
        "--env",
        ctx.config.env,
        "--conf-dir",
        ctx.config.conf_dir,
        "--run-date",
        ctx.run_date.isoformat(),
    ]
    for override in [*ctx.overrides, *plan.overrides]:
        argv += ["--set", override]
    return argv


def run(ctx: JobContext) -> JobSummary:
    from mlcore.runner import run_job

    pc = ctx.config.pipeline
    steps = list(dict.fromkeys(pc.steps))
    if not steps:
        raise JobFailed("pipeline.steps is empty")
    summary = JobSummary()
    done = finished_steps(ctx)
    previous_env = os.environ.get(PIPELINE_RUN_ENV)
    os.environ[PIPELINE_RUN_ENV] = ctx.run_id
    ran = skipped = 0
    try:
        for step in steps:
            if step in done:
                summary.add(step, "already succeeded for this run date: not rerun (resume)")
                summary.gates[f"step:{step}"] = "resumed: already succeeded"
                continue
            plan = plan_step(ctx, step)
            if not plan.run:
                summary.add(step, f"skipped: {plan.reason}")
                summary.gates[f"step:{step}"] = f"skipped: {plan.reason}"
                skipped += 1
                continue
            if ctx.dry_run:
                summary.add(step, f"would run: {plan.reason}")
                continue
            log.info("run_pipeline %s: %s (%s)", ctx.run_date, step, plan.reason)
            code = run_job(step, _step_argv(ctx, plan))
            if code != 0:
                summary.gates[f"step:{step}"] = f"failed (exit {code})"
                raise JobFailed(
                    f"step {step} failed (exit {code}; its reason is printed above and in run_manifest); "
                    f"chain stopped after {ran} step(s). Fix it and rerun run_pipeline for {ctx.run_date} "
                    "to resume from this step"
                )
            summary.gates[f"step:{step}"] = f"succeeded: {plan.reason}"
            summary.add(step, f"succeeded ({plan.reason})")
            ran += 1
    finally:
        if previous_env is None:
            os.environ.pop(PIPELINE_RUN_ENV, None)
        else:
            os.environ[PIPELINE_RUN_ENV] = previous_env
    summary.metrics.update(
        {
            "steps_run": float(ran),
            "steps_skipped": float(skipped),
            "steps_resumed": float(len(done & set(steps))),
        }
    )
    return summary
