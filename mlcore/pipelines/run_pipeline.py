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

The chain is a DAG derived from what each job declares it reads and writes
(``mlcore.job_catalog``): a step depends on the earlier steps that write a table or register a
model it reads. Steps run in this process, one after another, through the runner the chain was
given (typed requests: the loaded config and run date, no argv, no environment). A failed step
holds back only the steps that need what it did not produce (``blocked``, with the reason);
independent workloads still run (rides with no data for the date does not stop the forecasts).
Steps that work on part of their inputs (``validate_inputs``, ``monitor_drift``, ``score_batch``)
run on the good part and leave the rest out, saying so. When anything failed or was held back,
the chain ends with exit 1 and one line naming each.

Rerunning the same run date resumes: steps whose run_manifest row for this run date and
revision says ``succeeded`` are not run again. ``--dry-run`` prints the plan (what would run,
after which steps, what would be skipped and why).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from mlcore.config.loader import ConfigError, load_config
from mlcore.config.models import MlcoreConfig
from mlcore.job_catalog import JOBS, step_inputs, step_needs, step_outputs
from mlcore.pipelines._manifest import MANIFEST
from mlcore.pipelines.context import (
    JobContext,
    JobFailed,
    JobRequest,
    JobResult,
    JobSummary,
    why_blocked,
)
from mlcore.pipelines.monitor_drift import OUTPUT as DRIFT_METRICS
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


@dataclass(frozen=True)
class StepNode:
    """One step of the chain: what it reads, and the earlier steps that write any of it."""

    step: str
    inputs: frozenset[str]
    after: tuple[str, ...]


def policy_inputs(step: str, config: MlcoreConfig) -> set[str]:
    """What the chain's own retrain policy reads before it runs ``step`` (drift flags)."""
    if step in GATED_TRAINING and config.pipeline.retrain_on_drift:
        return {DRIFT_METRICS}
    return set()


def chain_graph(steps: Sequence[str], config: MlcoreConfig) -> list[StepNode]:
    """The chain as a DAG in the configured order. A table or model a step must have
    (``requires``, ``serves``) that only a later step writes is a config error: the step would
    silently use the previous run's."""
    writers: dict[str, list[str]] = {}  # artifact -> steps that write (or gate) it
    producers: dict[str, list[str]] = {}  # artifact -> steps that write it
    for step in steps:
        for artifact in step_outputs(step, config):
            producers.setdefault(artifact, []).append(step)
            writers.setdefault(artifact, []).append(step)
        for artifact in step_inputs(step, config) if JOBS[step].gate else ():
            writers.setdefault(artifact, []).append(step)
    nodes: list[StepNode] = []
    for position, step in enumerate(steps):
        inputs = step_inputs(step, config) | policy_inputs(step, config)
        earlier = set(steps[:position])
        after = {w for artifact in inputs for w in writers.get(artifact, ()) if w in earlier}
        for artifact in sorted(step_needs(step, config)):
            later = [w for w in producers.get(artifact, ()) if w not in earlier and w != step]
            if later and not any(w in earlier for w in producers[artifact]):
                raise ConfigError(
                    f"pipeline.steps: {step} needs {artifact}, which {later[0]} writes later in "
                    f"the chain; list {later[0]} before {step}"
                )
        nodes.append(StepNode(step, frozenset(inputs), tuple(s for s in steps if s in after)))
    return nodes


def _step_config(ctx: JobContext, plan: StepPlan) -> MlcoreConfig:
    """The chain's config, with the plan's extra settings where it has any."""
    if not plan.overrides:
        return ctx.config
    return load_config(ctx.config.env, ctx.config.conf_dir, [*ctx.overrides, *plan.overrides])



def _failed_artifacts(step: str, config: MlcoreConfig, result: JobResult) -> tuple[str, ...]:
    """What a failed step leaves unusable tonight: the tables its error is confined to (a gate
    that failed for some inputs), else everything it writes or registers."""
    error = result.error
    if isinstance(error, JobFailed) and error.affects is not None:
        return error.affects
    return tuple(sorted(step_outputs(step, config)))


def run(ctx: JobContext) -> JobSummary:
    pc = ctx.config.pipeline
    steps = list(dict.fromkeys(pc.steps))
    if not steps:
        raise JobFailed("pipeline.steps is empty")
    if ctx.run_step is None:
        raise JobFailed("run_pipeline needs the runner's step executor (run it as a job)")
    graph = chain_graph(steps, ctx.config)
    summary = JobSummary()
    done = finished_steps(ctx)
    unusable: dict[str, str] = {}  # table or model -> why tonight's is missing
    failed: list[str] = []
    blocked: list[str] = []
    ran = skipped = 0
    for node in graph:
        step = node.step
        after = f" after {', '.join(node.after)}" if node.after else ""
        if step in done:
            summary.add(step, "already succeeded for this run date: not rerun (resume)")
            summary.gates[f"step:{step}"] = "resumed: already succeeded"
            continue
        blocking = {a: unusable[a] for a in node.inputs if a in unusable}
        if blocking and (not JOBS[step].partial or set(blocking) >= node.inputs):
            why = why_blocked(blocking)
            for artifact in step_outputs(step, ctx.config):
                unusable.setdefault(artifact, f"{step} did not run")
            summary.add(step, f"blocked: {why}")
            summary.gates[f"step:{step}"] = f"blocked: {why}"
            log.warning("run_pipeline %s: %s blocked: %s", ctx.run_date, step, why)
            blocked.append(step)
            continue
        plan = plan_step(ctx, step)
        if not plan.run:
            summary.add(step, f"skipped: {plan.reason}")
            summary.gates[f"step:{step}"] = f"skipped: {plan.reason}"
            skipped += 1
            continue
        if ctx.dry_run:
            left_out = f"; leaves out {', '.join(sorted(blocking))}" if blocking else ""
            summary.add(step, f"would run{after}: {plan.reason}{left_out}")
            continue
        log.info("run_pipeline %s: %s (%s)", ctx.run_date, step, plan.reason)
        try:
            request = JobRequest(
                step, _step_config(ctx, plan), ctx.run_date, (*ctx.overrides, *plan.overrides),
                pipeline_run_id=ctx.run_id, blocked=blocking,
            )  # fmt: skip
            result = ctx.run_step(request)
        except ConfigError as exc:  # the plan's settings do not load: that step fails alone
            result = JobResult(2, error=exc, reason=str(exc))
        if not result.succeeded:
            reason = (result.reason or "see its log").splitlines()[0][:300]
            for artifact in _failed_artifacts(step, ctx.config, result):  # first cause kept
                unusable.setdefault(artifact, f"{step} failed")
            summary.add(step, f"FAILED (exit {result.exit_code}): {reason}")
            summary.gates[f"step:{step}"] = f"failed (exit {result.exit_code})"
            failed.append(step)
            continue
        left_out = f"; left out {', '.join(sorted(blocking))}" if blocking else ""
        summary.gates[f"step:{step}"] = f"succeeded: {plan.reason}{left_out}"
        summary.add(step, f"succeeded ({plan.reason}){left_out}")
        ran += 1
    summary.metrics.update(
        {
            "steps_run": float(ran),
            "steps_skipped": float(skipped),
            "steps_resumed": float(len(done & set(steps))),
            "steps_failed": float(len(failed)),
            "steps_blocked": float(len(blocked)),
        }
    )
    if failed or blocked:
        parts = [f"step {s} failed" for s in failed]
        if blocked:
            parts.append(f"blocked by them: {', '.join(blocked)}")
        raise JobFailed(
            f"{'; '.join(parts)}; {ran} other step(s) succeeded (their reasons are printed above "
            f"and in run_manifest). Fix it and rerun run_pipeline for {ctx.run_date} to resume "
            "from the failed steps",
            summary=summary,
        )
    return summary
