"""The one input-validation mechanism every job uses (IO side of ``mlcore.validation``).

A job hands the frames it is about to consume to :func:`check_inputs` before doing any work.
Each table is checked against ``validation.tables.<name>`` (schema contract, row rules, key
uniqueness, freshness, row-count change vs the last run that passed); all tables are checked
before anything is decided, so a failure lists every problem of every input. The runner then
writes the collected results to ``validation_results`` (also when the job failed: that table is
where "why did last night's run stop?" is answered) and, for a job that went on, rows that broke a
row rule to ``validation_quarantine`` (table, rule, reason and the row as JSON).

``validation.enabled: false`` skips the checks but never silently: every input gets a
``validation_disabled`` row with status ``skipped``, and the job logs a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from mlcore.config.models import TableRules
from mlcore.ingest.schemas import (
    BANK,
    CALENDAR,
    ITEM_COLUMN,
    ITEM_CONTRACTS,
    RIDES,
    SALES,
    STORES,
    TableContract,
)
from mlcore.io.frames import local_frame
from mlcore.pipelines.context import JobContext, JobFailed
from mlcore.validation.checks import DISABLED, TABLE, RuleResult, schema_contract_of, validate_frame

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from mlcore.io.delta import DeltaTables

log = logging.getLogger(__name__)

RESULTS = "validation_results"
QUARANTINE = "validation_quarantine"
QUARANTINE_DDL = "table string, rule string, reason string, row_json string, job string, run_id string, run_date date"
# Tables written by an ingest job: their ingest contract is the default schema contract.
INGEST_CONTRACTS = {c.table: c for c in (SALES, STORES, BANK, RIDES, CALENDAR)}


class ValidationFailed(JobFailed):
    """Batch-level validation problems: the job stops before writing any output."""


@dataclass(frozen=True)
class RecordedResult:
    result: RuleResult
    table_version: int | None
    rows: int


def table_rules(ctx: JobContext, table: str, columns: Sequence[str] = ()) -> TableRules:
    """``validation.tables.<table>``; for a store x item table (one with an ``item`` column,
    written with ``sources.sales.items_per_store``) its ``unique_keys`` gain ``item`` after
    ``store``, so one configuration validates both levels."""
    rules = ctx.config.validation.tables.get(table, TableRules())
    keys = list(rules.unique_keys)
    if _item_level(table, columns) and "store" in keys and ITEM_COLUMN not in keys:
        keys.insert(keys.index("store") + 1, ITEM_COLUMN)
        return replace(rules, unique_keys=keys)
    return rules


def _item_level(table: str, columns: Sequence[str]) -> bool:
    return table in ITEM_CONTRACTS and ITEM_COLUMN in columns


def ingest_contract(table: str, columns: Sequence[str] = ()) -> TableContract | None:
    """The contract ``table`` was ingested under (store or store x item level), if any."""
    if _item_level(table, columns):
        return ITEM_CONTRACTS[table]
    return INGEST_CONTRACTS.get(table)


def schema_contract(ctx: JobContext, table: str, columns: Sequence[str] = ()) -> dict[str, str]:
    """The configured ``columns``, else the ingest contract's schema, else no contract."""
    rules = table_rules(ctx, table)
    if rules.columns:
        return dict(rules.columns)
    contract = ingest_contract(table, columns)
    return schema_contract_of(contract.schema) if contract else {}


def previous_row_count(ctx: JobContext, table: str) -> int | None:
    """Rows this job saw in ``table`` in its latest earlier run date that passed validation."""
    if table_rules(ctx, table).max_row_count_change is None or not ctx.tables.exists(RESULTS):
        return None
    from pyspark.sql import functions as F

    history = (
        ctx.tables.read(RESULTS, where={"job": ctx.job}, record_input=False)  # prunes files
        .where(
            (F.col("job") == ctx.job)
            & (F.col("table") == table)
            & (F.col("rule") == TABLE)
            & (F.col("status") == "passed")
            & (F.col("run_date") < F.lit(ctx.run_date))
        )
        .orderBy(F.col("run_date").desc(), F.col("checked_at").desc())
        .select("rows")
        .first()
    )
    return None if history is None else int(history["rows"])


def check_inputs(
    ctx: JobContext, frames: Mapping[str, DataFrame], raise_on_failure: bool = True
) -> dict[str, DataFrame]:
    """Validate every input frame; returns the rows to use per table (row-rule breakers removed).

    Raises :class:`ValidationFailed` listing every batch-level problem of every table (unless
    ``raise_on_failure`` is false: the ingest jobs merge these with their own budget errors).
    """
    settings = ctx.config.validation
    if not settings.enabled:
        for table in frames:
            log.warning(
                "validation.enabled is false: %s is used without validation (recorded)", table
            )
            ctx.validation.append(
                RecordedResult(
                    RuleResult(
                        table,
                        DISABLED,
                        "table",
                        "skipped",
                        detail="validation.enabled=false: input used without validation",
                    ),
                    ctx.tables.read_versions.get(table),
                    0,
                )
            )
        return dict(frames)
    good: dict[str, DataFrame] = {}
    problems: list[str] = []
    for table, df in frames.items():
        checked = validate_frame(
            df,
            table,
            table_rules(ctx, table, df.columns),
            ctx.run_date,
            schema_contract(ctx, table, df.columns),
            previous_row_count(ctx, table),
            settings.sample_reasons,
        )
        version = ctx.tables.read_versions.get(table)
        ctx.validation.extend(RecordedResult(r, version, checked.rows) for r in checked.results)
        problems.extend(r.problem for r in checked.failed)
        if checked.flagged is not None:
            ctx.quarantine.append((table, checked.flagged))
        good[table] = checked.good if checked.good is not None else df
    ctx.validation_problems.extend(problems)
    if problems and raise_on_failure:
        raise ValidationFailed(validation_message(problems))
    return good


def validation_message(problems: list[str]) -> str:
    """One line naming every problem; ends with what happened to the outputs."""
    return (
        f"input validation failed ({len(problems)} problem(s)): "
        + " | ".join(problems)
        + "; nothing written"
    )


def record_results(ctx: JobContext, tables: DeltaTables, job_succeeded: bool) -> None:
    """Write this run's validation results (and, if the job went on, its quarantined rows):
    bookkeeping of the runner (``tables``: its writer), after the stage."""
    if ctx.dry_run or not ctx.validation:
        return
    from pyspark.sql import functions as F
    from pyspark.sql.types import (
        DateType,
        LongType,
        StringType,
        StructField,
        StructType,
        TimestampType,
    )

    schema = StructType(
        [
            StructField("run_id", StringType(), False),
            StructField("run_date", DateType(), False),
            StructField("job", StringType(), False),
            StructField("table", StringType(), False),
            StructField("table_version", LongType(), True),
            StructField("rule", StringType(), False),
            StructField("kind", StringType(), False),
            StructField("column", StringType(), True),
            StructField("status", StringType(), False),
            StructField("rows", LongType(), True),
            StructField("failed_rows", LongType(), True),
            StructField("observed", StringType(), True),
            StructField("expected", StringType(), True),
            StructField("detail", StringType(), True),
            StructField("checked_at", TimestampType(), False),
        ]
    )
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = [
        (
            ctx.run_id,
            ctx.run_date,
            ctx.job,
            rec.result.table,
            rec.table_version,
            rec.result.rule,
            rec.result.kind,
            rec.result.column,
            rec.result.status,
            rec.rows,
            rec.result.failed_rows,
            rec.result.observed,
            rec.result.expected,
            (rec.result.detail or "")[:2000] or None,
            now,
        )
        for rec in ctx.validation
    ]
    results = local_frame(ctx.spark, rows, schema)  # written from the driver, no tasks
    where = {"run_date": ctx.run_date, "job": ctx.job}
    tables.write(results, RESULTS, mode="replace_where", replace_where=where)
    if not job_succeeded:
        return
    frames = []
    for table, flagged in ctx.quarantine:
        payload = [c for c in flagged.columns if c not in ("rule", "reason")]
        frames.append(
            flagged.select(
                F.lit(table).alias("table"),
                F.col("rule"),
                F.col("reason"),
                F.to_json(F.struct(*[F.col(f"`{c}`") for c in payload])).alias("row_json"),
                F.lit(ctx.job).alias("job"),
                *ctx.run_columns(),
            )
        )
    if frames:
        out = frames[0]
        for frame in frames[1:]:
            out = out.unionByName(frame)
    elif tables.exists(QUARANTINE):
        # Nothing quarantined now: replace with no rows, so a fixed rerun clears the earlier ones.
        out = local_frame(ctx.spark, [], QUARANTINE_DDL)
    else:
        return
    tables.write(out, QUARANTINE, mode="replace_where", replace_where=where)
