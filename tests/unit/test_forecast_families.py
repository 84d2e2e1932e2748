"""Model families from config: a user's own family by import path (tests/unit/toy_family.py)
is backtested, selected, stored and forecast like the shipped ones; unknown families and bad
parameters are config errors. Pure pandas on the bundled synthetic stores (no Spark, no skip)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pytest

from mlcore.config.models import ForecastingConfig, ForecastModelSpec, SyntheticConfig
from mlcore.forecasting.families import check_families, configured_families, load_model
from mlcore.forecasting.prediction import default_future_calendar, forecast_group_checked
from mlcore.forecasting.training import train_group
from mlcore.ingest.synthetic import sales_frames

TOY = "tests.unit.toy_family:WeekdayMeanForecaster"
RUN_DATE = dt.date(2015, 6, 14)
NAMES = {"Store": "store", "Date": "date", "Sales": "sales", "Open": "open", "Promo": "promo",
         "StateHoliday": "state_holiday", "SchoolHoliday": "school_holiday"}  # fmt: skip


@pytest.fixture(scope="module")
def store() -> pd.DataFrame:
    source = sales_frames(SyntheticConfig(stores=2))[0][list(NAMES)].astype({"StateHoliday": str})
    df = source.rename(columns=NAMES)
    df["date"] = pd.to_datetime(df["date"]).dt.date
    return df[df["store"] == 1].reset_index(drop=True)


def toy_config(**changes) -> ForecastingConfig:
    models = [ForecastModelSpec(TOY, {"weeks": 4}), ForecastModelSpec("seasonal_naive")]
    return dataclasses.replace(ForecastingConfig(), models=models, backtest_windows=2, **changes)


def test_a_users_family_trains_selects_stores_and_forecasts_without_touching_mlcore(store):
    config = toy_config()
    assert configured_families(config) == ["weekday_mean", "seasonal_naive"]
    row = train_group(store, {"store": 1}, config, RUN_DATE)
    assert row["status"] == "ok", row["status_reason"]
    assert row["champion"] in {"weekday_mean", "seasonal_naive"}
    # Every family's backtest is kept, per window, with the metric the selection used.
    scored = {(m["model"], m["backtest_window"]) for m in row["metrics"] if m["metric"] == "wape"}
    assert scored == {(f, w) for f in ("weekday_mean", "seasonal_naive") for w in (0, 1)}
    assert "weekday mean" in row["status_reason"] and "seasonal naive" in row["status_reason"]
    # The stored champion loads by the family its JSON names (the configured class) and forecasts.
    if row["champion"] == "weekday_mean":
        assert type(load_model(row["model_json"], config)).__name__ == "WeekdayMeanForecaster"
    future = default_future_calendar(store["date"].max(), config.horizon_days, config)
    forecast = forecast_group_checked(row, future, {"store": 1}, config)
    assert forecast.status == "ok" and len(forecast.frame) == config.horizon_days
    assert set(forecast.frame["model_type"]) == {row["champion"]}


def test_the_selection_margin_keeps_the_default_family_unless_beaten_clearly(store):
    config = toy_config(selection_margin=10.0)
    row = train_group(store, {"store": 1}, config, RUN_DATE)
    assert row["champion"] == "weekday_mean"
    assert row["status_reason"].startswith(f"weekday mean {config.selection_metric.upper()} ")


def test_a_failing_default_family_falls_back_with_the_reason(store, monkeypatch):
    from tests.unit.toy_family import WeekdayMeanForecaster

    def boom(self, history):
        raise RuntimeError("toy exploded")

    monkeypatch.setattr(WeekdayMeanForecaster, "fit", boom)
    row = train_group(store, {"store": 1}, toy_config(), RUN_DATE)
    assert row["status"] == "fallback" and row["champion"] == "seasonal_naive"
    assert "weekday mean failed in backtest window 0 (RuntimeError): seasonal naive used" in row["status_reason"]


def test_unknown_families_and_bad_params_are_config_problems():
    bad = dataclasses.replace(
        ForecastingConfig(),
        models=[
            ForecastModelSpec("nope"),
            ForecastModelSpec("no_such_module_xyz:Model"),
            ForecastModelSpec(TOY, {"weeks": 0}),
            ForecastModelSpec("seasonal_naive", {"season": 7}),
            ForecastModelSpec("prophet", {"growth": "exponential"}),
            ForecastModelSpec("seasonal_naive"),
        ],
        fallback="tests.unit.toy_family:Missing",
    )
    problems = check_families(bad)
    assert any("forecasting.models[0]: unknown model family 'nope'" in p for p in problems)
    assert any("forecasting.models[1]" in p and "cannot import 'no_such_module_xyz'" in p for p in problems)
    assert any("forecasting.models[2]" in p and "weeks must be >= 1" in p for p in problems)
    assert any("forecasting.models[3]" in p and "takes no parameter(s) season" in p for p in problems)
    assert any("forecasting.models[4]" in p and "growth" in p for p in problems)
    assert any("forecasting.models[5]: family 'seasonal_naive' is already" in p for p in problems)
    assert any("forecasting.fallback" in p and "has no 'Missing'" in p for p in problems)
    assert check_families(ForecastingConfig()) == []
    no_promo = dataclasses.replace(
        toy_config(), prophet=dataclasses.replace(ForecastingConfig().prophet, regressors=["school_holiday"])
    )
    assert any("needs feature(s) promo" in p for p in check_families(no_promo))
