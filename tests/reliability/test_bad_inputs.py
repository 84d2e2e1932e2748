"""Bad inputs: schema drift, wrong types, empty files and tables, huge values, malformed dates,
corrupt or truncated source files. Each ends either with a clear one-line error and every table
unchanged, or (a few bad rows within the budget) with those rows in quarantine, so that
good + quarantined == input rows and nothing is lost.

Write-side schema drift (extra/missing/retyped/case-clashing columns) is covered by
tests/unit/test_delta_io.py::test_schema_enforcement; header checks by
tests/unit/test_ingest_sources.py; per-rule quarantine reasons by tests/unit/test_ingest_rules.py.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
from pathlib import Path

import pytest

from mlcore.runner import run_job
from tests.conftest import CONF_DIR
from tests.reliability.conftest import lake_path, scan, versions_of, write_sales

pytestmark = pytest.mark.reliability

TABLES = ("sales", "sales_quarantine", "stores", "stores_quarantine")
FIRST = dt.date(2015, 3, 1)


def args(day: dt.date, train: Path, store: Path, *extra: str) -> list[str]:
    return [
        "--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", day.isoformat(),
        "--set", f"sources.sales.train_path={train}", "--set", f"sources.sales.store_path={store}",
        "--set", "sources.sales.if_missing=error", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def source_lines(tmp_path_factory) -> dict:
    """Small Rossmann-format files from the bundled generator (3 stores x 59 days)."""
    from mlcore.config.models import SyntheticConfig
    from mlcore.ingest import synthetic

    cfg = SyntheticConfig(stores=3, start_date="2015-01-01", end_date="2015-02-28")
    sales, stores = synthetic.sales_frames(cfg)
    train = synthetic.format_train_csv(sales).splitlines()
    store = synthetic.format_store_csv(stores).splitlines()
    folder = tmp_path_factory.mktemp("sources")
    store_path = folder / "store.csv.gz"
    store_path.write_bytes(gzip.compress(("\n".join(store) + "\n").encode()))
    return {"header": train[0], "rows": train[1:], "store_path": store_path}


def gz(path: Path, lines: list[str]) -> Path:
    return raw(path, gzip.compress(("\n".join(lines) + "\n").encode()))


def raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def versions(home: Path) -> dict[str, list[int]]:
    return {name: versions_of(lake_path(home, name)) for name in TABLES}


@pytest.fixture
def published(spark, mlcore_home, tmp_path, source_lines, capsys) -> dict[str, list[int]]:
    """A good snapshot published first: every bad input below must leave it as it is."""
    good = gz(tmp_path / "good.csv.gz", [source_lines["header"], *source_lines["rows"]])
    assert run_job("ingest_sales", args(FIRST, good, source_lines["store_path"])) == 0
    capsys.readouterr()
    before = versions(mlcore_home)
    assert before == dict.fromkeys(TABLES, [0])
    return before


def failing_cases(source_lines: dict, folder: Path) -> dict[str, tuple[Path, str]]:
    header, rows = source_lines["header"], source_lines["rows"]
    body = ("\n".join([header, *rows]) + "\n").encode()
    whole = gzip.compress(body)
    cases = {
        "extra column": (gz(folder / "extra.csv.gz", [header + ',"Weather"'] + [r + ",1" for r in rows]),
                         "header does not match the Rossmann train.csv layout (unexpected ['Weather'])"),
        "missing column": (gz(folder / "missing.csv.gz", [header.rsplit(",", 1)[0]] + [r.rsplit(",", 1)[0] for r in rows]),
                           "header does not match the Rossmann train.csv layout (missing ['SchoolHoliday'])"),
        "wrong types everywhere": (gz(folder / "types.csv.gz", [header] + [r.replace(",1,", ",x,", 1) for r in rows]),
                                   "failed validation, over ingest.bad_row_budget"),
        "empty file": (raw(folder / "empty.csv", b""), "file is empty (no header line)"),
        "header only": (gz(folder / "header.csv.gz", [header]), "the source has no data rows"),
        "truncated gzip": (raw(folder / "cut.csv.gz", whole[: len(whole) // 2]),
                           "corrupt or truncated"),
        "not gzip at all": (raw(folder / "junk.csv.gz", b"\x00\x01garbage" * 64),
                            "corrupt or truncated"),
    }  # fmt: skip
    return cases


def test_bad_source_files_fail_clearly_and_change_nothing(
    mlcore_home, tmp_path, source_lines, published, capsys
):
    cases = failing_cases(source_lines, tmp_path)
    for revision, (label, (path, expected)) in enumerate(cases.items(), start=2):
        # A new run.revision each time, so the first run's idempotency token cannot hide a case.
        extra = ("--set", f"run.revision={revision}")
        code = run_job("ingest_sales", args(FIRST, path, source_lines["store_path"], *extra))
        err = capsys.readouterr().err
        failure = [line for line in err.splitlines() if line.startswith("ingest_sales: FAILED: ")]
        assert code == 1, f"{label}: exit code {code}\n{err[-2000:]}"
        assert len(failure) == 1 and expected in failure[0], f"{label}: {failure or err[-2000:]}"
        assert "Traceback" not in failure[0] and "Py4J" not in failure[0], f"{label}: {failure[0]}"
        assert versions(mlcore_home) == published, f"{label}: a table changed"
    assert len(scan(lake_path(mlcore_home, "sales"))) == len(source_lines["rows"])


def test_bad_rows_within_budget_are_quarantined_not_lost(
    mlcore_home, tmp_path, source_lines, published, capsys
):
    header, rows = source_lines["header"], source_lines["rows"]
    bad = [
        ('1,2,2015-03-02,abc,555,1,1,"0","1"', "unparseable", "sales: not an integer 'abc'"),
        (
            '1,2,2015-03-03,99999999999999999999,555,1,1,"0","1"',
            "unparseable",
            "sales: not an integer",
        ),
        ('1,2,2015-02-30,100,10,1,1,"0","1"', "unparseable", "date"),
        ('1,2,2015/03/04,100,10,1,1,"0","1"', "unparseable", "date"),
        ('1,2,yesterday,100,10,1,1,"0","1"', "unparseable", "date"),
        ('1,3,2015-03-04,1e400,10,1,1,"0","1"', "unparseable", "sales: not an integer"),
        ('2,3,2015-03-04,5263,555,1,1,"0"', "malformed_line", "malformed line"),  # truncated line
    ]
    train = gz(tmp_path / "some_bad.csv.gz", [header, *rows, *[line for line, *_ in bad]])
    extra = ("--set", "ingest.bad_row_budget=0.05", "--set", "run.revision=2")
    assert run_job("ingest_sales", args(FIRST, train, source_lines["store_path"], *extra)) == 0
    sales = scan(lake_path(mlcore_home, "sales"))
    quarantine = scan(lake_path(mlcore_home, "sales_quarantine"))
    assert len(sales) == len(rows) and len(quarantine) == len(bad), "good + quarantined == input"
    got = sorted(zip(quarantine["rule"], quarantine["reason"], strict=True))
    for _, rule, reason in bad:
        assert any(r == rule and reason in text for r, text in got), (rule, reason, got)
    assert sales["sales"].max() < 10**9, "no overflowed value slipped through"
    assert versions(mlcore_home)["sales"] == [0, 1]


def test_training_on_empty_or_drifted_tables_fails_before_any_output(
    spark, tables, make_config, mlcore_home, capsys
):
    from pyspark.sql import functions as F

    from mlcore.ingest.schemas import SALES_SCHEMA
    from mlcore.io import DeltaTables

    base = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", "2015-06-14"]
    tables.write(spark.createDataFrame([], SALES_SCHEMA), "sales", mode="overwrite")
    assert run_job("train_forecasts", base) == 1
    err = capsys.readouterr().err
    assert re.search(
        r"train_forecasts: FAILED: .*(no sales history before 2015-06-14|sales: .*no rows)", err
    )

    write_sales(spark, tables, 2)
    drifted = DeltaTables(spark, make_config("tables.sales.path=sales_drifted"))
    frame = tables.read("sales")
    drifted.write(frame.drop("promo"), "sales", mode="overwrite")
    assert run_job("train_forecasts", [*base, "--set", "tables.sales.path=sales_drifted"]) == 1
    err = capsys.readouterr().err
    assert re.search(
        r"train_forecasts: FAILED: .*(lacks columns \['promo'\]|sales\.promo: .*missing)", err
    )

    retyped = DeltaTables(spark, make_config("tables.sales.path=sales_retyped"))
    retyped.write(
        frame.withColumn("sales", F.col("sales").cast("string")), "sales", mode="overwrite"
    )
    assert run_job("train_forecasts", [*base, "--set", "tables.sales.path=sales_retyped"]) == 1
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if line.startswith("train_forecasts: FAILED")]
    assert len(failed) == 1 and re.search(r"sales\.sales: .*string", failed[0]), err[-2000:]
    assert not lake_path(mlcore_home, "forecast_models").exists()
