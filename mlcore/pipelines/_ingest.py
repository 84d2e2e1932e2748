"""The flow shared by the ingest jobs: count, gate on the bad-row budget, publish, summarise.

Write mode: every ingest source is a *full snapshot* (Kaggle train/store, UCI bank-full, a TLC
sample file), so each table is published with ``overwrite`` + the job's idempotency token:

- the table is always exactly the latest snapshot; earlier snapshots stay readable through
  Delta time travel, so nothing is lost and nothing can be counted twice when a later run date
  ingests the same (or a grown) file again;
- re-running the same run date (same ``run.revision``) is a no-op: the token is already in the
  table, no version is added (the job even skips validation when every table holds it);
- ``rides`` is partitioned by ``pickup_date`` for pruning, but still overwritten as a whole: a
  replace-where on the file's pickup dates would delete another file's rides on shared boundary
  days (TLC month files contain a few trips of the neighbouring months).

The quarantine table is overwritten in the same way, also when it has no rows, so that
``<table>_quarantine`` always describes the snapshot currently in ``<table>``: good +
quarantined rows of the latest run == the rows of its source file.

Order: every table of the job is validated and counted first; if any exceeds
``ingest.bad_row_budget`` the job fails before touching any table. Then each table is written
(good rows, then quarantine), one atomic commit per table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlcore.ingest.rules import RULE, DatePolicy, ValueRule, split, value_rules
from mlcore.ingest.schemas import TableContract
from mlcore.ingest.sources import Source
from mlcore.io.engines import WriteResult
from mlcore.pipelines._validation import (
    RecordedResult,
    check_inputs,
    table_rules,
    validation_message,
)
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary, TableOutput
from mlcore.validation.checks import RuleResult

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType


def date_policy(ctx: JobContext) -> DatePolicy:
    """The plausible-date rules of this run (``ingest.min_date``, ``max_days_after_run_date``,
    ``max_days_outside_period``), relative to the run date."""
    from datetime import date

    cfg = ctx.config.ingest
    return DatePolicy(
        run_date=ctx.run_date,
        min_date=date.fromisoformat(cfg.min_date),
        max_days_after_run_date=cfg.max_days_after_run_date,
        max_days_outside_period=cfg.max_days_outside_period,
    )


@dataclass
class IngestBatch:
    """One validated source: its contract, the classified frame (rows with ``rule``), the file.

    ``derive`` turns the good rows into the rows published under ``published`` (the store x item
    expansion); the quarantine keeps the source's rows under ``contract``."""

    contract: TableContract
    classified: DataFrame
    source: Source
    notes: list[tuple[str, str]] = field(default_factory=list)
    derive: Callable[[DataFrame], DataFrame] | None = None
    published: TableContract | None = None

    @property
    def output_contract(self) -> TableContract:
        return self.published or self.contract

    def good_rows(self, classified: DataFrame) -> DataFrame:
        """The rows to publish: the good rows of ``classified``, derived when configured."""
        good = split(classified, self.contract)[0]
        return self.derive(good) if self.derive is not None else good


@dataclass(frozen=True)
class IngestCounts:
    input_rows: int
    good_rows: int
    by_rule: dict[str, int]

    @property
    def quarantined_rows(self) -> int:
        return sum(self.by_rule.values())

    @property
    def bad_share(self) -> float:
        return self.quarantined_rows / self.input_rows if self.input_rows else 0.0


def count_classified(classified: DataFrame, table: str) -> IngestCounts:
    """Input, good and per-rule counts of a (cached) classified frame; checks they add up."""
    per_rule = {row[RULE]: int(row["count"]) for row in classified.groupBy(RULE).count().collect()}
    good = per_rule.pop(None, 0)
    counts = IngestCounts(input_rows=int(classified.count()), good_rows=good, by_rule=per_rule)
    if counts.good_rows + counts.quarantined_rows != counts.input_rows:
        raise JobFailed(
            f"{table}: counts do not add up (good {counts.good_rows:,} + quarantined "
            f"{counts.quarantined_rows:,} != input {counts.input_rows:,}); nothing written"
        )
    return counts


def budget_error(table: str, counts: IngestCounts, budget: float) -> str | None:
    """A one-line reason when ``table`` may not be published, else None."""
    if counts.input_rows == 0:
        return f"{table}: the source has no data rows (refusing to publish an empty snapshot)"
    if counts.bad_share <= budget:
        return None
    top = sorted(counts.by_rule.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    rules = ", ".join(f"{rule}={n:,}" for rule, n in top)
    return (
        f"{table}: {counts.quarantined_rows:,} of {counts.input_rows:,} rows "
        f"({counts.bad_share:.2%}) failed validation, over ingest.bad_row_budget "
        f"{budget:.2%} ({rules})"
    )


def configured_rules(ctx: JobContext, contract: TableContract) -> tuple[ValueRule, ...]:
    """This run's value rules for ``contract``'s table (``validation.tables.<table>``)."""
    return value_rules(table_rules(ctx, contract.table))


def record_parse_results(ctx: JobContext, table: str, counts: IngestCounts, budget: float) -> None:
    """The ingest-time rules (parse, domain, duplicates) as validation results of the run."""
    for rule, n in sorted(counts.by_rule.items()):
        result = RuleResult(
            table, rule, "row", "failed", failed_rows=n, detail="quarantined at ingest"
        )
        ctx.validation.append(RecordedResult(result, None, counts.input_rows))
    ok = budget_error(table, counts, budget) is None
    ctx.validation.append(
        RecordedResult(
            RuleResult(
                table, "ingest_bad_row_budget", "batch", "passed" if ok else "failed",
                failed_rows=counts.quarantined_rows,
                observed=f"{counts.quarantined_rows:,} of {counts.input_rows:,} rows ({counts.bad_share:.3%})",
                expected=f"<= {budget:.2%} (ingest.bad_row_budget)",
            ),
            None,
            counts.input_rows,
        )
    )  # fmt: skip


def conform(df: DataFrame, schema: StructType, run_columns: dict[str, Any]) -> DataFrame:
    """Exactly the contract's columns, in order and types, with the run columns filled in."""
    from pyspark.sql import functions as F

    return df.select(
        *[
            (F.lit(run_columns[f.name]) if f.name in run_columns else F.col(f"`{f.name}`"))
            .cast(f.dataType)
            .alias(f.name)
            for f in schema.fields
        ]
    )


def replay_summary(ctx: JobContext, contracts: Sequence[TableContract]) -> JobSummary | None:
    """A summary without any work when every output already holds this run's token."""
    if ctx.dry_run:
        return None
    names = [n for c in contracts for n in (c.table, c.quarantine_table)]
    if not all(ctx.tables.already_written(n, ctx.token(n)) for n in names):
        return None
    summary = JobSummary()
    summary.add(
        "already ingested",
        f"run date {ctx.run_date} (revision {ctx.config.run.revision}); nothing to do",
    )
    for name in names:
        summary.writes.append(
            WriteResult(name, ctx.tables.engine_name, ctx.tables.version(name), committed=False)
        )
    return summary


def _report(summary: JobSummary, batch: IngestBatch, counts: IngestCounts) -> None:
    table = batch.contract.table
    summary.add(f"{table} source", batch.source.describe())
    for label, value in batch.notes:
        summary.add(label, value)
    summary.add(f"{table} input rows", counts.input_rows, metric=f"{table}.input_rows")
    summary.add(f"{table} good rows", counts.good_rows, metric=f"{table}.good_rows")
    summary.add(
        f"{table} quarantined rows", counts.quarantined_rows, metric=f"{table}.quarantined_rows"
    )
    summary.add(f"{table} bad share", f"{counts.bad_share:.3%}")
    summary.metrics[f"{table}.bad_share"] = counts.bad_share
    for rule, n in sorted(counts.by_rule.items()):
        summary.add(f"{table} quarantined: {rule}", n, metric=f"{table}.quarantined.{rule}")


def _output(
    ctx: JobContext, df: DataFrame, name: str, schema: StructType, expected_rows: int
) -> TableOutput:
    """``df`` as the contract's columns, for the runner to publish as the table's snapshot;
    the write must store exactly the rows validation counted."""
    out = conform(df, schema, ctx.output_columns())
    partition_by = list(ctx.tables.ref(name).partition_by)
    if partition_by:
        # One file per partition value instead of one per (task, value).
        out = out.repartition(*partition_by)
    return TableOutput(out, expected_rows=expected_rows)


def run_ingest(ctx: JobContext, batches: Sequence[IngestBatch]) -> JobSummary:
    """Validate and count every batch, enforce the budget, then return the good and the
    quarantined rows of each as the job's outputs (the runner writes them, unless dry run)."""
    from pyspark import StorageLevel

    summary = JobSummary()
    cached: list[DataFrame] = []
    try:
        counted: list[tuple[IngestBatch, DataFrame, IngestCounts]] = []
        for batch in batches:
            classified = batch.classified.persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(classified)
            counts = count_classified(classified, batch.contract.table)
            _report(summary, batch, counts)
            counted.append((batch, classified, counts))
        budget = ctx.config.ingest.bad_row_budget
        errors = [
            e for b, _, c in counted if (e := budget_error(b.contract.table, c, budget)) is not None
        ]
        # The batch rules of validation.tables (freshness, row-count change, keys) on the rows
        # that would be published, through the same mechanism every other job uses.
        for batch, _, counts in counted:
            record_parse_results(ctx, batch.contract.table, counts, budget)
        before = len(ctx.validation_problems)
        # derived once: the store x item expansion reads its period with a Spark action
        published = [b.good_rows(c) for b, c, _ in counted]
        check_inputs(
            ctx,
            {
                b.contract.table: conform(good, b.output_contract.schema, ctx.output_columns())
                for (b, _, _), good in zip(counted, published, strict=True)
            },
            raise_on_failure=False,
        )
        errors += ctx.validation_problems[before:]
        if errors:
            raise JobFailed(validation_message(errors))
    except BaseException:
        for df in cached:
            df.unpersist()
        raise
    if ctx.dry_run:
        summary.add("dry run", "validated and counted; nothing written")
    for (batch, classified, counts), good in zip(counted, published, strict=True):
        contract = batch.contract
        bad = split(classified, contract)[1]
        good_rows = counts.good_rows
        if batch.derive is not None:
            good_rows = good.count()
            summary.add(f"{contract.table} published rows", good_rows,
                        metric=f"{contract.table}.published_rows")  # fmt: skip
        summary.outputs[contract.table] = _output(
            ctx, good, contract.table, batch.output_contract.schema, good_rows
        )
        summary.outputs[contract.quarantine_table] = _output(
            ctx, bad, contract.quarantine_table, contract.quarantine_schema, counts.quarantined_rows
        )
    summary.cached.extend(cached)  # released once the runner has published the outputs
    return summary
