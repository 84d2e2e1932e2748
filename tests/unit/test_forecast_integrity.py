"""Stored models are checked before they forecast (pure pandas, bundled synthetic stores):
the content hash written at training, and a plausibility guard on what the model predicts.
A model whose JSON was changed after training (``y_scale`` 15,689 -> 1e12 published 4.2e11
forecasts as ``prophet``) now falls back to the baseline with a reason, never silently."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from mlcore.config.models import (
    ForecastingConfig,
    ForecastModelSpec,
    ProphetConfig,
    SyntheticConfig,
)
from mlcore.forecasting.models import model_digest
from mlcore.forecasting.prediction import default_future_calendar, forecast_group_checked
from mlcore.forecasting.training import train_group
from mlcore.ingest import synthetic
from mlcore.ingest.schemas import SALES

RUN_DATE = dt.date(2015, 6, 14)
# The Prophet model is the one whose JSON these tests change (y_scale): its configuration.
CONFIG = ForecastingConfig(
    models=[ForecastModelSpec("prophet"), ForecastModelSpec("seasonal_naive")],
    backtest_windows=1,
    selection_metric="wape",
    selection_margin=0.0,
    prophet=ProphetConfig(uncertainty_samples=0, yearly_seasonality=False, n_changepoints=5),
)


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    cfg = SyntheticConfig(stores=1, start_date="2014-06-01", end_date="2015-07-31")
    frame, _ = synthetic.sales_frames(cfg)
    frame = frame.rename(columns=SALES.source_names)
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    return frame


@pytest.fixture(scope="module")
def trained(history) -> dict:
    row = train_group(history, {"store": 1}, CONFIG, RUN_DATE)
    assert row["status"] == "ok" and row["champion"] == "prophet", row["status_reason"]
    return row


@pytest.fixture
def future() -> pd.DataFrame:
    return default_future_calendar(RUN_DATE - dt.timedelta(days=1), CONFIG.horizon_days, CONFIG)


def _with_y_scale(model_json: str, factor: float) -> str:
    envelope = json.loads(model_json)
    prophet = json.loads(envelope["prophet_model"])
    prophet["y_scale"] = prophet["y_scale"] * factor
    envelope["prophet_model"] = json.dumps(prophet)
    return json.dumps(envelope)


def test_training_seals_each_model_with_its_content_hash(trained, history):
    assert trained["model_sha256"] == hashlib.sha256(trained["model_json"].encode()).hexdigest()
    assert trained["baseline_sha256"] == model_digest(trained["baseline_json"])
    train = history[(history["date"] < RUN_DATE) & (history["open"] == 1)]
    assert trained["history_max"] == pytest.approx(float(train["sales"].max()))


def test_untouched_model_forecasts_ok(trained, future):
    result = forecast_group_checked(trained, future, {"store": 1}, CONFIG)
    assert result.status == "ok" and result.reason is None
    assert len(result.frame) == CONFIG.horizon_days
    assert set(result.frame["model_type"]) == {"prophet"}


def test_a_changed_model_fails_its_hash_and_the_baseline_forecasts(trained, future):
    tampered = dict(trained, model_json=_with_y_scale(trained["model_json"], 1e12 / 15_689))
    result = forecast_group_checked(tampered, future, {"store": 1}, CONFIG)
    assert result.status == "fallback"
    assert "content hash mismatch" in result.reason and "seasonal_naive used" in result.reason
    assert set(result.frame["model_type"]) == {"seasonal_naive"}
    assert result.frame["yhat"].max() < 3 * trained["history_max"]


def test_an_implausible_forecast_falls_back_even_with_a_matching_hash(trained, future):
    """Hash recomputed too (a model trained on corrupt data would look like this): the
    plausibility guard still keeps 1e11-scale forecasts out of ``forecasts``."""
    text = _with_y_scale(trained["model_json"], 1e12 / 15_689)
    rehashed = dict(trained, model_json=text, model_sha256=model_digest(text))
    result = forecast_group_checked(rehashed, future, {"store": 1}, CONFIG)
    assert result.status == "fallback"
    assert "historical maximum" in result.reason and "max_forecast_multiple" in result.reason
    assert set(result.frame["model_type"]) == {"seasonal_naive"}
    # the guard is configurable: a huge multiple lets the same model through
    lenient = dataclasses.replace(CONFIG, max_forecast_multiple=1e12)
    assert forecast_group_checked(rehashed, future, {"store": 1}, lenient).status == "ok"


def test_no_usable_model_is_a_failed_group_with_every_reason(trained, future):
    broken = dict(
        trained,
        model_json=_with_y_scale(trained["model_json"], 2.0),
        baseline_json=trained["baseline_json"].replace("levels", "lvls"),
    )
    result = forecast_group_checked(broken, future, {"store": 1}, CONFIG)
    assert result.status == "failed" and result.frame.empty and result.model_type is None
    assert result.reason.count("content hash mismatch") == 2


def test_a_model_without_a_stored_hash_is_not_trusted(trained, future):
    unsealed = dict(trained, model_sha256=None)
    result = forecast_group_checked(unsealed, future, {"store": 1}, CONFIG)
    assert result.status == "fallback" and "no content hash" in result.reason


def test_non_finite_forecasts_are_rejected(trained, future, monkeypatch):
    from mlcore.forecasting.models import ProphetForecaster

    real = ProphetForecaster.predict

    def nan_predict(self, frame):
        out = real(self, frame)
        out["yhat"] = np.where(np.arange(len(out)) == 3, np.nan, out["yhat"])
        return out

    monkeypatch.setattr(ProphetForecaster, "predict", nan_predict)
    result = forecast_group_checked(trained, future, {"store": 1}, CONFIG)
    assert result.status == "fallback" and "non-finite" in result.reason
