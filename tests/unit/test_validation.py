"""Validation rules (mlcore.validation.checks) on small Spark frames: every rule can fail."""

from __future__ import annotations

import datetime as dt

import pytest

from mlcore.config.models import RangeRule, TableRules
from mlcore.validation.checks import schema_results, staleness_days, validate_frame

RUN_DATE = dt.date(2015, 8, 1)
CONTRACT = {"store": "int", "date": "date", "sales": "int", "open": "int", "state_holiday": "string"}
RULES = TableRules(
    not_null=["store", "date"],
    ranges={"sales": RangeRule(minimum=0)},
    allowed_values={"open": [0, 1], "state_holiday": ["0", "a", "b", "c"]},
    unique_keys=["store", "date"],
    freshness_column="date",
    max_staleness_days=3,
    max_row_count_change=0.5,
    row_budget=0.2,
)
SCHEMA = "store int, date date, sales int, open int, state_holiday string"


def _rows(days: int = 10, stores: int = 2) -> list[tuple]:
    start = RUN_DATE - dt.timedelta(days=days)
    return [(s, start + dt.timedelta(days=i), 100 * s + i, 1, "0") for s in range(1, stores + 1) for i in range(days)]


def _by_rule(validation) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in validation.results:
        out.setdefault(r.rule, []).append(r)
    return out


def test_clean_frame_passes_every_rule(spark):
    df = spark.createDataFrame(_rows(), SCHEMA)
    v = validate_frame(df, "sales", RULES, RUN_DATE, CONTRACT, previous_rows=20)
    assert v.failed == []
    assert v.rows == 20 and v.flagged is None and v.good is df
    statuses = {(r.rule, r.column): r.status for r in v.results}
    assert statuses[("freshness", "date")] == "passed"
    assert statuses[("unique_keys", "store,date")] == "passed"
    assert statuses[("row_count_change", None)] == "passed"
    assert statuses[("table", None)] == "passed"


def test_schema_change_lists_every_problem(spark):
    # 'sales' renamed, 'open' now a string, an extra column: three problems, all reported.
    df = spark.createDataFrame(
        [(1, RUN_DATE - dt.timedelta(days=1), 5, "1", "0", "x")],
        "store int, date date, revenue int, open string, state_holiday string, note string",
    )
    rules = TableRules(allow_extra_columns=False)
    results = schema_results("sales", df.schema, CONTRACT, rules.allow_extra_columns)
    problems = {(r.column, r.detail) for r in results if r.status == "failed"}
    assert problems == {
        ("sales", "column missing (expected int)"),
        ("open", "type string, expected int"),
        ("revenue", "unexpected column (allow_extra_columns: false)"),
        ("note", "unexpected column (allow_extra_columns: false)"),
    }
    v = validate_frame(df, "sales", RULES, RUN_DATE, CONTRACT)
    failed = {(r.rule, r.column) for r in v.failed}
    assert ("schema", "sales") in failed and ("schema", "open") in failed
    # rules on a mistyped/missing column are skipped (reported), not crashed on
    skipped = {(r.rule, r.column) for r in v.results if r.status == "skipped"}
    assert ("range", "sales") in skipped and ("allowed_values", "open") in skipped


def test_row_rules_flag_rows_with_reasons_and_keep_the_rest(spark):
    rows = _rows()
    rows[0] = (rows[0][0], rows[0][1], -5, 1, "0")  # negative sales
    rows[1] = (rows[1][0], rows[1][1], 10, 3, "z")  # open and state_holiday out of domain
    rows[2] = (None, rows[2][1], 10, 1, "0")  # missing store
    df = spark.createDataFrame(rows, SCHEMA)
    v = validate_frame(df, "sales", RULES, RUN_DATE, CONTRACT)
    counts = {(r.rule, r.column): r.failed_rows for r in v.results if r.kind == "row"}
    assert counts[("range", "sales")] == 1
    assert counts[("allowed_values", "open")] == 1
    assert counts[("allowed_values", "state_holiday")] == 1
    assert counts[("not_null", "store")] == 1
    assert v.good.count() == 17
    flagged = {r["rule"]: r["reason"] for r in v.flagged.collect()}
    assert flagged["not_null"] == "store: missing value"
    assert flagged["range"] == "sales: value -5 outside [0, inf]"
    assert "open: value '3' not in {0, 1}" in flagged["allowed_values"]
    assert "state_holiday: value 'z' not in {0, a, b, c}" in flagged["allowed_values"]
    budget = _by_rule(v)["row_budget"][0]
    assert budget.status == "passed" and budget.failed_rows == 3  # 15% <= 20%
    # the row breaking two rules is one quarantined row in the table summary
    assert v.quarantined_rows == 3 and _by_rule(v)["table"][0].failed_rows == 3


def test_row_budget_exceeded_is_a_batch_failure(spark):
    rows = [(s, d, -1, o, h) for s, d, _, o, h in _rows()[:6]] + _rows()[6:]
    df = spark.createDataFrame(rows, SCHEMA)
    v = validate_frame(df, "sales", RULES, RUN_DATE, CONTRACT)
    assert [r.rule for r in v.failed] == ["row_budget"]
    assert "6 of 20 rows (30.00%)" in v.failed[0].detail


def test_duplicate_keys_stale_data_and_shrunken_input_all_reported(spark):
    rows = _rows(days=10)
    rows.append(rows[0])
    rows.append(rows[1])
    df = spark.createDataFrame(rows, SCHEMA)
    late = RUN_DATE + dt.timedelta(days=10)  # latest date is now 10 days stale
    v = validate_frame(df, "sales", RULES, late, CONTRACT, previous_rows=100)
    failed = {r.rule: r for r in v.failed}
    assert set(failed) == {"unique_keys", "freshness", "row_count_change"}
    assert failed["unique_keys"].failed_rows == 2
    assert "10 days stale" in failed["freshness"].detail
    assert "22 rows vs 100" in failed["row_count_change"].detail


def test_identical_previous_count_and_first_run(spark):
    df = spark.createDataFrame(_rows(), SCHEMA)
    first = validate_frame(df, "sales", RULES, RUN_DATE, CONTRACT, previous_rows=None)
    change = _by_rule(first)["row_count_change"][0]
    assert change.status == "skipped" and "no earlier run" in change.detail
    grown = validate_frame(df, "sales", RULES, RUN_DATE, CONTRACT, previous_rows=15)
    assert _by_rule(grown)["row_count_change"][0].status == "passed"  # +33% within 50%


def test_empty_input_fails(spark):
    df = spark.createDataFrame([], SCHEMA)
    v = validate_frame(df, "sales", RULES, RUN_DATE, CONTRACT)
    assert "non_empty" in {r.rule for r in v.failed}


@pytest.mark.parametrize(
    ("latest", "expected"),
    [(dt.date(2015, 7, 31), 0), (dt.date(2015, 7, 25), 6), (dt.date(2015, 9, 1), 0), (None, None)],
)
def test_staleness_days(latest, expected):
    assert staleness_days(latest, RUN_DATE) == expected


def test_freshness_counts_only_rows_that_pass_the_row_rules(spark):
    """A row that breaks a row rule (here a negative sale dated yesterday) is quarantined; it
    must not make a stale table look fresh."""
    rows = _rows(days=10)  # latest date: 1 day before the run date
    late = RUN_DATE + dt.timedelta(days=10)
    rows.append((1, late - dt.timedelta(days=1), -5, 1, "0"))  # fresh date, negative sales
    df = spark.createDataFrame(rows, SCHEMA)
    v = validate_frame(df, "sales", RULES, late, CONTRACT, previous_rows=21)
    failed = {r.rule: r for r in v.failed}
    assert "freshness" in failed, [r.rule for r in v.failed]
    assert "10 days stale" in failed["freshness"].detail
