"""The grouped runs on Spark: ``applyInArrow`` (the default for plain column types) gives exactly
the rows ``applyInPandas`` gives, in training (one per group, poison groups included) and in
forecasting's cogroup (forecast rows plus one status row per group, damaged models included)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlcore.config.models import ForecastingConfig
from mlcore.forecasting import distributed
from mlcore.forecasting.schemas import model_schema

RUN_DATE = dt.date(2015, 6, 14)
TIMINGS = ("fit_seconds", "backtest_seconds")


def sales_history() -> pd.DataFrame:
    """Three healthy stores (weekly pattern, promo effect, Sundays closed), a store with two rows
    (skipped) and a store whose sales are all null (skipped or failed, never raised)."""
    rng = np.random.default_rng(7)
    days = pd.date_range(RUN_DATE - dt.timedelta(days=500), RUN_DATE - dt.timedelta(days=1))
    frames = []
    for store in (1, 2, 3):
        dow = days.dayofweek.to_numpy()
        promo = (rng.random(len(days)) < 0.3).astype(int)
        open_ = (dow != 6).astype(int)
        sales = (5000 + 400 * store + 300 * (dow == 0) + 900 * promo) * rng.normal(1, 0.05, len(days))
        frames.append(
            pd.DataFrame(
                {
                    "store": store,
                    "date": days.date,
                    "sales": pd.Series((sales * open_).round(), dtype="Int64"),
                    "open": open_,
                    "promo": promo,
                    "school_holiday": (rng.random(len(days)) < 0.1).astype(int),
                    "state_holiday": np.where(rng.random(len(days)) < 0.02, "a", "0"),
                }
            )
        )
    frames.append(frames[0].head(2).assign(store=4))
    frames.append(frames[1].head(200).assign(store=5, sales=pd.NA))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def history(spark):
    schema = (
        "date date, open int, promo int, sales int, school_holiday int, state_holiday string, "
        "store int"
    )
    frame = sales_history()[["date", "open", "promo", "sales", "school_holiday", "state_holiday", "store"]]
    rows = [
        tuple(None if v is pd.NA else (v.item() if hasattr(v, "item") else v) for v in r)
        for r in frame.itertuples(index=False)
    ]
    return spark.createDataFrame(rows, schema)


def collected(df) -> list[dict]:
    rows = [r.asDict(recursive=True) for r in df.orderBy("store").collect()]
    for row in rows:
        for name in TIMINGS:
            assert row.pop(name) >= 0
    return rows


def featured(config: ForecastingConfig):
    """The shared features, added once the rows are partitioned by group (as the job does)."""
    from mlcore.forecasting.features import add_features

    return lambda rows: add_features(rows, config)


def test_arrow_and_pandas_group_runs_give_the_same_rows(spark, history, monkeypatch):
    config = ForecastingConfig()
    assert distributed.arrow_groups_supported(history.schema)
    arrow = collected(
        distributed.train_groups(history, config, RUN_DATE, partitions=3, features=featured(config))
    )
    monkeypatch.setattr(distributed, "arrow_groups_supported", lambda schema: False)
    plain = distributed.train_groups(history, config, RUN_DATE, partitions=3, features=featured(config))
    assert "FlatMapGroupsInPandas" in plain._jdf.queryExecution().optimizedPlan().toString()
    pandas_rows = collected(plain)
    assert [r["store"] for r in arrow] == [1, 2, 3, 4, 5]  # exactly one row per group
    assert arrow == pandas_rows
    statuses = {r["store"]: r["status"] for r in arrow}
    assert statuses[1] == statuses[2] == statuses[3] == "ok", [r["status_reason"] for r in arrow]
    assert {r["champion"] for r in arrow[:3]} <= {"lightgbm", "seasonal_naive"}
    assert statuses[4] == "skipped" and statuses[5] in ("skipped", "failed")
    ok = arrow[0]
    assert ok["model_json"] and ok["train_end"] == RUN_DATE - dt.timedelta(days=1)
    assert ok["metrics"] and all(m["value"] is None or m["value"] == m["value"] for m in ok["metrics"])


def forecast_rows(df) -> list[dict]:
    return [r.asDict() for r in df.orderBy("store", distributed.ROW_KIND, "ds").collect()]


def test_arrow_and_pandas_forecast_runs_give_the_same_rows(spark, history, monkeypatch):
    """Store 1 healthy, store 2's champion JSON altered after training (its baseline forecasts),
    store 3 without calendar rows (failed), store 9 with calendar rows but no model (nothing)."""
    from pyspark.sql import functions as F

    config = ForecastingConfig()
    trained = distributed.train_groups(history, config, RUN_DATE, partitions=3, features=featured(config))
    wanted = ["champion", "model_json", "baseline_json", "model_sha256", "baseline_sha256", "history_max"]
    models = trained.filter("store in (1, 2, 3)").select("store", *wanted).withColumn(
        "model_json",
        F.when(F.col("store") == 2, F.concat(F.col("model_json"), F.lit(" "))).otherwise(F.col("model_json")),
    )
    models = spark.createDataFrame(models.collect(), models.schema)  # train once, not per run
    days = [RUN_DATE + dt.timedelta(days=d) for d in range(config.horizon_days)]
    calendar = spark.createDataFrame(
        [(store, day, int(day.weekday() != 6), day.day % 2, 0, "0") for store in (1, 2, 9) for day in days],
        "store int, date date, open int, promo int, school_holiday int, state_holiday string",
    )
    assert distributed.arrow_groups_supported(calendar.schema)
    arrow_run = distributed.forecast_groups(models, calendar, config, 3, featured(config))
    assert "FlatMapCoGroupsInArrow" in arrow_run._jdf.queryExecution().optimizedPlan().toString()
    arrow = forecast_rows(arrow_run)
    monkeypatch.setattr(distributed, "arrow_groups_supported", lambda schema: False)
    plain = distributed.forecast_groups(models, calendar, config, 3, featured(config))
    assert "FlatMapCoGroupsInPandas" in plain._jdf.queryExecution().optimizedPlan().toString()
    assert forecast_rows(plain) == arrow

    statuses = {r["store"]: r for r in arrow if r[distributed.ROW_KIND] == distributed.STATUS_ROW}
    assert sorted(statuses) == [1, 2, 3]  # exactly one status row per group with a model
    assert statuses[1]["status"] == "ok" and statuses[1]["forecast_rows"] == config.horizon_days
    assert statuses[2]["status"] == "fallback" and "content hash mismatch" in statuses[2]["status_reason"]
    assert statuses[3]["status"] == "failed" and statuses[3]["forecast_rows"] == 0
    assert statuses[1]["ds"] is None and statuses[1]["yhat"] is None
    points = [r for r in arrow if r["store"] == 1 and r[distributed.ROW_KIND] == distributed.FORECAST_ROW]
    assert [r["ds"] for r in points] == days
    assert all(r["status"] == "ok" and r["yhat_lower"] <= r["yhat"] <= r["yhat_upper"] for r in points)
    assert {r["model_type"] for r in points} == {statuses[1]["model_type"]}


def test_arrow_row_follows_spark_pandas_output_conventions():
    schema = model_schema()
    row = {
        "store": np.int32(7),
        "status": "ok",
        "train_rows": np.int64(10),
        "warm_started": np.bool_(False),
        "fit_seconds": 0.5,
        "backtest_seconds": np.float64(0.25),
        "train_start": dt.date(2015, 1, 1),
        "metrics": [{"backtest_window": 0, "model": "prophet", "metric": "mape", "value": float("nan"), "n_obs": 3}],
        "backtest_points": [],
    }
    table = distributed.ArrowRow(schema).table(row)
    assert table.schema.names == schema.fieldNames()
    out = table.to_pylist()[0]
    assert out["store"] == 7 and out["train_rows"] == 10 and out["warm_started"] is False
    assert out["metrics"][0]["value"] is None  # NaN -> null, as applyInPandas stores it
    assert out["champion"] is None and out["backtest_points"] == []


def test_nested_or_timestamp_inputs_keep_apply_in_pandas(spark):
    from pyspark.sql.types import StructType

    assert not distributed.arrow_groups_supported(StructType.fromDDL("store int, ts timestamp"))
    assert not distributed.arrow_groups_supported(StructType.fromDDL("store int, xs array<int>"))
    assert distributed.arrow_groups_supported(StructType.fromDDL("store int, d date, y double"))


def test_a_fault_plan_passed_in_fails_exactly_its_groups(spark, history, monkeypatch):
    """The test seam is an argument: nothing in the environment changes what the domain does."""
    monkeypatch.setenv("MLCORE_FAULT_GROUPS", "1,2,3")  # read only by the pipeline, not here
    faults = distributed.GroupFaults(failing=frozenset({"4"}))
    config = ForecastingConfig()
    rows = collected(
        distributed.train_groups(
            history, config, RUN_DATE, partitions=2, faults=faults, features=featured(config)
        )
    )
    statuses = {r["store"]: (r["status"], r["error_class"]) for r in rows}
    assert statuses[4] == ("failed", "InjectedFault")
    assert all(statuses[s][0] == "ok" for s in (1, 2, 3))
    assert rows[3]["model_json"] is None and rows[3]["model_sha256"] is None


def test_grouped_stage_tasks_grow_with_the_groups_so_a_task_stays_bounded():
    from mlcore.config.models import ForecastingConfig
    from mlcore.forecasting.distributed import MAX_GROUPS_PER_TASK, group_partitions

    config = ForecastingConfig()
    assert group_partitions(2, config, 1115) == 16  # the calibrated 8 per core
    assert group_partitions(2, config, 30_000) == 60
    assert 30_000 / group_partitions(2, config, 30_000) <= MAX_GROUPS_PER_TASK
    assert group_partitions(2, config, 5) == 5
    assert group_partitions(2, ForecastingConfig(group_partitions=7), 30_000) == 7
