"""score_batch: the classifier and the anomaly model score concurrently in one Spark application.

Each scorer runs its own stage (``score_classifier``, ``score_anomalies``), and the runner's
publication of its outputs, in its own thread and fair-scheduler pool, so their Spark jobs share the executors instead of queueing. Each output
is committed atomically on its own, with the same idempotency token as the standalone job (a
date already scored by either entry point is not scored again). When one scorer fails the other
still finishes and commits; the job then fails with every scorer's error listed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

from mlcore.job_catalog import step_inputs, step_outputs
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary, why_blocked
from mlcore.spark_classic import set_local_property

log = logging.getLogger(__name__)

SCORERS: dict[str, str] = {"classifier": "score_classifier", "anomaly": "score_anomalies"}
POOL_PROPERTY = "spark.scheduler.pool"


@dataclasses.dataclass
class Outcome:
    scorer: str
    seconds: float = 0.0
    summary: JobSummary | None = None
    error: str | None = None


def _run_one(ctx: JobContext, scorer: str, pool: bool) -> Outcome:
    job = SCORERS[scorer]
    outcome = Outcome(scorer)
    started = time.perf_counter()
    if pool:
        set_local_property(ctx.spark, POOL_PROPERTY, scorer)
    try:
        if ctx.run_part is None:
            raise RuntimeError("score_batch runs its scorers through the runner (ctx.run_part)")
        # The part's stage and the runner's publication of its outputs, in this thread: each
        # scorer's write (its scoring pass) runs concurrently with the other's.
        outcome.summary = ctx.run_part(
            dataclasses.replace(ctx, job=job, artifacts={}, artifact_files={})
        )
    except JobFailed as exc:
        outcome.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - one scorer's crash must not lose the other's output
        log.exception("scorer %s crashed", scorer)
        outcome.error = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[
                :500
            ]
        )
    finally:
        if pool:
            set_local_property(ctx.spark, POOL_PROPERTY, None)
    outcome.seconds = time.perf_counter() - started
    return outcome


def run_scorers(ctx: JobContext, scorers: Sequence[str], parallel: bool) -> list[Outcome]:
    if not parallel:
        return [_run_one(ctx, s, pool=False) for s in scorers]
    from pyspark import InheritableThread

    outcomes: dict[str, Outcome] = {}

    def target(scorer: str) -> None:
        outcomes[scorer] = _run_one(ctx, scorer, pool=True)

    threads = [
        # session=: over Spark Connect the thread carries the session (and its job tags)
        InheritableThread(target=target, args=(s,), name=f"score_batch-{s}", session=ctx.spark)
        for s in scorers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [
        outcomes.get(s, Outcome(s, error="scorer thread ended without a result")) for s in scorers
    ]


def run(ctx: JobContext) -> JobSummary:
    sb = ctx.config.score_batch
    scorers = list(dict.fromkeys(sb.scorers))
    if not scorers:
        raise JobFailed("score_batch.scorers is empty")
    summary = JobSummary()
    # In the nightly chain, a scorer whose input or model an earlier step failed to produce
    # tonight is not run (it would score stale data under tonight's token); the other still is.
    held_back = {}
    for scorer in scorers:
        missing = step_inputs(SCORERS[scorer], ctx.config) & set(ctx.blocked)
        if missing:
            reason = why_blocked({a: ctx.blocked[a] for a in missing})
            held_back[scorer] = Outcome(scorer, error=f"not run: {reason}")
    runnable = [s for s in scorers if s not in held_back]
    started = time.perf_counter()
    ran = run_scorers(ctx, runnable, sb.mode == "parallel" and len(runnable) > 1)
    wall = time.perf_counter() - started
    by_scorer = {o.scorer: o for o in [*ran, *held_back.values()]}
    outcomes = [by_scorer[s] for s in scorers]
    summary.add("mode", f"{sb.mode} ({', '.join(scorers)})")
    for outcome in outcomes:
        state = "FAILED: " + outcome.error if outcome.error else "ok"
        summary.add(f"{outcome.scorer}", f"{state} ({outcome.seconds:.1f} s)")
        summary.metrics[f"{outcome.scorer}_seconds"] = outcome.seconds
        summary.metrics[f"{outcome.scorer}_failed"] = 1.0 if outcome.error else 0.0
        if outcome.summary is not None:
            summary.writes.extend(outcome.summary.writes)
            for model in outcome.summary.models:
                summary.use_model(**model)
            summary.gates.update(outcome.summary.gates)
            for label, value in outcome.summary.lines:
                summary.lines.append((f"  {outcome.scorer}: {label}", value))
            summary.metrics.update(
                {f"{outcome.scorer}_{k}": v for k, v in outcome.summary.metrics.items()}
            )
    summary.metrics["scorers_seconds_sum"] = sum(o.seconds for o in outcomes)
    summary.metrics["scoring_wall_seconds"] = wall
    summary.add(
        "scoring wall / sum of scorer times",
        f"{wall:.1f} s / {summary.metrics['scorers_seconds_sum']:.1f} s",
    )
    failed = [o for o in outcomes if o.error]
    if failed:
        committed = [w.table for w in summary.writes]
        affected = {a for o in failed for a in step_outputs(SCORERS[o.scorer], ctx.config)}
        raise JobFailed(
            "; ".join(f"{o.scorer} failed: {o.error}" for o in failed)
            + (
                f" (committed anyway: {', '.join(committed)})"
                if committed
                else " (nothing committed)"
            ),
            affects=sorted(affected),
        )
    return summary
