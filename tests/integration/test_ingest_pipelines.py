"""The ingest pipelines end to end on slices of the real files (and the synthetic fallback):
exact good/quarantine counts and reasons, the bad-row budget gate, idempotent reruns, the
bank layout check, the rides period rule and partitioning."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from mlcore.ingest.schemas import BANK, RIDES, SALES, STORES
from mlcore.io import DeltaTables
from mlcore.pipelines import _ingest, ingest_sales
from mlcore.pipelines.context import JobContext, JobFailed
from mlcore.runner import run_stage

RUN_DATE = dt.date(2015, 8, 1)
NEXT_DATE = dt.date(2015, 8, 2)
SALES_TABLES = ("sales", "sales_quarantine", "stores", "stores_quarantine")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def make_ctx(
    spark, make_config, job: str, *overrides: str, run_date=RUN_DATE, dry_run=False
) -> JobContext:
    config = make_config(*overrides)
    tables = DeltaTables(spark, config, commit_metadata={"mlcore.job": job})
    return JobContext(job, config, spark, tables, run_date, "test-run", dry_run=dry_run)


def stage_of(ctx: JobContext):
    """The job's stage and the runner's publication of what it returned (the context's tables
    are the writer here: the runner's own JobContext only gets the read-only view)."""
    return run_stage(ctx, ctx.tables)


def head_lines(path: Path, rows: int, skip: int = 0) -> tuple[str, list[str]]:
    """(header, ``rows`` data lines after skipping ``skip``) of a gzip CSV, without the newline."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        header = handle.readline().rstrip("\n")
        for _ in range(skip):
            handle.readline()
        return header, [handle.readline().rstrip("\n") for _ in range(rows)]


def write_gz(path: Path, header: str, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.write("\n".join([header, *lines]) + "\n")
    return path


def sales_overrides(train: Path, store: Path) -> tuple[str, str]:
    return (f"sources.sales.train_path={train}", f"sources.sales.store_path={store}")


def versions(ctx: JobContext, names) -> dict[str, int | None]:
    return {name: ctx.tables.version(name) for name in names}


def quarantine(ctx: JobContext, name: str) -> list[dict]:
    return [r.asDict() for r in ctx.tables.read(name).collect()]


def frame(lines: list[str], header: str, sep: str = ",") -> pd.DataFrame:
    from io import StringIO

    return pd.read_csv(
        StringIO("\n".join([header, *lines])), sep=sep, dtype=str, keep_default_na=False
    )


def assert_schema(df, contract_schema) -> None:
    """Same column names, order and types as the contract (nullability is not stored)."""
    got = [(f.name, f.dataType.simpleString()) for f in df.schema.fields]
    assert got == [(f.name, f.dataType.simpleString()) for f in contract_schema.fields]


@pytest.fixture
def store_csv(datasets_dir: Path) -> Path:
    return datasets_dir / "rossmann" / "store.csv.gz"


# ----------------------------------------------------------------------------------------------
# Sales
# ----------------------------------------------------------------------------------------------
INJECTED_SALES = [
    # (line, raw store, rule, reason)
    ('2001,5,2015-07-31,-5,555,1,1,"0","1"', "2001", "negative_value", "sales: negative value -5"),
    (
        '2002,5,2015-07-31,5263,555,2,1,"0","1"',
        "2002",
        "out_of_domain",
        "open: value '2' not in {0, 1}",
    ),
    (
        '2003,5,2015-07-31,5263,555,1,1,"x","1"',
        "2003",
        "out_of_domain",
        "state_holiday: value 'x' not in {0, a, b, c}",
    ),
    ('2004,5,2015-07-31,abc,555,1,1,"0","1"', "2004", "unparseable", "sales: not an integer 'abc'"),
    (
        "2005,5,2015-07-31,5263",
        "2005",
        "malformed_line",
        "malformed line: expected 9 fields separated by ',': 2005,5,2015-07-31,5263",
    ),
    (',5,2015-07-31,5263,555,1,1,"0","1"', None, "missing_value", "store: missing value"),
]
DUPLICATE_OF_FIRST = (
    '1,5,2015-07-31,5263,555,1,1,"0","1"',
    "1",
    "duplicate_key",
    "duplicate key (store=1, date=2015-07-31): the first row in file order was kept",
)


def test_sales_real_slice_with_injected_bad_rows(
    spark, make_config, datasets_dir, store_csv, tmp_path
):
    header, real = head_lines(datasets_dir / "rossmann" / "train.csv.gz", 20_000)
    assert real[0] == DUPLICATE_OF_FIRST[0]  # the appended line duplicates the file's first row
    injected = [line for line, *_ in INJECTED_SALES]
    lines = real[:10_000] + injected + real[10_000:] + [DUPLICATE_OF_FIRST[0]]
    train = write_gz(tmp_path / "train.csv.gz", header, lines)
    ctx = make_ctx(spark, make_config, "ingest_sales", *sales_overrides(train, store_csv))

    summary = stage_of(ctx)

    m = summary.metrics
    assert (m["sales.input_rows"], m["sales.good_rows"], m["sales.quarantined_rows"]) == (
        20_007,
        20_000,
        7,
    )
    assert m["sales.quarantined.out_of_domain"] == 2 and m["sales.quarantined.duplicate_key"] == 1
    assert (m["stores.input_rows"], m["stores.good_rows"], m["stores.quarantined_rows"]) == (
        1115,
        1115,
        0,
    )
    assert [w.committed for w in summary.writes] == [True] * 4
    assert {w.table: w.rows for w in summary.writes} == {
        "sales": 20_000,
        "sales_quarantine": 7,
        "stores": 1115,
        "stores_quarantine": 0,
    }

    bad = {(r["store"], r["rule"], r["reason"]) for r in quarantine(ctx, "sales_quarantine")}
    assert bad == {
        (s, rule, reason) for _, s, rule, reason in [*INJECTED_SALES, DUPLICATE_OF_FIRST]
    }
    (negative,) = [r for r in quarantine(ctx, "sales_quarantine") if r["store"] == "2001"]
    assert negative["sales"] == "-5" and negative["date"] == "2015-07-31"  # raw strings kept
    assert negative["run_id"] == "test-run" and negative["run_date"] == RUN_DATE

    sales = ctx.tables.read("sales")
    assert_schema(sales, SALES.schema)
    assert_schema(ctx.tables.read("sales_quarantine"), SALES.quarantine_schema)
    assert_schema(ctx.tables.read("stores"), STORES.schema)
    expected = frame(real, header)
    totals = sales.agg(F.sum("sales"), F.sum("customers"), F.count("*")).first()
    assert tuple(totals) == (
        expected["Sales"].astype(int).sum(),
        expected["Customers"].astype(int).sum(),
        20_000,
    )
    assert sales.select("run_id", "run_date").distinct().collect() == [("test-run", RUN_DATE)]
    first = sales.where("store = 1 AND date = DATE'2015-07-31'").collect()
    assert [(r["sales"], r["customers"], r["state_holiday"]) for r in first] == [(5263, 555, "0")]


def test_over_budget_fails_before_writing(spark, make_config, datasets_dir, store_csv, tmp_path):
    header, real = head_lines(datasets_dir / "rossmann" / "train.csv.gz", 300)
    negatives = [f'{3000 + i},5,2015-07-31,-{i + 1},10,1,1,"0","1"' for i in range(10)]
    bad_file = write_gz(tmp_path / "bad.csv.gz", header, real + negatives)  # 10 / 310 = 3.2 %
    good_file = write_gz(tmp_path / "good.csv.gz", header, real)

    ctx = make_ctx(spark, make_config, "ingest_sales", *sales_overrides(bad_file, store_csv))
    with pytest.raises(JobFailed) as info:
        stage_of(ctx)
    message = str(info.value)
    assert "sales: 10 of 310 rows (3.23%) failed validation" in message
    assert "ingest.bad_row_budget 1.00%" in message and "negative_value=10" in message
    assert message.endswith("nothing written") and "\n" not in message
    assert versions(ctx, SALES_TABLES) == dict.fromkeys(SALES_TABLES)  # no table created

    ok = make_ctx(spark, make_config, "ingest_sales", *sales_overrides(good_file, store_csv))
    stage_of(ok)
    before = versions(ok, SALES_TABLES)
    assert before == dict.fromkeys(SALES_TABLES, 0)

    later = make_ctx(
        spark,
        make_config,
        "ingest_sales",
        *sales_overrides(bad_file, store_csv),
        run_date=NEXT_DATE,
    )
    with pytest.raises(JobFailed, match="over ingest.bad_row_budget"):
        stage_of(later)
    assert versions(later, SALES_TABLES) == before
    assert later.tables.read("sales").select("run_date").distinct().collect() == [(RUN_DATE,)]

    # The budget is the knob: at 5 % the same file publishes, bad rows in quarantine.
    relaxed = make_ctx(
        spark,
        make_config,
        "ingest_sales",
        *sales_overrides(bad_file, store_csv),
        "ingest.bad_row_budget=0.05",
        run_date=NEXT_DATE,
    )
    stage_of(relaxed)
    assert relaxed.tables.read("sales").count() == 300
    assert relaxed.tables.read("sales_quarantine").count() == 10


def test_rerun_same_run_date_adds_no_version(
    spark, make_config, datasets_dir, store_csv, tmp_path, monkeypatch
):
    header, real = head_lines(datasets_dir / "rossmann" / "train.csv.gz", 2_000)
    train = write_gz(tmp_path / "train.csv.gz", header, real)
    overrides = sales_overrides(train, store_csv)
    ctx = make_ctx(spark, make_config, "ingest_sales", *overrides)
    stage_of(ctx)
    first = versions(ctx, SALES_TABLES)
    assert first == dict.fromkeys(SALES_TABLES, 0)

    # Replay: every table holds the token, so the job does no work at all.
    replay = stage_of(make_ctx(spark, make_config, "ingest_sales", *overrides))
    assert replay.lines[0][0] == "already ingested"
    assert [(w.table, w.version, w.committed) for w in replay.writes] == [
        (name, 0, False) for name in ("sales", "sales_quarantine", "stores", "stores_quarantine")
    ]
    # Even when the job does validate again (no early exit), the tokens skip every write.
    monkeypatch.setattr(ingest_sales, "replay_summary", lambda ctx, contracts: None)
    again = stage_of(make_ctx(spark, make_config, "ingest_sales", *overrides))
    assert again.metrics["sales.input_rows"] == 2_000
    assert [w.committed for w in again.writes] == [False] * 4
    assert versions(ctx, SALES_TABLES) == first

    # A later run date publishes the snapshot again: a new version, the same rows, no doubles.
    later = make_ctx(spark, make_config, "ingest_sales", *overrides, run_date=NEXT_DATE)
    stage_of(later)
    assert versions(later, SALES_TABLES) == dict.fromkeys(SALES_TABLES, 1)
    sales = later.tables.read("sales")
    assert sales.count() == 2_000
    assert sales.select("run_date").distinct().collect() == [(NEXT_DATE,)]
    assert later.tables.read("sales", version=0).select("run_date").distinct().collect() == [
        (RUN_DATE,)
    ]


def test_dry_run_counts_and_writes_nothing(spark, make_config, datasets_dir, store_csv, tmp_path):
    header, real = head_lines(datasets_dir / "rossmann" / "train.csv.gz", 500)
    train = write_gz(tmp_path / "train.csv.gz", header, [*real, real[0]])
    ctx = make_ctx(
        spark, make_config, "ingest_sales", *sales_overrides(train, store_csv), dry_run=True
    )
    summary = stage_of(ctx)
    assert summary.metrics["sales.good_rows"] == 500
    assert summary.metrics["sales.quarantined.duplicate_key"] == 1
    assert summary.writes == []
    assert versions(ctx, SALES_TABLES) == dict.fromkeys(SALES_TABLES)


@pytest.mark.slow
def test_full_rossmann_train_file(spark, make_config, datasets_dir, store_csv):
    """The complete 1,017,209-row train.csv: all rows good, counts as the datasets README says."""
    train = datasets_dir / "rossmann" / "train.csv.gz"
    ctx = make_ctx(spark, make_config, "ingest_sales", *sales_overrides(train, store_csv))
    summary = stage_of(ctx)
    assert summary.metrics["sales.good_rows"] == 1_017_209
    assert summary.metrics["sales.quarantined_rows"] == 0
    sales = ctx.tables.read("sales")
    assert sales.where("open = 1").count() == 844_392
    holidays = {
        r["state_holiday"]: r["count"] for r in sales.groupBy("state_holiday").count().collect()
    }
    assert holidays == {"0": 986_159, "a": 20_260, "b": 6_690, "c": 4_100}
    assert sales.select(F.countDistinct("store")).first()[0] == 1115


# ----------------------------------------------------------------------------------------------
# Bank
# ----------------------------------------------------------------------------------------------
def test_bank_real_slice(spark, make_config, datasets_dir, tmp_path):
    header, real = head_lines(datasets_dir / "bank_marketing" / "bank-full.csv.gz", 3_000)
    client = '30;"student";"single";"secondary";"no";100;"no";"no";"cellular";5;"may";100;1;-1;0;"unknown";'
    injected = [client + '"maybe"', "abc" + client[2:] + '"no"', '30;"student";"single"']
    path = write_gz(tmp_path / "bank.csv.gz", header, real[:1500] + injected + real[1500:])
    ctx = make_ctx(spark, make_config, "ingest_bank", f"sources.bank.path={path}")

    summary = stage_of(ctx)

    m = summary.metrics
    assert (m["bank.input_rows"], m["bank.good_rows"], m["bank.quarantined_rows"]) == (
        3_003,
        3_000,
        3,
    )
    rules = sorted((r["age"], r["rule"], r["reason"]) for r in quarantine(ctx, "bank_quarantine"))
    assert rules == [
        ("30", "malformed_line", "malformed line: expected 17 fields separated by ';': "
         '30;"student";"single"'),
        ("30", "out_of_domain", "y: value 'maybe' not in {yes, no}"),
        ("abc", "unparseable", "age: not an integer 'abc'"),
    ]  # fmt: skip
    bank = ctx.tables.read("bank")
    assert_schema(bank, BANK.schema)
    expected = frame(real, header, sep=";")
    got = {r["y"]: r["count"] for r in bank.groupBy("y").count().collect()}
    assert got == expected["y"].value_counts().to_dict()
    assert bank.agg(F.sum("balance")).first()[0] == expected["balance"].astype(int).sum()


def test_bank_additional_layout_is_refused(spark, make_config, datasets_dir):
    path = datasets_dir / "bank_marketing" / "bank-additional-full.csv.gz"
    ctx = make_ctx(spark, make_config, "ingest_bank", f"sources.bank.path={path}")
    with pytest.raises(JobFailed) as info:
        stage_of(ctx)
    message = str(info.value)
    assert "expected 17 columns 'age;job;marital;education;default;balance;" in message
    assert "found 21 columns 'age;job;marital;education;default;housing;" in message
    assert "emp.var.rate" in message and "\n" not in message
    assert versions(ctx, ["bank", "bank_quarantine"]) == {"bank": None, "bank_quarantine": None}


# ----------------------------------------------------------------------------------------------
# Rides
# ----------------------------------------------------------------------------------------------
def expected_ride_outcome(df: pd.DataFrame, low: str, high: str, max_hours: float) -> pd.Series:
    """Independent pandas oracle for the ride rules (on a slice with no malformed values)."""
    pickup = pd.to_datetime(df["pickup_datetime"])
    dropoff = pd.to_datetime(df["dropoff_datetime"])
    number = {c: pd.to_numeric(df[c]) for c in ("trip_distance", "fare_amount", "total_amount")}
    outside = (pickup < low) | (pickup >= high) | (dropoff < low) | (dropoff >= high)
    bad = (
        (number["trip_distance"] < 0)
        | (number["fare_amount"] < 0)
        | (number["total_amount"] < 0)
        | (dropoff < pickup)
        | ((dropoff - pickup).dt.total_seconds() > max_hours * 3600)
        | outside
    )
    return bad | df.duplicated()


def test_rides_real_month_quarantines_out_of_period(spark, make_config, datasets_dir, tmp_path):
    # Data rows 190,001..200,000 are the 2019-08 sample, which holds a ride dated 2008-12-31.
    source = datasets_dir / "taxi" / "nyc_yellow_tripdata_sample_2018-2020.csv.gz"
    header, real = head_lines(source, 10_000, skip=190_000)
    path = write_gz(tmp_path / "rides.csv.gz", header, real)
    ctx = make_ctx(spark, make_config, "ingest_rides", f"sources.rides.path={path}")

    summary = stage_of(ctx)

    df = frame(real, header)
    bad = expected_ride_outcome(df, "2019-07-25", "2019-09-08", 24.0)
    m = summary.metrics
    assert m["rides.input_rows"] == 10_000
    assert (m["rides.good_rows"], m["rides.quarantined_rows"]) == (10_000 - bad.sum(), bad.sum())
    assert m["rides.quarantined.outside_period"] == 1
    assert m["rides.period_days"] == 31
    assert dict(summary.lines)["rides period"].startswith("2019-08-01..2019-08-31")

    (far,) = [r for r in quarantine(ctx, "rides_quarantine") if r["rule"] == "outside_period"]
    assert far["pickup_datetime"] == "2008-12-31 23:49:36"
    assert "outside the file's period 2019-08-01..2019-08-31" in far["reason"]

    rides = ctx.tables.read("rides")
    assert_schema(rides, RIDES.schema)
    good = df[~bad]
    # Empty optional TLC fields are nulls, zero distances are kept.
    assert rides.where("vendor_id IS NULL").count() == (good["vendor_id"] == "").sum() > 0
    assert (
        rides.where("trip_distance = 0").count()
        == (good["trip_distance"].astype(float) == 0).sum()
        > 0
    )
    dates = pd.to_datetime(good["pickup_datetime"]).dt.date.value_counts().to_dict()
    got = {r["pickup_date"]: r["count"] for r in rides.groupBy("pickup_date").count().collect()}
    assert got == dates
    assert DeltaTable(ctx.tables.ref("rides").uri).metadata().partition_columns == ["pickup_month"]


# ----------------------------------------------------------------------------------------------
# Synthetic fallback
# ----------------------------------------------------------------------------------------------
def test_synthetic_fallback_when_paths_are_missing(spark, make_config, tmp_path):
    missing = tmp_path / "absent.csv.gz"
    bank_ctx = make_ctx(spark, make_config, "ingest_bank", f"sources.bank.path={missing}")
    bank = stage_of(bank_ctx)
    source = dict(bank.lines)["bank source"]
    assert source.endswith("(synthetic)") and str(missing) not in source
    assert bank.metrics["bank.input_rows"] == bank_ctx.config.synthetic.bank_rows == 800
    assert bank.metrics["bank.quarantined_rows"] == 0

    rides_ctx = make_ctx(spark, make_config, "ingest_rides")  # test env: path is null
    rides = stage_of(rides_ctx)
    assert dict(rides.lines)["rides source"].endswith("(synthetic)")
    assert rides.metrics["rides.input_rows"] == 3_000
    # The planted quirks: one dropoff before pickup, one ride ten years back; zero distances stay.
    assert {r["rule"] for r in quarantine(rides_ctx, "rides_quarantine")} == {
        "dropoff_before_pickup",
        "outside_period",
    }
    assert rides.metrics["rides.quarantined_rows"] == 2
    assert rides_ctx.tables.read("rides").where("trip_distance = 0").count() == 3

    sales_ctx = make_ctx(spark, make_config, "ingest_sales")
    sales = stage_of(sales_ctx)
    assert sales.metrics["sales.input_rows"] == 6 * 212  # test env: 6 stores, 2015-01..07
    assert sales.metrics["stores.good_rows"] == 6

    strict = make_ctx(
        spark,
        make_config,
        "ingest_bank",
        f"sources.bank.path={missing}",
        "sources.bank.if_missing=error",
        run_date=NEXT_DATE,
    )
    with pytest.raises(JobFailed, match=f"source file {missing} does not exist"):
        stage_of(strict)


def test_budget_helper_reports_empty_sources() -> None:
    counts = _ingest.IngestCounts(input_rows=0, good_rows=0, by_rule={})
    assert "no data rows" in _ingest.budget_error("sales", counts, 0.01)
    counts = _ingest.IngestCounts(input_rows=100, good_rows=99, by_rule={"negative_value": 1})
    assert _ingest.budget_error("sales", counts, 0.01) is None


def test_impossible_dates_are_quarantined_and_do_not_make_the_table_fresh(
    spark, make_config, datasets_dir, store_csv, tmp_path
):
    """A Rossmann-shaped file (the stale first days of 2013) with one row dated 2031 and one
    dated 0015 among good rows: both used to become good ``sales`` rows; the 2031 row made the
    stale table look fresh, the 0015 row failed that store's model with OutOfBoundsDatetime."""
    header, real = head_lines(datasets_dir / "rossmann" / "train.csv.gz", 3_000, skip=1_014_000)
    assert real[0].split(",")[2].startswith("2013-01")  # the oldest days: stale for 2015-08-01
    impossible = [
        '3001,1,2031-06-09,5263,555,1,1,"0","1"',  # future: after run date + 1830 days
        '3002,1,0015-06-01,5263,555,1,1,"0","1"',  # before ingest.min_date (1900-01-01)
        '3003,2,2014-03-04,5263,555,1,1,"0","1"',  # plausible, but far outside the file's period
    ]
    train = write_gz(tmp_path / "train.csv.gz", header, [*real, *impossible])
    overrides = (*sales_overrides(train, store_csv), "ingest.bad_row_budget=0.01")
    ctx = make_ctx(spark, make_config, "ingest_sales", *overrides)
    with pytest.raises(JobFailed) as failed:
        stage_of(ctx)
    # Freshness is judged on the good rows: the file is stale, the 2031 row cannot hide it.
    assert "freshness" in str(failed.value) and "stale" in str(failed.value)

    fresh_enough = (*overrides, "validation.tables.sales.max_staleness_days=1000")
    ctx = make_ctx(spark, make_config, "ingest_sales", *fresh_enough)
    summary = stage_of(ctx)
    assert summary.metrics["sales.quarantined_rows"] == 3
    rows = {r["store"]: (r["rule"], r["reason"]) for r in quarantine(ctx, "sales_quarantine")}
    assert rows["3001"][0] == "implausible_date" and "2031-06-09" in rows["3001"][1]
    assert "ingest.max_days_after_run_date" in rows["3001"][1]
    assert rows["3002"][0] == "implausible_date" and "before 1900-01-01" in rows["3002"][1]
    assert rows["3003"][0] == "outside_period" and "2013-01-01..2013-01-31" in rows["3003"][1]
    dates = ctx.tables.read("sales").agg(F.min("date"), F.max("date")).first()
    assert dates[0] >= dt.date(2013, 1, 1) and dates[1] <= dt.date(2013, 1, 31)
