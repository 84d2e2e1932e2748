"""A small real lake for the planners' service tests: 8 Rossmann stores (sales, stores, the
future calendar from test.csv), trained and forecast by the jobs for two run dates, and their
neighbours, under one MLCORE_HOME shared by the service tests (each mutating test copies it)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from tests.conftest import CONF_DIR, DATASETS_DIR

STORES = 8
TRAIN_DATE = dt.date(2015, 6, 14)
RUN_DATES = (dt.date(2015, 6, 14), dt.date(2015, 6, 21))


def job_args(run_date: dt.date, *extra: str) -> list[str]:
    return ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", run_date.isoformat(), *extra]


def build_lake(spark, home: Path) -> Path:
    """Write the inputs, then run train_forecasts, make_forecasts (twice) and find_similar_stores
    as a user would, with ``MLCORE_HOME=home``."""
    from pyspark.sql import functions as F

    from mlcore.config.loader import load_config
    from mlcore.ingest.rules import classify_calendar, classify_stores, split
    from mlcore.ingest.schemas import CALENDAR
    from mlcore.ingest.schemas import STORES as STORES_CONTRACT
    from mlcore.ingest.sources import read_csv_source
    from mlcore.io import DeltaTables
    from mlcore.runner import run_job
    from tests.integration.test_forecasting_jobs import rossmann_stores, write_sales

    if not (DATASETS_DIR / "rossmann" / "train.csv.gz").exists():
        pytest.skip(f"real datasets not found at {DATASETS_DIR}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLCORE_HOME", str(home))
        config = load_config("test", conf_dir=CONF_DIR, environ={"MLCORE_HOME": str(home)})
        tables = DeltaTables(spark, config, commit_metadata={"mlcore.job": "tests"})
        write_sales(spark, tables, rossmann_stores(STORES))
        stamp = {"run_id": F.lit("fixture"), "run_date": F.lit(dt.date(2015, 8, 1))}
        for path, contract, classify, table in (
            ("store.csv.gz", STORES_CONTRACT, classify_stores, "stores"),
            ("test.csv.gz", CALENDAR, classify_calendar, "forecast_calendar"),
        ):
            raw = read_csv_source(spark, str(DATASETS_DIR / "rossmann" / path), contract)
            good, _bad = split(classify(raw), contract)
            rows = good.filter(F.col("store") <= STORES).withColumns(stamp)
            tables.write(rows.select(*contract.schema.fieldNames()), table)
        assert run_job("train_forecasts", job_args(TRAIN_DATE)) == 0
        for run_date in RUN_DATES:
            assert run_job("make_forecasts", job_args(run_date)) == 0
        assert run_job("find_similar_stores", job_args(TRAIN_DATE)) == 0
    return home


def copy_lake(source: Path, target: Path) -> Path:
    """A private copy of the lake and its MLflow store (for a test that publishes into it)."""
    shutil.copytree(source, target)
    return target
