"""A minimal pipeline used to test the job runner (writes one small table, idempotently)."""

from __future__ import annotations

from pyspark.sql import functions as F

from mlcore.pipelines.context import JobContext, JobFailed, JobSummary


def run(ctx: JobContext) -> JobSummary:
    if ctx.config.ingest.bad_row_budget == 0.0:
        raise JobFailed("budget is zero: refusing to run")
    summary = JobSummary()
    df = ctx.spark.range(5).withColumn("run_id", F.lit(ctx.run_id)).withColumn("run_date", F.lit(ctx.run_date))
    if not ctx.dry_run:
        summary.writes.append(ctx.tables.write(df, "sales", token=ctx.token()))
    summary.add("rows", 5, metric="rows_written")
    ctx.artifacts["notes/hello.txt"] = "hello"
    return summary
