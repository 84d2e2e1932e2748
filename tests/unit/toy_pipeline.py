"""A minimal stage used to test the job runner: one small table, returned for the runner to
publish (its JobSpec in tests/unit/test_runner.py declares it)."""

from __future__ import annotations

from mlcore.pipelines.context import JobContext, JobFailed, JobSummary, TableOutput


def run(ctx: JobContext) -> JobSummary:
    if ctx.config.ingest.bad_row_budget == 0.0:
        raise JobFailed("budget is zero: refusing to run")
    summary = JobSummary()
    # No run columns here: the runner stamps them (test_runner checks the rows carry them).
    summary.outputs["sales"] = TableOutput(
        ctx.spark.range(5), rows_line=("rows", "rows_written")
    )
    ctx.artifacts["notes/hello.txt"] = "hello"
    return summary
