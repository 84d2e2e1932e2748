"""Store x item series end to end, through config alone: generated at ingest
(``sources.sales.items_per_store``), validated with the composite key, trained and forecast per
(store, item) (``forecasting.group_keys=[store,item]``), compared per store, and served with
``?item=``. The lake is the bundled synthetic stores (6) x 3 items."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from deltalake import DeltaTable
from fastapi.testclient import TestClient

from tests.conftest import CONF_DIR
from tests.integration.service_lake import job_args

pytestmark = pytest.mark.slow
ITEMS = 3  # as item_lake (tests/integration/conftest.py) builds it
RUN_DATE = dt.date(2015, 6, 14)


def table(home: Path, name: str) -> pd.DataFrame:
    return DeltaTable(str(home / "lake" / name)).to_pandas()


def item_service(home: Path):
    """The service app over the store x item lake (``item_lake`` in conftest), auth off."""
    from mlcore.config.loader import load_config
    from mlcore.serving.app import create_app
    from mlcore.serving.lake import Lake
    from mlcore.tracking.runs import configure_mlflow

    config = load_config(
        "test", conf_dir=CONF_DIR, environ={"MLCORE_HOME": str(home)},
        overrides=["service.auth_required=false", "forecasting.group_keys=[store,item]"],
    )  # fmt: skip
    configure_mlflow(config)
    return create_app(config, Lake(config))


def test_ingest_publishes_k_generated_items_per_store(item_lake):
    sales = table(item_lake, "sales")
    quarantine = table(item_lake, "sales_quarantine")
    assert "item" in sales.columns and quarantine.empty
    assert not sales.duplicated(["store", "item", "date"]).any()
    per_day = sales.groupby(["store", "date"])["item"].nunique()
    assert per_day.max() == ITEMS and per_day.iloc[-1] == ITEMS  # launches only remove early days
    stores = sales["store"].nunique()
    assert sales.groupby("store")["item"].nunique().eq(ITEMS).all() and stores == 6
    assert (sales.loc[sales["open"] == 0, "sales"] == 0).all()
    # items differ from each other (scale, trend, noise): not copies of the store
    means = sales[sales["open"] == 1].groupby(["store", "item"])["sales"].mean()
    assert means.groupby(level="store").agg(lambda m: m.max() / max(m.min(), 1.0)).median() > 1.5


def test_training_and_forecasts_are_per_store_and_item(item_lake):
    models = table(item_lake, "forecast_models")
    status = table(item_lake, "forecast_status")
    forecasts = table(item_lake, "forecasts")
    series = set(map(tuple, table(item_lake, "sales")[["store", "item"]].drop_duplicates().to_numpy()))
    assert set(map(tuple, models[["store", "item"]].to_numpy())) == series
    assert not models.duplicated(["store", "item"]).any()
    # every series' fate is a status row; short-history items are skipped with the reason
    assert set(map(tuple, status[["store", "item"]].to_numpy())) == series
    served = status[status["status"].isin(["ok", "fallback"])]
    assert len(served) >= len(series) // 2
    per_series = forecasts.groupby(["store", "item"]).size()
    assert per_series.eq(48).all() and len(per_series) == len(served)
    assert not forecasts.duplicated(["store", "item", "ds"]).any()
    skipped = models[models["model_json"].isna()]
    assert skipped.empty or skipped["status_reason"].str.contains("history").all()


def test_similar_stores_compare_store_totals(item_lake):
    neighbours = table(item_lake, "store_neighbours")
    assert "item" not in neighbours.columns
    assert neighbours.groupby("store").size().eq(3).all() and neighbours["store"].nunique() == 6


def test_validation_adds_the_item_to_the_key_of_item_level_tables():
    from mlcore.config.loader import load_config
    from mlcore.pipelines._validation import schema_contract, table_rules

    config = load_config("test", conf_dir=CONF_DIR, environ={"MLCORE_HOME": "/tmp/unused"})
    ctx = SimpleNamespace(config=config)
    store_level = ["store", "date", "sales"]
    assert table_rules(ctx, "sales", store_level).unique_keys == ["store", "date"]
    assert table_rules(ctx, "sales", [*store_level, "item"]).unique_keys == ["store", "item", "date"]
    assert table_rules(ctx, "forecast_calendar", ["store", "item", "date"]).unique_keys == [
        "store", "item", "date"
    ]  # fmt: skip
    assert table_rules(ctx, "stores", ["store", "item"]).unique_keys == ["store"]
    assert schema_contract(ctx, "sales", [*store_level, "item"])["item"] == "int"
    assert "item" not in schema_contract(ctx, "sales", store_level)


def test_a_bad_items_per_store_is_a_config_error(tmp_path, monkeypatch, capsys):
    from mlcore.runner import run_job

    monkeypatch.setenv("MLCORE_HOME", str(tmp_path))
    assert run_job("ingest_sales", job_args(RUN_DATE, "--set", "sources.sales.items_per_store=-1")) == 2
    assert "sources.sales.items_per_store must be at least 0 (got -1)" in capsys.readouterr().err
    assert not (tmp_path / "lake" / "sales").exists()


def test_the_service_serves_a_series_by_store_and_item(item_lake):
    forecasts = table(item_lake, "forecasts")
    store, item = (int(v) for v in forecasts[["store", "item"]].iloc[0])
    expected = forecasts[(forecasts["store"] == store) & (forecasts["item"] == item)].sort_values("ds")
    with TestClient(item_service(item_lake)) as client:
        catalog = client.get("/stores").json()
        assert catalog["stores"] == sorted(forecasts["store"].unique().tolist())
        assert catalog["series_keys"] == ["store", "item"]
        items = client.get(f"/stores/{store}/items").json()["items"]
        assert items == sorted(forecasts.loc[forecasts["store"] == store, "item"].unique().tolist())

        body = client.get(f"/stores/{store}/forecast?item={item}").json()
        assert (body["store"], body["item"]) == (store, item)
        assert [p["yhat"] for p in body["points"]] == pytest.approx(expected["yhat"].round(2).tolist(), abs=0.011)

        missing = client.get(f"/stores/{store}/forecast")
        assert missing.status_code == 400 and "item is required" in missing.json()["error"]
        unknown = client.get(f"/stores/{store}/forecast?item=99")
        assert unknown.status_code == 404 and f"store {store} item 99" in unknown.json()["error"]

        history = client.get(f"/stores/{store}/history?item={item}&weeks=2").json()
        sales = table(item_lake, "sales")
        mine = sales[(sales["store"] == store) & (sales["item"] == item)].sort_values("date")
        assert [p["sales"] for p in history["points"]] == mine["sales"].tail(14).astype(float).tolist()

        # days past the table: the champion forecasts this series on demand
        beyond = client.get(f"/stores/{store}/forecast?item={item}&start=2015-08-01&end=2015-08-03")
        assert beyond.status_code == 200, beyond.text
        assert {p["source"] for p in beyond.json()["points"]} == {"on_demand"}

        batch = client.post("/forecasts/query", json={"stores": items and [store], "item": item})
        assert batch.status_code == 200 and batch.json()["forecasts"][0]["item"] == item
        assert client.get(f"/stores/{store}/similar?k=2").status_code == 200


def test_the_generator_is_deterministic_and_its_calendar_agrees(spark):
    """Same seed, same rows whatever the partitioning; another seed, other items; the future
    calendar's promo reaches exactly the items whose sales take part in the store's promos."""
    from mlcore.ingest.items import expand_calendar, expand_sales

    days = pd.date_range("2015-01-01", periods=70, freq="D")
    rows = pd.DataFrame(
        [
            {"store": store, "day_of_week": day.isoweekday(), "date": day.date(),
             "sales": 0 if day.isoweekday() == 7 else 5000 + 40 * i, "customers": 600,
             "open": 0 if day.isoweekday() == 7 else 1, "promo": int(day.day % 3 == 0),
             "state_holiday": "0", "school_holiday": 0}
            for store in (1, 2)
            for i, day in enumerate(days)
        ]
    )  # fmt: skip
    period = (days[0].date(), days[-1].date())
    frame = spark.createDataFrame(rows)
    keys = ["store", "item", "date"]

    def expanded(partitions: int, seed: int) -> pd.DataFrame:
        out = expand_sales(frame.repartition(partitions), 5, seed, period).toPandas()
        return out.sort_values(keys).reset_index(drop=True)

    first = expanded(1, 5)
    assert first.equals(expanded(7, 5))
    assert not first["sales"].equals(expanded(1, 6)["sales"])
    assert set(first["item"]) == {1, 2, 3, 4, 5}
    assert (first.loc[first["open"] == 0, "sales"] == 0).all()
    assert (first["promo"] <= first.merge(rows[["store", "date", "promo"]], on=["store", "date"])["promo_y"]).all()

    calendar = expand_calendar(frame.drop("sales", "customers"), 5, 5).toPandas()
    both = first.merge(calendar, on=keys, suffixes=("_sales", "_calendar"))
    assert len(both) == len(first) and (both["promo_sales"] == both["promo_calendar"]).all()


def test_the_registered_forecaster_reads_only_the_groups_asked_for(item_lake):
    """MLflow predicts on the input example (one group) when the model is logged: that must
    read one group's models and calendar rows, not the run's (30,000 series' JSON and ~4 M
    calendar rows on the driver otherwise)."""
    import mlflow

    from mlcore.config.loader import load_config
    from mlcore.tracking.runs import configure_mlflow

    config = load_config("test", conf_dir=CONF_DIR, environ={"MLCORE_HOME": str(item_lake)})
    configure_mlflow(config)
    model = mlflow.pyfunc.load_model("models:/store_forecaster@champion").unwrap_python_model()
    forecasts = table(item_lake, "forecasts")
    store, item = (int(v) for v in forecasts[["store", "item"]].iloc[0])
    days = pd.date_range("2015-06-14", periods=3, freq="D").date
    reads: list[pd.DataFrame] = []
    read = model._read

    def recorded(uri, columns, predicate, version=None):
        reads.append(read(uri, columns, predicate, version))
        return reads[-1]

    model._read = recorded
    predicted = model.predict(None, pd.DataFrame({"store": store, "item": item, "date": days}))
    assert len(predicted) == 3 and model.loaded_models == 1
    calendars = [found for found in reads if "item" in found.columns]  # sales, forecast_calendar
    assert calendars and sum(map(len, calendars)) > 0
    assert all(set(zip(found["store"], found["item"])) == {(store, item)} for found in calendars if len(found))
    everything = forecasts[["store", "item"]].drop_duplicates()
    many = everything.merge(pd.DataFrame({"date": days}), how="cross")
    assert len(model.predict(None, many)) == 3 * len(everything)
    assert model.loaded_models == len(everything)
