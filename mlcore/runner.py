"""The job runner behind every ``jobs/<job>.py`` and ``python -m mlcore run <job>``.

It parses the standard flags, loads config, gets Spark, opens the MLflow run, calls the job's
pipeline and turns the outcome into an exit code: 0 on success, 1 when the job failed (with a
one-line reason), 2 for bad arguments or config.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import logging
import re
import sys
import time
from collections.abc import Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from mlcore.config.loader import ConfigError, config_as_flat_dict, load_config
from mlcore.errors import MlcoreError
from mlcore.job_catalog import JOBS, declared_io_lines, missing_input, outputs_published
from mlcore.pipelines.context import JobContext, JobFailed, JobRequest, JobResult, JobSummary

if TYPE_CHECKING:
    from mlcore.io.delta import DeltaTables

log = logging.getLogger("mlcore.runner")


_RUN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


def parse_run_date(text: str) -> date:
    """``YYYY-MM-DD`` only: Python's ``fromisoformat`` also takes ``20150614`` and week dates,
    which the error message and every table's ``run_date`` would not show the same way."""
    try:
        if not _RUN_DATE.match(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid run date {text!r}: expected YYYY-MM-DD"
        ) from None


def build_parser(job: str) -> argparse.ArgumentParser:
    spec = JOBS[job]
    parser = argparse.ArgumentParser(
        prog=job,
        description=spec.summary,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(
            [*declared_io_lines(spec), f"Example: python jobs/{job}.py --env local --run-date 2015-06-14"]
        ),
    )
    parser.add_argument("--env", help="config env (default: $MLCORE_ENV, else 'local')")
    parser.add_argument("--conf-dir", help="config folder (default: ./conf)")
    parser.add_argument(
        "--run-date",
        type=parse_run_date,
        default=None,
        help="as-of date YYYY-MM-DD (default: today, UTC); inputs strictly before it are used",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set ingest.bad_row_budget=0.05 (repeatable)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and compute, but write no outputs"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def _format_summary(job: str, ctx: JobContext, summary: JobSummary, wall: float) -> str:
    header = (
        f"== {job} run_date={ctx.run_date} env={ctx.config.env} "
        f"engine={ctx.tables.engine_name} run_id={ctx.run_id}"
        + (" (dry run)" if ctx.dry_run else "")
        + " =="
    )
    lines = list(summary.lines)
    for write in summary.writes:
        state = f"v{write.version}" + ("" if write.committed else " (unchanged: already written)")
        lines.append((f"table {write.table}", state))
    lines.append(("wall time", f"{wall:.1f} s"))
    width = max(len(label) for label, _ in lines)
    return "\n".join([header] + [f"  {label:<{width}}  {value}" for label, value in lines])


def run_job(job: str, argv: Sequence[str] | None = None) -> int:
    """Run one job from its command line; returns the process exit code."""
    from mlcore.logging_setup import setup_logging

    parser = build_parser(job)
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse already printed the usage error
        return int(exc.code or 0)
    setup_logging(args.log_level)
    run_date = args.run_date or datetime.now(timezone.utc).date()
    try:
        config = load_config(args.env, args.conf_dir, args.overrides)
    except ConfigError as exc:
        print(f"{job}: config error: {exc}", file=sys.stderr)
        return 2
    request = JobRequest(job, config, run_date, tuple(args.overrides), args.dry_run)
    return execute(request).exit_code


def execute(request: JobRequest) -> JobResult:
    """Run one job with its config already loaded: check inputs, start Spark, open the MLflow
    run, call the pipeline, record the outcome. The nightly chain calls this for each step."""
    job, config, run_date = request.job, request.config, request.run_date
    # The job's first line says where its tables and runs are (MLCORE_HOME never depends on the
    # current directory, but a user should not have to guess which one it is).
    print(
        f"{job}: run date {run_date}, env {config.env}, MLCORE_HOME {config.mlcore_home}",
        flush=True,
    )
    missing = missing_input(job, config)  # before Spark starts: seconds, not half a minute
    if missing is not None:
        print(f"{job}: FAILED: {missing}", file=sys.stderr)
        return JobResult(1, reason=missing)
    from mlcore.logging_setup import redact
    from mlcore.tracking.runs import (
        TrackingUnavailable,
        apply_client_settings,
        check_tracking_server,
        published_config_diff,
        safe_params,
    )

    apply_client_settings(config)  # before MLflow is imported: telemetry, bounded HTTP retries
    try:
        check_tracking_server(config)
    except TrackingUnavailable as exc:
        print(f"{job}: FAILED: {redact(exc)}", file=sys.stderr)
        return JobResult(1, error=exc, reason=str(exc))
    params = safe_params(config_as_flat_dict(_public_config(config)))
    # Only where a rerun would publish nothing (its outputs hold this run date's token, or it
    # declares none and MLflow says it finished): writing elsewhere is a new publication.
    differs = []
    if not request.dry_run and outputs_published(job, config, run_date) is not False:
        differs = published_config_diff(config, job, run_date, params)
    if differs:  # a rerun must not silently keep what another config published
        shown = "; ".join(
            f"{key}: {old or 'null'} -> {new or 'null'}" for key, old, new in differs[:5]
        )
        more = f" (+{len(differs) - 5} more)" if len(differs) > 5 else ""
        revision = config.run.revision
        reason = (
            f"run date {run_date} (revision {revision}) was already "
            f"published with another config: {shown}{more}; to republish with this config add "
            f"--set run.revision={revision + 1}"
        )
        print(f"{job}: config error: {reason}", file=sys.stderr)
        return JobResult(2, reason=reason)
    from mlcore.io import DeltaTables
    from mlcore.spark import get_spark
    from mlcore.tracking import job_run
    from mlcore.tracking.runs import TAG_DRY_RUN, TAG_ENGINE, warm_tracking_store

    warmup = warm_tracking_store(config)  # overlaps the Spark session's start
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).replace(tzinfo=None)
    ctx: JobContext | None = None
    tables: DeltaTables | None = None
    try:
        spark = get_spark(config.spark, job)
        tables = DeltaTables(spark, config)
        if warmup is not None:
            warmup.join()
        with job_run(config, job, run_date) as run:
            tables.commit_metadata.update(
                {
                    "mlcore.job": job,
                    "mlcore.env": config.env,
                    "mlcore.run_id": run.run_id,
                    "mlcore.run_date": run_date.isoformat(),
                }
            )
            run.set_tags({TAG_ENGINE: tables.engine_name, TAG_DRY_RUN: request.dry_run})
            run.log_params(params)
            ctx = JobContext(
                job=job,
                config=config,
                spark=spark,
                tables=tables,
                run_date=run_date,
                run_id=run.run_id,
                dry_run=request.dry_run,
                overrides=request.overrides,
                pipeline_run_id=request.pipeline_run_id,
                blocked=request.blocked,
                run_step=execute,
                run_part=functools.partial(run_stage, tables=tables),
            )
            try:
                summary = run_stage(ctx, tables)
            except JobFailed:
                # A budget or gate failure's report (e.g. failures.csv) is what explains it.
                _log_artifacts(run, ctx)
                raise
            wall = time.perf_counter() - started
            summary.writes = summary.writes or list(tables.writes)
            _record(ctx, tables, summary, "succeeded", started_at, None, strict=True)
            run.set_tags({f"mlcore.input.{k}.version": v for k, v in tables.read_versions.items()})
            run.set_tags({f"mlcore.output.{w.table}.version": w.version for w in summary.writes})
            run.log_metrics({**summary.metrics, "job_wall_seconds": wall})
            run.log_text(
                yaml.safe_dump(_public_config(config), sort_keys=False), "config/resolved.yml"
            )
            _log_artifacts(run, ctx)
    except MlcoreError as exc:  # expected (a gate, a missing table, a conflict): one line
        reported = getattr(exc, "summary", None)
        if reported is not None and ctx is not None:  # e.g. the chain's table of step outcomes
            print(_format_summary(job, ctx, reported, time.perf_counter() - started))
        code = _failed(job, ctx, tables, started_at, str(exc), exc.exit_code, reported)
        return JobResult(code, reported, exc, str(exc))
    except Exception as exc:  # noqa: BLE001 - the job's exit code is the contract
        failing = _tracking_server_failure(exc)
        if failing is not None:  # an expected outage, not a bug: one line, no traceback
            committed = sorted({w.table for w in tables.writes if w.committed}) if tables else []
            outcome = (
                f"outputs committed: {', '.join(committed)}; a rerun for this run date finishes "
                "the tracking"
                if committed
                else "nothing was published"
            )
            line = f"MLflow tracking server failed during the job ({failing}); {outcome}"
            return JobResult(_failed(job, ctx, tables, started_at, line), reason=line)
        log.exception("%s crashed (a bug in mlcore or a library, not an expected error)", job)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = f"{type(exc).__name__}: {first[:500]}"
        _record(ctx, tables, None, "failed", started_at, reason, strict=False)
        print(f"{job}: FAILED: {redact(reason)}", file=sys.stderr)
        return JobResult(1, reason=reason)
    finally:
        if warmup is not None:
            warmup.join()  # never exit while the store's schema is being created
    print(_format_summary(job, ctx, summary, wall))
    return JobResult(0, summary)


def run_stage(ctx: JobContext, tables: DeltaTables) -> JobSummary:
    """The job's stage, then the publication of the tables it returned (with ``tables``, the
    writer the stage never sees) and the registration of the models it proposed: the only path
    by which a job writes tables or registry versions."""
    from mlcore.pipelines._models import register_candidates
    from mlcore.pipelines._publish import publish_outputs

    stage = importlib.import_module(JOBS[ctx.job].module).run
    summary: JobSummary = stage(ctx)
    publish_outputs(ctx, tables, summary)
    register_candidates(ctx, summary)
    return summary


def _failed(
    job: str,
    ctx: JobContext | None,
    tables: DeltaTables | None,
    started_at: datetime,
    reason: str,
    exit_code: int = 1,
    summary: JobSummary | None = None,
) -> int:
    """An expected failure: one log line (redacted by the log formatter), the run_manifest row
    (with what the job reported before it stopped, if anything), one FAILED line on stderr; the
    error's exit code (1: runtime)."""
    from mlcore.logging_setup import redact

    log.error("%s failed: %s", job, reason)
    _record(ctx, tables, summary, "failed", started_at, reason, strict=False)
    print(f"{job}: FAILED: {redact(reason)}", file=sys.stderr)
    return exit_code


def _tracking_server_failure(exc: BaseException) -> str | None:
    """A short reason when ``exc`` is a remote tracking server failing (unreachable, timing out,
    answering 5xx after MLflow's bounded retries), else None. Client errors (4xx) are not: they
    point at a bug or a bad setting, and keep their traceback."""
    import re

    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).strip()
        if isinstance(current, MlflowException) and "API request to" in text:
            if "failed with exception" in text or "timeout exception" in text:
                cause = re.search(r"Caused by (\w+\(.*?)(?:\)\)|$)", text)
                return (cause.group(1) + ")" if cause else text.splitlines()[0])[:300]
            if re.search(r"error code 5\d\d", text):
                return text.splitlines()[0][:300]
        current = current.__cause__ or current.__context__
    return None


def artifact_folder(artifact: str, path: str) -> str | None:
    """The MLflow folder for a file logged as ``artifact`` (``plots/roc_curve.png``): MLflow
    appends the file's own name, so the folder is the artifact path without it (logging under
    the full path stored ``plots/roc_curve.png/roc_curve.png``, which the UI cannot preview)."""
    folder, _, name = artifact.rpartition("/")
    if name != Path(path).name:
        raise ValueError(f"artifact {artifact!r} must end with its file's name {Path(path).name!r}")
    return folder or None


def _log_artifacts(run, ctx: JobContext) -> None:
    for name, text in ctx.artifacts.items():
        run.log_text(text, name)
    for artifact, path in ctx.artifact_files.items():
        run.log_artifact(path, artifact_folder(artifact, path))


def _record(
    ctx: JobContext | None,
    tables: DeltaTables | None,
    summary: JobSummary | None,
    status: str,
    started_at: datetime,
    message: str | None,
    strict: bool,
) -> None:
    """Write validation results and the run_manifest row (dry runs write neither).

    After a failure (``strict`` false) a recording error is logged, never raised, so that it
    cannot hide the job's own error.
    """
    if ctx is None or tables is None or ctx.dry_run:
        return
    from mlcore.pipelines._manifest import manifest_row, record_run
    from mlcore.pipelines._validation import record_results
    from mlcore.tracking.runs import git_sha

    try:
        record_results(ctx, tables, job_succeeded=status == "succeeded")
        finished_at = datetime.now(timezone.utc).replace(tzinfo=None)
        row = manifest_row(
            ctx, summary, status, started_at, finished_at, message, git_sha(), tables
        )
        record_run(ctx, tables, row)
        if strict:  # a succeeded run: what killed attempts left in its tables goes now
            from mlcore.pipelines._manifest import MANIFEST
            from mlcore.pipelines._validation import QUARANTINE, RESULTS

            written = {w.table for w in (summary.writes if summary else [])}
            try:
                tables.sweep_dead_writers(written | {RESULTS, QUARANTINE, MANIFEST})
            except OSError as exc:  # cleanup only: the next write to the table sweeps again
                log.warning("could not remove dead writers' files: %s", exc)
    except Exception as exc:
        if strict:
            raise JobFailed(
                f"outputs are committed but recording validation/run_manifest failed "
                f"({type(exc).__name__}: {exc}); rerun the job to record them"
            ) from exc
        log.exception("could not record validation results / run_manifest for a failed run")


def _public_config(config) -> dict:
    """The resolved config as plain data (for params and the resolved-config artifact)."""
    return dataclasses.asdict(config)
