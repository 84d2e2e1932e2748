"""Poison groups and failure budgets at platform level, for every grouped job: a poison group or
batch gets its own ``failed`` status row (the job keeps going); above the job's failure budget
nothing is published, nothing is registered and the exit code is 1.

Forecasting uses its MLCORE_FAULT_GROUPS seam; anomaly detection gets a poisoned batch through
a test-side wrapper of ``cluster_batch`` (the real isolation code then sees NaN features); the
classifier's grouped work is the candidate x fold search. Finer cases live in
tests/unit/test_forecasting_group.py (poison fixtures per group), test_anomaly.py and
test_classification.py::test_failed_candidate_is_recorded_not_raised.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from mlcore.runner import run_job
from tests.conftest import CONF_DIR
from tests.reliability.conftest import (
    ARGS,
    FAST_FORECASTING,
    FORECAST_OUTPUTS,
    job_runs,
    lake_path,
    registry,
    scan,
    write_sales,
)

pytestmark = pytest.mark.reliability


def test_forecasting_poison_groups_and_budget(spark, tables, mlcore_home, monkeypatch, capsys):
    write_sales(spark, tables, 3)
    monkeypatch.setenv("MLCORE_FAULT_GROUPS", "1,3")
    args = [*ARGS, *FAST_FORECASTING]

    assert run_job("train_forecasts", [*args, "--set", "forecasting.failure_budget=0.5"]) == 1
    err = capsys.readouterr().err
    assert (
        "train_forecasts: FAILED: 2 of 3 groups failed (66.7% > failure budget 50.0%); nothing published"
        in err
    )
    assert not any(lake_path(mlcore_home, name).exists() for name in FORECAST_OUTPUTS)
    client = registry(mlcore_home)
    assert client.search_registered_models() == []
    (run,) = job_runs(client, "train_forecasts")
    assert run.info.status == "FAILED"

    # Within budget: published; every group has exactly one status row, the poison ones failed.
    assert run_job("train_forecasts", [*args, "--set", "forecasting.failure_budget=0.7"]) == 0
    models = scan(lake_path(mlcore_home, "forecast_models")).set_index("store").sort_index()
    assert models.index.tolist() == [1, 2, 3]
    assert models["status"].tolist() == ["failed", "ok", "failed"]
    assert models.loc[[1, 3], "error_class"].tolist() == ["InjectedFault", "InjectedFault"]
    assert models.loc[[1, 3], "model_json"].isna().all() and models.loc[2, "model_json"]
    metrics = scan(lake_path(mlcore_home, "forecast_metrics"))
    assert set(metrics["store"]) == {2}, "failed groups contribute no metrics"
    (run,) = job_runs(client, "train_forecasts")
    assert run.info.status == "FINISHED" and run.data.metrics["groups_failed"] == 2.0
    assert len(client.search_model_versions("name = 'store_forecaster'")) == 1


def test_budget_failure_keeps_its_failure_report(spark, tables, mlcore_home, monkeypatch):
    write_sales(spark, tables, 2)
    monkeypatch.setenv("MLCORE_FAULT_GROUPS", "1,2")  # no Prophet fit at all: cheap
    assert run_job("train_forecasts", ARGS) == 1
    client = registry(mlcore_home)
    (run,) = job_runs(client, "train_forecasts")
    assert "failures.csv" in {a.path for a in client.list_artifacts(run.info.run_id)}


@pytest.fixture
def rides(spark, tables):
    from mlcore.ingest.schemas import RIDES_SCHEMA
    from tests.integration.test_anomaly_jobs import ride_frame

    frame = ride_frame()
    ordered = frame[RIDES_SCHEMA.fieldNames()].astype(
        {"pickup_datetime": "datetime64[us]", "dropoff_datetime": "datetime64[us]"}
    )
    tables.write(spark.createDataFrame(ordered, RIDES_SCHEMA), "rides", mode="overwrite")
    return frame


def test_anomaly_poison_batch_and_budget(rides, mlcore_home, monkeypatch, capsys):
    import mlcore.anomaly.distributed as distributed

    real_cluster_batch = distributed.cluster_batch
    poison_day = dt.date(2019, 1, 8)

    def poisoned(frame, settings):
        day = (frame["pickup_ts_us"].iloc[0] // 86_400_000_000) * 86_400
        if dt.datetime.fromtimestamp(day, dt.timezone.utc).date() == poison_day:
            frame = frame.assign(**{settings.features[0]: np.nan})  # e.g. a corrupt feature column
        return real_cluster_batch(frame, settings)

    monkeypatch.setattr(distributed, "cluster_batch", poisoned)
    args = [*ARGS[:-1], "2019-01-11", "--set", "anomaly.batch_days=3"]  # batches 01-08 .. 01-10
    outputs = ("ride_anomalies", "ride_anomaly_batches", "ride_anomalies_quarantine")

    assert run_job("detect_anomalies", args) == 1
    err = capsys.readouterr().err
    assert "1 of 3 batches failed (> budget 5%); nothing published" in err
    assert "First: ValueError: Input X contains NaN" in err
    assert not any(lake_path(mlcore_home, name).exists() for name in outputs)

    assert run_job("detect_anomalies", [*args, "--set", "anomaly.batch_failure_budget=0.5"]) == 0
    batches = scan(lake_path(mlcore_home, "ride_anomaly_batches")).sort_values("pickup_date")
    assert batches["status"].tolist() == ["failed", "ok", "ok"]
    assert batches["status_reason"].iloc[0].startswith("ValueError: Input X contains NaN")
    flagged = scan(lake_path(mlcore_home, "ride_anomalies"))
    assert sorted(set(flagged["pickup_date"])) == [dt.date(2019, 1, 9), dt.date(2019, 1, 10)]
    assert not flagged.duplicated(["row_key"]).any()
    assert len(flagged) == batches.loc[batches["status"] == "ok", "rows"].sum()


def test_classifier_search_where_every_candidate_fails(spark, mlcore_home, capsys):
    args = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", "2015-06-14"]
    assert run_job("ingest_bank", args) == 0
    capsys.readouterr()
    poison = ["--set", "classification.search_spaces.random_forest.max_depth=[-3]"]
    assert run_job("train_classifier", [*args, *poison]) == 1
    err = capsys.readouterr().err
    assert (
        "train_classifier: FAILED: randomized search: every candidate failed; first error:" in err
    )
    assert "max_depth" in err and "\n" not in err.split("FAILED: ", 1)[1].rstrip("\n")
    client = registry(mlcore_home)
    assert client.search_registered_models() == []
    (run,) = job_runs(client, "train_classifier", dt.date(2015, 6, 14))
    assert run.info.status == "FAILED"
