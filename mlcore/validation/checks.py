"""Table validation as Spark aggregations: rules from config in, one result per rule out.

Pure logic (no table IO, no MLflow): the caller passes the frame a job is about to consume, the
table's rules, the run date and the row count of the last run that passed; it gets back every
rule's outcome (not just the first failure) and, when some rows break a row rule, the frame
split into good rows and flagged rows with ``rule`` and ``reason``.

Cost: one aggregation pass for all row rules + freshness + row count, and one grouped count for
key uniqueness; row flags are only computed when the aggregation found failing rows.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal

from mlcore.config.models import TableRules
from mlcore.io.frames import aggregate_row

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType

Status = Literal["passed", "failed", "skipped"]
Kind = Literal["schema", "row", "batch", "table"]

# Rule names (the ``rule`` column of validation_results and of quarantine rows).
SCHEMA = "schema"
NOT_NULL = "not_null"
RANGE = "range"
ALLOWED_VALUES = "allowed_values"
UNIQUE_KEYS = "unique_keys"
FRESHNESS = "freshness"
ROW_COUNT_CHANGE = "row_count_change"
ROW_BUDGET = "row_budget"
NON_EMPTY = "non_empty"
TABLE = "table"  # the per-table summary row; its ``rows`` feed the next run's row-count check
DISABLED = "validation_disabled"


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome on one table (a row of ``validation_results``)."""

    table: str
    rule: str
    kind: Kind
    status: Status
    column: str | None = None
    failed_rows: int | None = None
    observed: str | None = None
    expected: str | None = None
    detail: str | None = None

    @property
    def problem(self) -> str:
        """The one-line reason used in a job's failure message."""
        where = f"{self.table}.{self.column}" if self.column else self.table
        return f"{where}: {self.rule}: {self.detail or self.observed}"


@dataclass
class TableValidation:
    """Everything found about one table: results, rows checked, and the split frames."""

    table: str
    rows: int
    results: list[RuleResult] = field(default_factory=list)
    good: DataFrame | None = None  # the rows to use (all rows when nothing was flagged)
    flagged: DataFrame | None = None  # rows breaking a row rule: input columns + rule, reason

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == "failed" and r.kind in ("schema", "batch")]

    @property
    def quarantined_rows(self) -> int:
        """Rows flagged by row rules, each counted once (a row may break several rules)."""
        return sum(r.failed_rows or 0 for r in self.results if r.rule == ROW_BUDGET)


@dataclass(frozen=True)
class RowRule:
    """A row rule compiled to a Spark condition: true = the row breaks it (a null value passes,
    so ``failed`` is never null)."""

    rule: str
    column: str
    expected: str
    failed: Column
    reason: Column


def schema_contract_of(struct: StructType) -> dict[str, str]:
    """A Spark schema as the config's ``columns`` mapping (name -> simple type)."""
    return {f.name: f.dataType.simpleString() for f in struct.fields}


def schema_results(
    table: str, actual: StructType, contract: Mapping[str, str], allow_extra: bool
) -> list[RuleResult]:
    """Missing, mistyped and (optionally) unexpected columns: one result per problem."""
    have = schema_contract_of(actual)
    results = []

    def problem(column: str, observed: str, expected: str, detail: str) -> None:
        results.append(
            RuleResult(table, SCHEMA, "schema", "failed", column, None, observed, expected, detail)
        )

    for name, want in contract.items():
        if name not in have:
            problem(name, "missing", want, f"column missing (expected {want})")
        elif have[name] != want:
            problem(name, have[name], want, f"type {have[name]}, expected {want}")
    if not allow_extra:
        for name in have:
            if name not in contract:
                problem(
                    name, have[name], "absent", "unexpected column (allow_extra_columns: false)"
                )
    if not results:
        results.append(
            RuleResult(
                table, SCHEMA, "schema", "passed", observed=f"{len(contract)} columns checked"
            )
        )
    return results


def _number(value: float) -> str:
    return f"{value:g}"


def row_rules(
    table: str, rules: TableRules, columns: Sequence[str]
) -> tuple[list[RowRule], list[RuleResult]]:
    """Compile the row rules; rules on absent columns become ``skipped`` results."""
    from pyspark.sql import functions as F

    present = set(columns)
    compiled: list[RowRule] = []
    skipped: list[RuleResult] = []

    def absent(rule: str, column: str, expected: str) -> bool:
        if column in present:
            return False
        skipped.append(
            RuleResult(
                table,
                rule,
                "row",
                "skipped",
                column,
                expected=expected,
                detail="column not in the input",
            )
        )
        return True

    def add(rule: str, column: str, expected: str, failed: Column, reason: Column) -> None:
        compiled.append(RowRule(rule, column, expected, F.coalesce(failed, F.lit(False)), reason))

    for column in rules.not_null:
        if absent(NOT_NULL, column, "not null"):
            continue
        add(
            NOT_NULL,
            column,
            "not null",
            F.col(f"`{column}`").isNull(),
            F.lit(f"{column}: missing value"),
        )
    for column, bounds in rules.ranges.items():
        lo = "-inf" if bounds.minimum is None else _number(bounds.minimum)
        hi = "inf" if bounds.maximum is None else _number(bounds.maximum)
        expected = f"[{lo}, {hi}]"
        if absent(RANGE, column, expected):
            continue
        value = F.col(f"`{column}`")
        low = F.lit(False) if bounds.minimum is None else value < F.lit(bounds.minimum)
        high = F.lit(False) if bounds.maximum is None else value > F.lit(bounds.maximum)
        add(
            RANGE,
            column,
            expected,
            low | high,
            F.concat(
                F.lit(f"{column}: value "), value.cast("string"), F.lit(f" outside {expected}")
            ),
        )
    for column, allowed in rules.allowed_values.items():
        listed = "{" + ", ".join(str(v) for v in allowed) + "}"
        if absent(ALLOWED_VALUES, column, listed):
            continue
        value = F.col(f"`{column}`")
        add(
            ALLOWED_VALUES,
            column,
            listed,
            ~value.isin(list(allowed)),
            F.concat(
                F.lit(f"{column}: value '"),
                F.substring(value.cast("string"), 1, 200),
                F.lit(f"' not in {listed}"),
            ),
        )
    return compiled, skipped


def flag_rows(df: DataFrame, compiled: Sequence[RowRule]) -> DataFrame:
    """``df`` plus ``rule`` (first broken rule, null when none) and ``reason`` (all of them).

    ``compiled`` must not be empty (callers flag rows only when some rule failed)."""
    from pyspark.sql import functions as F

    first, *rest = compiled
    rule = F.when(first.failed, F.lit(first.rule))
    for check in rest:
        rule = rule.when(check.failed, F.lit(check.rule))
    reasons = [F.when(c.failed, c.reason) for c in compiled]
    reason = F.nullif(F.concat_ws("; ", *reasons), F.lit(""))
    return df.withColumn("rule", rule).withColumn("reason", reason)


def staleness_days(latest: date | None, run_date: date) -> int | None:
    """Days the latest date lags the day before the run date (0 = fresh; later data is fresh too).

    Jobs read as of the run date (data strictly before it), so the freshest useful date is the
    day before; a snapshot that also holds later days is not stale.
    """
    if latest is None:
        return None
    return max(0, (run_date - timedelta(days=1) - latest).days)


def validate_frame(
    df: DataFrame,
    table: str,
    rules: TableRules,
    run_date: date,
    contract: Mapping[str, str],
    previous_rows: int | None = None,
    sample_reasons: int = 3,
) -> TableValidation:
    """Check ``df`` (the frame a job is about to use) against ``rules``; never raises on data."""
    from pyspark.sql import functions as F

    results = schema_results(table, df.schema, contract, rules.allow_extra_columns)
    broken = {r.column for r in results if r.status == "failed" and r.observed != "missing"}
    usable = [c for c in df.columns if c not in broken]
    compiled, skipped = row_rules(table, rules, usable)
    results.extend(skipped)

    def add(rule: str, kind: Kind, status: Status, column: str | None = None, **details) -> None:
        results.append(RuleResult(table, rule, kind, status, column, **details))

    aggregates = [F.count(F.lit(1)).alias("_rows")]
    aggregates += [
        F.sum(F.when(c.failed, 1).otherwise(0)).alias(f"_f{i}") for i, c in enumerate(compiled)
    ]
    fresh_col = rules.freshness_column
    check_freshness = fresh_col is not None and rules.max_staleness_days is not None
    if check_freshness and fresh_col in usable:
        # Freshness of the rows the job keeps: a row that breaks a row rule (a date far in the
        # future, say) must not make a stale table look fresh.
        good = ~functools.reduce(lambda a, b: a | b, [c.failed for c in compiled], F.lit(False))
        latest = F.when(good, F.to_date(F.col(f"`{fresh_col}`")))
        aggregates.append(F.max(latest).alias("_latest"))
    row = aggregate_row(df.agg(*aggregates))
    rows = int(row["_rows"])
    validation = TableValidation(table, rows, results)

    if rows == 0:
        add(NON_EMPTY, "batch", "failed", observed="0 rows", expected=">= 1 row",
            detail="the input has no rows")  # fmt: skip
    any_row_failed = False
    for i, check in enumerate(compiled):
        failed = int(row[f"_f{i}"] or 0)
        any_row_failed = any_row_failed or failed > 0
        add(check.rule, "row", "failed" if failed else "passed", check.column,
            failed_rows=failed, expected=check.expected)  # fmt: skip

    if check_freshness:
        if fresh_col not in usable:
            add(FRESHNESS, "batch", "failed", fresh_col, detail="freshness column not in the input")
        else:
            latest = row["_latest"]
            stale = staleness_days(latest, run_date)
            expected = f"<= {rules.max_staleness_days} days before {run_date - timedelta(days=1)}"
            if stale is None:
                add(FRESHNESS, "batch", "failed" if rows else "skipped", fresh_col,
                    observed=f"no {fresh_col} values", expected=expected,
                    detail=f"{fresh_col} is null in every row")  # fmt: skip
            else:
                ok = stale <= (rules.max_staleness_days or 0)  # set: check_freshness
                add(FRESHNESS, "batch", "passed" if ok else "failed", fresh_col,
                    observed=f"latest {latest} ({stale} days stale)", expected=expected,
                    detail=None if ok else f"latest {fresh_col} {latest} is {stale} days stale "
                    f"(max_staleness_days {rules.max_staleness_days}, run date {run_date})")  # fmt: skip

    keys = list(rules.unique_keys)
    if keys:
        missing_keys = [k for k in keys if k not in usable]
        if missing_keys:
            add(UNIQUE_KEYS, "batch", "failed", ",".join(keys),
                detail=f"key columns {missing_keys} not in the input")  # fmt: skip
        else:
            dup = aggregate_row(
                df.groupBy(*[F.col(f"`{k}`") for k in keys])
                .count()
                .where(F.col("count") > 1)
                .agg(F.count(F.lit(1)).alias("keys"), F.sum(F.col("count") - 1).alias("extra"))
            )
            extra, dup_keys = int(dup["extra"] or 0), int(dup["keys"] or 0)
            add(UNIQUE_KEYS, "batch", "failed" if extra else "passed", ",".join(keys),
                failed_rows=extra, observed=f"{dup_keys:,} duplicated keys, {extra:,} extra rows",
                expected="unique",
                detail=f"{extra:,} duplicate rows over {dup_keys:,} keys ({', '.join(keys)})"
                if extra else None)  # fmt: skip

    if rules.max_row_count_change is not None:
        if not previous_rows:
            add(ROW_COUNT_CHANGE, "batch", "skipped", observed=f"{rows:,} rows",
                detail="no earlier run that passed validation")  # fmt: skip
        else:
            change = (rows - previous_rows) / previous_rows
            ok = abs(change) <= rules.max_row_count_change
            add(ROW_COUNT_CHANGE, "batch", "passed" if ok else "failed",
                observed=f"{rows:,} rows vs {previous_rows:,} ({change:+.1%})",
                expected=f"within ±{rules.max_row_count_change:.0%}",
                detail=None if ok else f"{rows:,} rows vs {previous_rows:,} in the last run that "
                f"passed ({change:+.1%}, max_row_count_change {rules.max_row_count_change:.0%})")  # fmt: skip

    validation.good = df
    if any_row_failed:
        flagged = flag_rows(df, compiled)
        validation.good = flagged.where(F.col("rule").isNull()).drop("rule", "reason")
        validation.flagged = flagged.where(F.col("rule").isNotNull())
        quarantined = validation.flagged.count()
        share = quarantined / rows
        samples = "; ".join(
            r["reason"]
            for r in validation.flagged.select("reason").limit(max(sample_reasons, 0)).collect()
        )
        ok = share <= rules.row_budget
        add(ROW_BUDGET, "batch", "passed" if ok else "failed", failed_rows=quarantined,
            observed=f"{quarantined:,} of {rows:,} rows ({share:.2%})",
            expected=f"<= {rules.row_budget:.2%}",
            detail=samples if ok else f"{quarantined:,} of {rows:,} rows ({share:.2%}) break row "
            f"rules, over row_budget {rules.row_budget:.2%}; e.g. {samples}")  # fmt: skip
    elif compiled:
        add(ROW_BUDGET, "batch", "passed", failed_rows=0, observed=f"0 of {rows:,} rows",
            expected=f"<= {rules.row_budget:.2%}")  # fmt: skip

    problems = validation.failed
    add(TABLE, "table", "failed" if problems else "passed",
        failed_rows=validation.quarantined_rows, observed=f"{rows:,} rows",
        detail=f"{len(problems)} problem(s)" if problems else None)  # fmt: skip
    return validation
