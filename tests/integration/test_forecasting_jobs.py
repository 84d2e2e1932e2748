"""train_forecasts + make_forecasts end to end on 20 real Rossmann stores: one status row per
group, idempotent reruns (no new rows, table versions or registry versions), registry aliases,
forecast accuracy against the real held-out days, incremental mode and the failure budget."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient

from mlcore.ingest.schemas import SALES
from mlcore.pipelines.monitor_drift import SCHEMA as DRIFT_SCHEMA
from mlcore.runner import run_job
from tests.conftest import CONF_DIR

RUN_DATE = dt.date(2015, 6, 14)
STORES = 20
ARGS = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", RUN_DATE.isoformat()]
pytestmark = pytest.mark.slow


def rossmann_stores(stores: int) -> pd.DataFrame:
    """The real Rossmann sales of stores 1..``stores``, shaped as the ``sales`` table."""
    from tests.conftest import DATASETS_DIR

    path = DATASETS_DIR / "rossmann" / "train.csv.gz"
    if not path.exists():
        pytest.skip(f"real datasets not found at {DATASETS_DIR}")
    frame = pd.read_csv(path, dtype={"StateHoliday": str}, parse_dates=["Date"])
    frame = frame[frame["Store"] <= stores].rename(columns=SALES.source_names)
    frame["date"] = frame["date"].dt.date
    frame["run_id"] = "fixture"
    frame["run_date"] = dt.date(2015, 8, 1)
    return frame.reset_index(drop=True)


@pytest.fixture(scope="module")
def rossmann_frame() -> pd.DataFrame:
    return rossmann_stores(STORES)


def write_sales(spark, tables, frame: pd.DataFrame) -> None:
    from mlcore.ingest.schemas import SALES_SCHEMA

    ordered = frame[SALES_SCHEMA.fieldNames()]
    tables.write(spark.createDataFrame(ordered, SALES_SCHEMA), "sales", mode="overwrite")


def versions(home: Path, *names: str) -> dict[str, int]:
    return {name: DeltaTable(str(home / "lake" / name)).version() for name in names}


def registry(home: Path) -> MlflowClient:
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_train_and_forecast_end_to_end(spark, tables, mlcore_home, rossmann_frame, capsys):
    write_sales(spark, tables, rossmann_frame)

    assert run_job("train_forecasts", ARGS) == 0
    out = capsys.readouterr().out
    assert "status ok" in out and "pooled WAPE champion" in out

    models = tables.read("forecast_models").toPandas()
    assert sorted(models["store"]) == list(range(1, STORES + 1)), "exactly one row per group"
    assert set(models["status"]) <= {"ok", "fallback", "skipped", "failed"}
    assert (models["status"] == "ok").sum() >= STORES - 1
    assert (pd.to_datetime(models["train_end"]).dt.date < RUN_DATE).all()
    assert models["model_json"].notna().sum() >= STORES - 1
    assert set(models["run_date"]) == {RUN_DATE}
    metrics = tables.read("forecast_metrics").toPandas()
    assert {"wape", "rmspe", "mae", "rmse", "smape", "mape", "coverage"} <= set(metrics["metric"])
    assert set(metrics["model"]) == {"lightgbm", "seasonal_naive"}
    assert set(metrics["backtest_window"]) == {0, 1, 2}, "3 rolling windows by default"
    champion_wape = metrics[(metrics["metric"] == "wape") & metrics["is_champion"]]["value"]
    assert champion_wape.median() < 0.15

    client = registry(mlcore_home)
    versions_before = client.search_model_versions("name = 'store_forecaster'")
    assert len(versions_before) == 1
    champion = client.get_model_version_by_alias("store_forecaster", "champion")
    assert champion.version == versions_before[0].version
    assert client.get_model_version_by_alias("store_forecaster", "challenger").version == champion.version
    tables_before = versions(mlcore_home, "forecast_models", "forecast_metrics", "forecast_backtest")
    rows_before = len(models)

    # Rerun for the same run date: nothing new anywhere.
    assert run_job("train_forecasts", ARGS) == 0
    assert "already published" in capsys.readouterr().out
    assert versions(mlcore_home, "forecast_models", "forecast_metrics", "forecast_backtest") == tables_before
    assert tables.read("forecast_models").count() == rows_before
    assert len(client.search_model_versions("name = 'store_forecaster'")) == 1

    # Forecast the 48 days from the run date with the champion, then compare with what happened.
    assert run_job("make_forecasts", ARGS) == 0
    forecasts = tables.read("forecasts").toPandas()
    assert len(forecasts) == STORES * 48
    assert forecasts["ds"].min() == RUN_DATE and forecasts["ds"].max() == RUN_DATE + dt.timedelta(days=47)
    assert (forecasts["yhat_lower"] <= forecasts["yhat"]).all() and (forecasts["yhat"] <= forecasts["yhat_upper"]).all()
    assert set(forecasts["model_version"]) == {int(champion.version)}  # an int, as in the score tables
    actual = rossmann_frame[(rossmann_frame["date"] >= RUN_DATE)][["store", "date", "sales", "open"]]
    joined = forecasts.merge(actual, left_on=["store", "ds"], right_on=["store", "date"])
    assert len(joined) == STORES * 48
    assert (joined.loc[joined["open"] == 0, "yhat"] == 0).all(), "closed days forecast 0"
    open_days = joined[joined["sales"] > 0]
    wape = (open_days["sales"] - open_days["yhat"]).abs().sum() / open_days["sales"].sum()
    assert wape < 0.15, f"pooled WAPE on the real 48 held-out days was {wape:.3f}"
    forecasts_version = DeltaTable(str(mlcore_home / "lake" / "forecasts")).version()
    assert run_job("make_forecasts", ARGS) == 0
    assert DeltaTable(str(mlcore_home / "lake" / "forecasts")).version() == forecasts_version

    # The registered champion serves the same forecasts through MLflow, under its signature.
    import mlflow

    uri = f"sqlite:///{mlcore_home / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    served = mlflow.pyfunc.load_model("models:/store_forecaster@champion")
    names = [c.name for c in served.metadata.signature.inputs.inputs]
    assert names[:2] == ["store", "date"], "keys and the date first; regressors optional"
    future = rossmann_frame[(rossmann_frame["store"] == 1) & (rossmann_frame["date"] >= RUN_DATE)]
    request = future.sort_values("date").head(7)[[n for n in names if n in future.columns]]
    request = request.assign(date=pd.to_datetime(request["date"]))
    answer = served.predict(request)
    expected = forecasts[forecasts["store"] == 1].sort_values("ds").head(7)
    assert list(answer["yhat"].round(6)) == list(expected["yhat"].round(6))


def test_incremental_mode_retrains_only_changed_groups(spark, tables, mlcore_home, rossmann_frame):
    history = rossmann_frame[rossmann_frame["date"] < RUN_DATE].copy()
    history = history[history["store"] <= 6]
    write_sales(spark, tables, history)
    assert run_job("train_forecasts", [*ARGS, "--set", "forecasting.only_changed=true"]) == 0

    changed = history.copy()
    mask = (changed["store"] == 3) & (changed["date"] == dt.date(2015, 6, 1))
    changed.loc[mask, "sales"] += 1000
    write_sales(spark, tables, changed)
    next_day = (RUN_DATE + dt.timedelta(days=1)).isoformat()
    args = [*ARGS[:-1], next_day, "--set", "forecasting.only_changed=true"]
    assert run_job("train_forecasts", args) == 0

    second = tables.read("forecast_models", where={"run_date": RUN_DATE + dt.timedelta(days=1)}).toPandas()
    actions = dict(zip(second["store"], second["action"], strict=True))
    assert actions == {1: "kept", 2: "kept", 3: "trained", 4: "kept", 5: "kept", 6: "kept"}
    kept = second[second["action"] == "kept"]
    assert (kept["trained_run_date"] == RUN_DATE).all()
    assert kept["status_reason"].str.startswith("input unchanged").all()
    first = tables.read("forecast_models", where={"run_date": RUN_DATE}).toPandas().set_index("store")
    for _, row in kept.iterrows():
        assert row["model_json"] == first.loc[row["store"], "model_json"]


def test_failure_budget_publishes_nothing(spark, tables, mlcore_home, rossmann_frame, monkeypatch, capsys):
    write_sales(spark, tables, rossmann_frame[rossmann_frame["store"] <= 5])
    monkeypatch.setenv("MLCORE_FAULT_GROUPS", "2,4")
    code = run_job("train_forecasts", [*ARGS, "--set", "forecasting.failure_budget=0.3"])
    assert code == 1
    assert "2 of 5 groups failed (40.0% > failure budget 30.0%)" in capsys.readouterr().err
    assert not tables.exists("forecast_models")
    assert registry(mlcore_home).search_registered_models() == []

    # Within budget: published, and the failed groups carry explicit status rows.
    assert run_job("train_forecasts", [*ARGS, "--set", "forecasting.failure_budget=0.5"]) == 0
    models = tables.read("forecast_models").toPandas().set_index("store")
    assert models.loc[[2, 4], "status"].tolist() == ["failed", "failed"]
    assert models.loc[[2, 4], "error_class"].tolist() == ["InjectedFault", "InjectedFault"]
    assert (models.loc[[1, 3, 5], "status"] == "ok").all()


def test_future_calendar_drives_forecasts_beyond_the_data(spark, tables, mlcore_home, rossmann_frame):
    """Run date 2015-08-01 (after train.csv ends): regressors come from the real test.csv."""
    from pyspark.sql import functions as F

    from mlcore.ingest.rules import classify_calendar, split
    from mlcore.ingest.schemas import CALENDAR
    from mlcore.ingest.sources import read_csv_source
    from tests.conftest import DATASETS_DIR

    stores = rossmann_frame[rossmann_frame["store"] <= 8]
    write_sales(spark, tables, stores)
    raw = read_csv_source(spark, str(DATASETS_DIR / "rossmann" / "test.csv.gz"), CALENDAR)
    good, bad = split(classify_calendar(raw), CALENDAR)
    assert bad.count() == 0
    calendar = good.filter(F.col("store") <= 8).withColumn("run_id", F.lit("t")).withColumn(
        "run_date", F.lit(dt.date(2015, 8, 1))
    )
    tables.write(calendar.select(*CALENDAR.schema.fieldNames()), "forecast_calendar")
    known = calendar.toPandas()
    in_calendar = set(known["store"])
    assert in_calendar and in_calendar != set(range(1, 9)), "test.csv covers only some stores"

    args = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", "2015-08-01"]
    assert run_job("train_forecasts", args) == 0
    assert run_job("make_forecasts", args) == 0
    forecasts = tables.read("forecasts").toPandas()
    assert len(forecasts) == 8 * 48
    merged = forecasts.merge(known, left_on=["store", "ds"], right_on=["store", "date"])
    assert len(merged) == len(known[known["date"] <= dt.date(2015, 9, 17)])
    closed = merged[merged["open"] == 0]
    assert len(closed) > 0 and (closed["yhat"] == 0).all(), "test.csv's closed days forecast 0"
    # Stores absent from test.csv fall back to the documented default: closed on Sundays only.
    defaulted = forecasts[~forecasts["store"].isin(in_calendar)]
    sundays = pd.to_datetime(defaulted["ds"]).dt.dayofweek == 6
    assert (defaulted.loc[sundays, "yhat"] == 0).all() and (defaulted.loc[~sundays, "yhat"] > 0).all()


def prophet_conf(tmp_path: Path) -> Path:
    """The test config with Prophet as the default family (warm starts are Prophet's)."""
    import shutil

    conf = shutil.copytree(CONF_DIR, tmp_path / "conf")
    (conf / "test" / "families.yml").write_text(
        "forecasting:\n  models:\n    - family: prophet\n    - family: seasonal_naive\n"
        "  backtest_windows: 1\n  selection_metric: wape\n  selection_margin: 0.0\n"
    )
    return conf


def test_warm_start_uses_previous_models(spark, tables, mlcore_home, rossmann_frame, tmp_path):
    write_sales(spark, tables, rossmann_frame[rossmann_frame["store"] <= 4])
    conf_args = ["--env", "test", "--conf-dir", str(prophet_conf(tmp_path))]
    assert run_job("train_forecasts", [*conf_args, "--run-date", RUN_DATE.isoformat()]) == 0
    later = (RUN_DATE + dt.timedelta(days=7)).isoformat()
    args = [*conf_args, "--run-date", later, "--set", "forecasting.warm_start=true"]
    assert run_job("train_forecasts", args) == 0
    warm = tables.read("forecast_models", where={"run_date": RUN_DATE + dt.timedelta(days=7)}).toPandas()
    prophet = warm[warm["champion"] == "prophet"]
    assert len(prophet) >= 3
    assert prophet["warm_started"].all(), warm[["store", "status_reason"]].to_string()
    cold = tables.read("forecast_models", where={"run_date": RUN_DATE}).toPandas()
    assert not cold["warm_started"].any()


def test_only_needed_retrains_restated_and_drifted_groups(spark, tables, mlcore_home, rossmann_frame):
    """Nightly policy: new days alone keep a model; restated history or a drift flag retrains."""
    week_later = RUN_DATE + dt.timedelta(days=7)
    data = rossmann_frame[(rossmann_frame["store"] <= 6) & (rossmann_frame["date"] < week_later)].copy()
    write_sales(spark, tables, data)
    assert run_job("train_forecasts", ARGS) == 0

    restated = data.copy()
    mask = (restated["store"] == 3) & (restated["date"] == dt.date(2015, 6, 1))  # before RUN_DATE
    restated.loc[mask, "sales"] += 1000
    write_sales(spark, tables, restated)
    flag = spark.createDataFrame(
        [("sales_per_store", "sales", "sales", "5", "psi", 0.9, 0.2, True, 50, 50, "", "", "r", week_later)],
        f"{DRIFT_SCHEMA}, run_id string, run_date date",
    )
    tables.write(flag, "drift_metrics", mode="append")
    args = [*ARGS[:-1], week_later.isoformat(), "--set", "forecasting.only_needed=true"]
    assert run_job("train_forecasts", args) == 0

    second = tables.read("forecast_models", where={"run_date": week_later}).toPandas()
    actions = dict(zip(second["store"], second["action"], strict=True))
    assert actions == {1: "kept", 2: "kept", 3: "trained", 4: "kept", 5: "trained", 6: "kept"}
    kept = second[second["action"] == "kept"]
    assert kept["status_reason"].str.startswith("no retrain needed").all()
    assert (kept["trained_run_date"] == RUN_DATE).all()

    # Past max_model_age_days every model is refitted.
    later = (week_later + dt.timedelta(days=1)).isoformat()
    assert run_job("train_forecasts", [*ARGS[:-1], later, "--set", "forecasting.only_needed=true",
                                        "--set", "forecasting.max_model_age_days=7"]) == 0
    third = tables.read("forecast_models", where={"run_date": week_later + dt.timedelta(days=1)}).toPandas()
    actions = dict(zip(third["store"], third["action"], strict=True))
    assert actions == {1: "trained", 2: "trained", 3: "kept", 4: "trained", 5: "kept", 6: "trained"}


def test_promotion_gate_compares_on_the_champions_groups(spark, tables, mlcore_home, rossmann_frame, capsys):
    """A champion trained on 4 stores and a challenger on 8: the gate measures both on the 4
    stores they share (the champion's own backtest rows, at the table version it recorded), not
    the challenger's 8 against the champion's 4, and says on how many groups it compared."""
    import re

    from mlcore.forecasting.metrics import compute_metrics

    write_sales(spark, tables, rossmann_frame)
    assert run_job("train_forecasts", [*ARGS, "--set", "forecasting.limit_groups=4"]) == 0
    capsys.readouterr()
    champion = registry(mlcore_home).get_model_version_by_alias("store_forecaster", "champion")
    recorded = int(champion.tags["mlcore.forecast_backtest_version"])

    assert run_job("train_forecasts", [*ARGS, "--set", "forecasting.limit_groups=8",
                                       "--set", "run.revision=2"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    decision = next(line for line in out.splitlines() if "store_forecaster v2" in line)
    assert decision.endswith("both on the same 4 groups"), decision
    challenger_value, champion_value = map(float, re.findall(r"(\d\.\d{4})", decision)[:2])

    def pooled(version: int | None) -> float:
        path = str(mlcore_home / "lake" / "forecast_backtest")
        rows = DeltaTable(path, version=version).to_pandas()
        rows = rows[rows["is_champion"] & (rows["store"] <= 4) & (rows["run_date"] == RUN_DATE)]
        return compute_metrics(rows["y"], rows["yhat"])["wape"]

    assert champion_value == pytest.approx(pooled(recorded), abs=1e-4), "the champion's own rows"
    assert challenger_value == pytest.approx(pooled(None), abs=1e-4), "the challenger's 4 stores"


def test_a_users_model_family_runs_through_the_jobs(
    spark, tables, mlcore_home, rossmann_frame, tmp_path
):
    """A family named by import path (tests/unit/toy_family.py, not in mlcore) is backtested
    and selected per store on the executors, stored, forecast by make_forecasts and served by
    the registered store_forecaster pyfunc. It is configured as a user would: a file in the
    env's config folder."""
    import shutil

    import mlflow

    write_sales(spark, tables, rossmann_frame[rossmann_frame["store"] <= 6])
    conf = shutil.copytree(CONF_DIR, tmp_path / "conf")
    (conf / "test" / "families.yml").write_text(
        "forecasting:\n"
        "  models:\n"
        "    - family: tests.unit.toy_family:WeekdayMeanForecaster\n"
        "      params: {weeks: 4}\n"
        "    - family: seasonal_naive\n"
    )
    args = ["--env", "test", "--conf-dir", str(conf), "--run-date", RUN_DATE.isoformat()]
    assert run_job("train_forecasts", args) == 0
    metrics = tables.read("forecast_metrics").toPandas()
    assert set(metrics["model"]) == {"weekday_mean", "seasonal_naive"}
    models = tables.read("forecast_models").toPandas()
    assert (models["status"] == "ok").all() and set(models["champion"]) <= {"weekday_mean", "seasonal_naive"}
    assert "weekday_mean" in set(models["champion"]), "the toy family wins some stores"
    assert run_job("make_forecasts", args) == 0
    forecasts = tables.read("forecasts").toPandas()
    assert len(forecasts) == 6 * 48 and set(forecasts["model_type"]) == set(models["champion"])

    uri = f"sqlite:///{mlcore_home / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    served = mlflow.pyfunc.load_model("models:/store_forecaster@champion")
    future = rossmann_frame[(rossmann_frame["store"] <= 2) & (rossmann_frame["date"] >= RUN_DATE)]
    request = future.sort_values(["store", "date"]).groupby("store").head(7)
    request = request[["store", "date", "open", "promo", "school_holiday", "state_holiday"]]
    answer = served.predict(request.assign(date=pd.to_datetime(request["date"])))
    expected = forecasts[forecasts["store"] <= 2].sort_values(["store", "ds"]).groupby("store").head(7)
    assert list(answer["yhat"].round(6)) == list(expected["yhat"].round(6))


def test_an_unknown_model_family_is_a_config_error(
    spark, tables, mlcore_home, rossmann_frame, capsys, tmp_path
):
    import shutil

    write_sales(spark, tables, rossmann_frame[rossmann_frame["store"] <= 2])
    conf = shutil.copytree(CONF_DIR, tmp_path / "conf")
    (conf / "test" / "families.yml").write_text(
        "forecasting:\n  models:\n    - family: nope\n"
        "    - {family: seasonal_naive, params: {weeks: 2}}\n"
    )
    bad = ["--env", "test", "--conf-dir", str(conf), "--run-date", RUN_DATE.isoformat()]
    assert run_job("train_forecasts", bad) == 2
    err = capsys.readouterr().err
    assert "forecasting.models[0]: unknown model family 'nope'" in err
    assert "forecasting.models[1] (seasonal_naive): bad params: seasonal_naive takes no parameter(s) weeks" in err
    assert not tables.exists("forecast_models")
