"""detect_anomalies, train_anomaly_model, score_anomalies and score_batch through the job runner on
a rides table with planted outliers and planted data quirks: one status row per batch, exact
quarantine counts, idempotent reruns, and score_batch committing one scorer's output when the
other fails."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from mlcore.runner import run_job
from tests.conftest import CONF_DIR

ARGS = ["--env", "test", "--conf-dir", str(CONF_DIR)]
FIRST_DAY = dt.date(2019, 1, 1)
DAYS = 10
RUN_DATE = FIRST_DAY + dt.timedelta(days=DAYS)  # the batch is the last day, 2019-01-10
QUIRKS = {"zero_distance": 2, "non_positive_duration": 1, "duration_too_long": 1, "speed_implausible": 1}


def ride_frame(seed: int = 0) -> pd.DataFrame:
    """150 normal rides a day plus 3 very long ones; the last day also carries the QUIRKS."""
    rng = np.random.default_rng(seed)
    parts = []
    for offset in range(DAYS):
        day = pd.Timestamp(FIRST_DAY + dt.timedelta(days=offset))
        distance = np.r_[rng.uniform(0.5, 10, 150), rng.uniform(35, 45, 3)]
        speed = np.r_[np.clip(rng.normal(15, 3, 150), 5, 30), rng.normal(15, 2, 3)]
        minutes = 60 * distance / speed
        if offset == DAYS - 1:  # 2 x zero distance, dropoff == pickup, 7 hours, 150 mph
            distance = np.r_[distance, 0.0, 0.0, 3.0, 30.0, 25.0]
            minutes = np.r_[minutes, 12.0, 8.0, 0.0, 420.0, 10.0]
        pickup = day + pd.to_timedelta(rng.uniform(0, 23 * 3600, len(distance)).round(), unit="s")
        parts.append(
            pd.DataFrame(
                {
                    "pickup_datetime": pickup,
                    "dropoff_datetime": pickup + pd.to_timedelta((minutes * 60).round(), unit="s"),
                    "trip_distance": distance.round(2),
                    "fare_amount": (2.5 + 2.5 * distance).round(2),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    n = len(frame)
    frame = frame.assign(
        vendor_id=1, passenger_count=1, rate_code_id=1, store_and_fwd_flag="N",
        pickup_location_id=rng.integers(1, 264, n), dropoff_location_id=rng.integers(1, 264, n),
        payment_type=1, extra=0.5, mta_tax=0.5, tip_amount=0.0, tolls_amount=0.0, improvement_surcharge=0.3,
        total_amount=frame["fare_amount"] + 1.3, congestion_surcharge=None,
        pickup_date=frame["pickup_datetime"].dt.date, pickup_month=frame["pickup_datetime"].dt.strftime("%Y-%m"),
        run_id="fixture", run_date=dt.date(2019, 2, 1),
    )  # fmt: skip
    return frame


@pytest.fixture
def rides(spark, tables) -> pd.DataFrame:
    from mlcore.ingest.schemas import RIDES_SCHEMA

    frame = ride_frame()
    ordered = frame[RIDES_SCHEMA.fieldNames()].astype({"pickup_datetime": "datetime64[us]", "dropoff_datetime": "datetime64[us]"})
    tables.write(spark.createDataFrame(ordered, RIDES_SCHEMA), "rides", mode="overwrite")
    return frame


def lake(home: Path, name: str) -> DeltaTable:
    return DeltaTable(str(home / "lake" / name))


def test_detect_anomalies_batches_quarantine_and_idempotency(rides, mlcore_home, capsys):
    args = [*ARGS, "--run-date", RUN_DATE.isoformat()]
    assert run_job("detect_anomalies", args) == 0
    quarantine = lake(mlcore_home, "ride_anomalies_quarantine").to_pandas()
    assert quarantine.groupby("rule").size().to_dict() == QUIRKS
    assert quarantine["reason"].str.contains("mph|miles| s: | h >").all()
    batches = lake(mlcore_home, "ride_anomaly_batches").to_pandas()
    assert len(batches) == 1 and batches["status"].tolist() == ["ok"] and batches["rows"].tolist() == [153]
    anomalies = lake(mlcore_home, "ride_anomalies").to_pandas()
    assert len(anomalies) == 153 and anomalies["row_key"].is_unique
    assert int(anomalies["is_anomaly"].sum()) == int(batches["anomalies"].iloc[0])
    long_rides = anomalies[anomalies["distance_miles"] > 30]
    assert len(long_rides) == 3 and long_rides["is_anomaly"].all(), "the planted 40-mile rides are flagged"
    assert anomalies["is_anomaly"].mean() < 0.1
    versions = {n: lake(mlcore_home, n).version() for n in ("ride_anomalies", "ride_anomaly_batches", "ride_anomalies_quarantine")}

    capsys.readouterr()
    assert run_job("detect_anomalies", args) == 0
    assert "already published" in capsys.readouterr().out
    assert {n: lake(mlcore_home, n).version() for n in versions} == versions

    # Backfill: three days in one run for another run date, one status row per batch.
    assert run_job("detect_anomalies", [*ARGS, "--run-date", "2019-01-05", "--set", "anomaly.batch_days=3"]) == 0
    batches = lake(mlcore_home, "ride_anomaly_batches").to_pandas()
    backfill = batches[batches["run_date"] == dt.date(2019, 1, 5)]
    assert sorted(backfill["pickup_date"]) == [dt.date(2019, 1, d) for d in (2, 3, 4)]
    assert (backfill["status"] == "ok").all() and (backfill["rows"] == 153).all()


def test_train_and_score_anomalies(rides, mlcore_home, capsys):
    from mlflow.tracking import MlflowClient

    args = [*ARGS, "--run-date", RUN_DATE.isoformat()]
    assert run_job("train_anomaly_model", args) == 0
    uri = f"sqlite:///{mlcore_home / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    model = client.get_registered_model("ride_anomaly_model")
    assert {a: str(v) for a, v in model.aliases.items()} == {"champion": "1", "challenger": "1"}
    version = client.get_model_version("ride_anomaly_model", "1")
    assert float(version.tags["mlcore.metric.dbscan_auc"]) > 0.8
    run = client.get_run(version.run_id)
    assert run.data.metrics["rows_holdout"] == 3 * 153 + 0 and run.data.metrics["rides_quarantined"] == 5

    assert run_job("score_anomalies", args) == 0
    scores = lake(mlcore_home, "ride_anomaly_scores").to_pandas()
    assert len(scores) == 153 and scores["row_key"].is_unique
    np.testing.assert_array_equal(scores["is_anomaly"], scores["anomaly_score"] > scores["threshold"])
    top = scores.nlargest(5, "anomaly_score")
    assert (top["distance_miles"] > 30).sum() == 3, "the planted 40-mile rides score highest"
    assert 0 < scores["is_anomaly"].sum() <= 8
    assert set(scores["model_version"]) == {1}
    quarantine = lake(mlcore_home, "ride_anomaly_scores_quarantine").to_pandas()
    assert quarantine.groupby("rule").size().to_dict() == QUIRKS

    before = lake(mlcore_home, "ride_anomaly_scores").version()
    assert run_job("score_anomalies", args) == 0
    assert run_job("train_anomaly_model", args) == 0
    assert lake(mlcore_home, "ride_anomaly_scores").version() == before
    assert len(client.search_model_versions("name = 'ride_anomaly_model'")) == 1


def test_score_batch_commits_one_scorer_when_the_other_fails(rides, mlcore_home, capsys):
    args = [*ARGS, "--run-date", RUN_DATE.isoformat()]
    assert run_job("train_anomaly_model", args) == 0
    assert run_job("ingest_bank", args) == 0
    capsys.readouterr()
    # No classifier is registered yet: that scorer fails, the anomaly scorer still commits.
    assert run_job("score_batch", args) == 1
    err = capsys.readouterr().err
    assert "classifier failed" in err and "no alias 'champion'" in err and "committed anyway: ride_anomaly_scores" in err
    assert len(lake(mlcore_home, "ride_anomaly_scores").to_pandas()) == 153
    assert not (mlcore_home / "lake" / "bank_scores").exists()

    # With both models registered, both scorers run concurrently and both commit.
    assert run_job("train_classifier", args) == 0
    next_day = [*ARGS, "--run-date", (RUN_DATE + dt.timedelta(days=1)).isoformat(), "--set", "anomaly.batch_days=2"]
    capsys.readouterr()
    assert run_job("score_batch", next_day) == 0
    out = capsys.readouterr().out
    assert "parallel (classifier, anomaly)" in out
    assert len(lake(mlcore_home, "bank_scores").to_pandas()) == 800
    assert lake(mlcore_home, "ride_anomaly_scores").to_pandas().groupby("run_date").size().tolist() == [153, 153]


def test_score_batch_in_the_chain_leaves_out_a_scorer_whose_input_was_not_written(
    rides, make_config, mlcore_home, capsys
):
    """The chain's typed request: bank was not written tonight (its ingest failed), so the
    classifier scorer does not score yesterday's table under tonight's token; rides still are."""
    from mlcore.pipelines.context import JobRequest
    from mlcore.runner import execute

    args = [*ARGS, "--run-date", RUN_DATE.isoformat()]
    assert run_job("train_anomaly_model", args) == 0
    assert run_job("ingest_bank", args) == 0
    assert run_job("train_classifier", args) == 0
    capsys.readouterr()
    request = JobRequest(
        "score_batch", make_config(), RUN_DATE, blocked={"bank": "ingest_bank failed"},
        pipeline_run_id="chain",
    )  # fmt: skip
    result = execute(request)
    assert result.exit_code == 1
    assert result.error is not None and result.error.affects == ("bank_scores",)
    assert "classifier failed: not run: needs bank (ingest_bank failed)" in result.reason
    assert len(lake(mlcore_home, "ride_anomaly_scores").to_pandas()) == 153
    assert not (mlcore_home / "lake" / "bank_scores").exists()
