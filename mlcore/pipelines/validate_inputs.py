"""validate_inputs: the configured validation rules over whole input tables for a run date.

The same checks every job runs on its own inputs (``mlcore.pipelines._validation``), as a step of
its own: the nightly chain runs it right after ingest, so that a stale, shrunken or schema-drifted
table stops the chain before any training, and the reason is one query away in
``validation_results``. A configured table that does not exist is a failure too.
"""

from __future__ import annotations

from mlcore.pipelines._validation import (
    RecordedResult,
    ValidationFailed,
    check_inputs,
    validation_message,
)
from mlcore.pipelines.context import JobContext, JobSummary
from mlcore.validation.checks import DISABLED, TABLE, RuleResult


def run(ctx: JobContext) -> JobSummary:
    summary = JobSummary()
    tables = list(dict.fromkeys(ctx.config.validation.input_tables))
    if not tables:
        summary.add("tables", "validation.input_tables is empty: nothing to validate")
        return summary
    frames = {}
    missing = []
    held_back = []
    for table in tables:
        if table in ctx.blocked:  # the chain's earlier step failed to write tonight's
            held_back.append(table)
            result = RuleResult(
                table, TABLE, "table", "skipped", detail=f"not validated: {ctx.blocked[table]}"
            )
            ctx.validation.append(RecordedResult(result, None, 0))
        elif ctx.tables.exists(table):
            frames[table] = ctx.tables.read(table)
        else:
            missing.append(table)
            result = RuleResult(table, TABLE, "table", "failed", detail="table does not exist")
            ctx.validation.append(RecordedResult(result, None, 0))
    check_inputs(ctx, frames, raise_on_failure=False)
    for rec in ctx.validation:
        r = rec.result
        if r.rule == TABLE:
            summary.add(f"{r.table}", f"{r.status} ({r.observed or r.detail})")
            summary.metrics[f"{r.table}.rows"] = float(rec.rows)
            summary.metrics[f"{r.table}.quarantined_rows"] = float(r.failed_rows or 0)
        elif r.rule == DISABLED:
            summary.add(f"{r.table}", "skipped (validation.enabled is false)")
    problems = (
        [f"{t}: table does not exist" for t in missing]
        + [f"{t}: {ctx.blocked[t]}, not validated" for t in held_back]
        + ctx.validation_problems
    )
    summary.metrics["problems"] = float(len(problems))
    if problems:
        # Confined to the tables that failed: the chain goes on with the steps that need none.
        failed = {rec.result.table for rec in ctx.validation if rec.result.status == "failed"}
        raise ValidationFailed(
            validation_message(problems), affects=sorted(failed | set(missing) | set(held_back))
        )
    return summary
