"""How the runner publishes what a stage returns: the stage computes, this writes.

A stage (``mlcore.pipelines.<job>.run``) returns its outputs as :class:`TableOutput` values in
``JobSummary.outputs``; it never writes a table. The runner (``mlcore.runner``) then calls
:func:`publish_outputs`, the one place where a job's tables are written:

- only tables the job declares (``JobSpec.produces`` / ``may_produce``) may be returned;
- each is written in the stage's order with the job's declared ``write_mode`` (this run date's
  rows by replace-where, or a full snapshot) and the job's idempotency token for the table, so
  a replay after a kill commits nothing twice;
- the run columns (``run_id``, ``run_date``) are set here, from the run's own values;
- what was written is counted from the write itself (delta-rs counts while writing) or from the
  written version (native Delta), never by recomputing the frame; a dry run counts the frame and
  writes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from mlcore.io.engines import WriteResult
from mlcore.io.frames import aggregate_row
from mlcore.job_catalog import JOBS, published_tables
from mlcore.pipelines._progress import StageReporter
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary, TableOutput

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from mlcore.io.delta import DeltaTables
    from mlcore.io.predicates import Predicate


def publish_outputs(ctx: JobContext, tables: DeltaTables, summary: JobSummary) -> None:
    """Write ``summary.outputs`` with the runner's ``tables`` (the stage only had the read-only
    view ``ctx.tables``; nothing is written in a dry run), record the results in
    ``summary.writes`` and the counted lines in the summary, then release the stage's cached
    frames and collect the artifacts it was still rendering."""
    try:
        undeclared = sorted(set(summary.outputs) - set(published_tables(ctx.job, ctx.config)))
        if undeclared:  # a bug in the stage, not a user error: declared IO is the contract
            raise RuntimeError(
                f"{ctx.job} returned tables it does not declare: {', '.join(undeclared)} "
                "(add them to its JobSpec in mlcore.job_catalog)"
            )
        for name, output in summary.outputs.items():
            counted = output.rows_line is not None or bool(output.total_lines)
            if ctx.dry_run:
                if counted:
                    with _session_conf(ctx, output.spark_conf):
                        counts = _frame_counts(_written_frame(ctx, output), output)
                    _report_counts(summary, output, counts)
                continue
            result = _write(ctx, tables, name, output)
            summary.writes.append(result)
            _check_expected(name, output, result)
            if counted:
                _report_counts(summary, output, _written_counts(ctx, name, output, result))
    finally:
        for frame in summary.cached:
            frame.unpersist()
        summary.cached.clear()
        _collect_artifacts(ctx, summary)


def _written_frame(ctx: JobContext, output: TableOutput) -> DataFrame:
    """What the table receives: the frame with the run columns set (in place where the stage
    placed them), or the fused transform's output."""
    if output.transform is not None:
        return output.transform.apply(output.frame)
    from pyspark.sql import functions as F

    return output.frame.withColumns(
        {name: F.lit(value) for name, value in ctx.output_columns().items()}
    )


def _run_rows(ctx: JobContext) -> Predicate | None:
    """The rows this run publishes, by the job's write mode: its run date's (replace-where),
    or None for a snapshot (the whole table)."""
    return None if JOBS[ctx.job].write_mode == "snapshot" else {"run_date": ctx.run_date}


def _write(ctx: JobContext, tables: DeltaTables, name: str, output: TableOutput) -> WriteResult:
    options: dict[str, Any] = {"token": ctx.token(name), "merge_schema": output.merge_schema}
    if output.transform is not None:  # the write applies the transform itself (a fused write)
        frame = output.frame
        options.update(transform=output.transform, totals=output.totals)
    else:
        frame = _written_frame(ctx, output)
    rows = _run_rows(ctx)
    options.update(mode="overwrite" if rows is None else "replace_where", replace_where=rows)
    reporter = (
        StageReporter(ctx.spark, output.progress) if output.progress else contextlib.nullcontext()
    )
    with _session_conf(ctx, output.spark_conf), reporter:
        return tables.write(frame, name, **options)


def _check_expected(name: str, output: TableOutput, result: WriteResult) -> None:
    expected = output.expected_rows
    if expected is not None and result.committed and result.rows is not None:
        if result.rows != expected:
            raise JobFailed(
                f"{name}: wrote {result.rows:,} rows but validation counted {expected:,} "
                f"(table now at version {result.version})"
            )


def _frame_counts(frame: DataFrame, output: TableOutput) -> tuple[int, dict[str, float]]:
    from pyspark.sql import functions as F

    sums = [F.sum(F.col(c).cast("double")) for c in output.total_lines]  # flags count as 1
    row = aggregate_row(frame.agg(F.count("*"), *sums))
    return int(row[0]), {c: float(row[i + 1] or 0) for i, c in enumerate(output.total_lines)}


def _written_counts(
    ctx: JobContext, name: str, output: TableOutput, result: WriteResult
) -> tuple[int, dict[str, float]]:
    """Rows and totals of what the table now holds for this run: from the write when the engine
    counted them, else from the written version (this run's own output, not an input)."""
    totals = result.totals or {}
    if result.committed and result.rows is not None and all(c in totals for c in output.total_lines):
        return result.rows, {c: float(totals[c] or 0) for c in output.total_lines}
    written = ctx.tables.read(name, version=result.version, where=_run_rows(ctx), record_input=False)
    return _frame_counts(written, output)


def _report_counts(
    summary: JobSummary, output: TableOutput, counts: tuple[int, Mapping[str, float]]
) -> None:
    rows, totals = counts
    if output.rows_line is not None:
        label, metric = output.rows_line
        summary.add(label, rows, metric=metric)
    for column, (label, metric) in output.total_lines.items():
        summary.add(label, int(totals[column]), metric=metric)


@contextlib.contextmanager
def _session_conf(ctx: JobContext, settings: Mapping[str, str]) -> Iterator[None]:
    """Spark session settings for one write, restored afterwards."""
    previous = {key: ctx.spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        ctx.spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, earlier in previous.items():
            if earlier is None:
                ctx.spark.conf.unset(key)
            else:
                ctx.spark.conf.set(key, earlier)


def _collect_artifacts(ctx: JobContext, summary: JobSummary) -> None:
    """The artifacts a stage rendered on its own thread while the tables were written."""
    from pathlib import Path

    for artifact, text in summary.pending_text.items():
        ctx.artifacts[artifact] = text.result()
    for folder, drawn in summary.pending_files.items():
        path = drawn.result()
        if path:
            ctx.artifact_files[f"{folder}/{Path(path).name}"] = path
    summary.pending_text.clear()
    summary.pending_files.clear()
