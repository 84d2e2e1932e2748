"""The default forecasting configuration: the shared features (built by the jobs' Spark
definitions), the LightGBM family, the ensemble, selection over three rolling windows by RMSPE,
and every family's failure isolated by the fallback.

Stores 1, 13 and 353 of the real Rossmann file (the bundled synthetic stores of the same ids
where the file is absent, so nothing skips), run date 2015-06-14 (the last 48 days unseen).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcore.config.models import ForecastingConfig, ForecastModelSpec
from mlcore.forecasting import training
from mlcore.forecasting.ensemble import EnsembleForecaster
from mlcore.forecasting.families import SHIPPED, check_families, load_model
from mlcore.forecasting.features import FEATURE_COLUMNS, add_features
from mlcore.forecasting.gbm import LightGBMForecaster
from mlcore.forecasting.history import prepare_history
from mlcore.forecasting.metrics import rmspe
from mlcore.forecasting.prediction import forecast_group_checked
from mlcore.forecasting.training import train_group
from mlcore.ingest.schemas import SALES, STORES

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASETS_DIR = Path(os.environ.get("MLCORE_DATASETS_DIR", REPO_ROOT.parent / "shared" / "datasets"))
ROSSMANN = DATASETS_DIR / "rossmann"
STORE_IDS = (1, 13, 353)
RUN_DATE = dt.date(2015, 6, 14)
CONFIG = ForecastingConfig()
TOY = "tests.unit.toy_family:WeekdayMeanForecaster"


@pytest.fixture(scope="module")
def featured(spark) -> dict[int, pd.DataFrame]:
    """Each test store's rows through 2015-07-31 with the shared features."""
    if (ROSSMANN / "train.csv.gz").exists():
        sales = pd.read_csv(ROSSMANN / "train.csv.gz", dtype={"StateHoliday": str})
        attributes = pd.read_csv(ROSSMANN / "store.csv.gz")
    else:
        from mlcore.config.models import SyntheticConfig
        from mlcore.ingest.synthetic import sales_frames

        sales, attributes = sales_frames(SyntheticConfig(stores=max(STORE_IDS)))
        sales = sales.astype({"StateHoliday": str})
    sales = sales.rename(columns=SALES.source_names)
    sales = sales[sales["store"].isin(STORE_IDS)].drop(columns=["day_of_week", "customers"])
    sales["date"] = pd.to_datetime(sales["date"]).dt.date
    attributes = attributes.rename(columns=STORES.source_names)
    attributes = attributes.astype(object).where(attributes.notna(), None)
    frame = add_features(spark.createDataFrame(sales), CONFIG, spark.createDataFrame(attributes))
    out = frame.toPandas()
    return {s: g.sort_values("date").reset_index(drop=True) for s, g in out.groupby("store")}


@pytest.fixture(scope="module")
def trained(featured) -> dict[int, dict]:
    return {s: train_group(featured[s], {"store": s}, CONFIG, RUN_DATE) for s in STORE_IDS}


def _future(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["date"] >= RUN_DATE].reset_index(drop=True)


def _horizon(frame: pd.DataFrame, config: ForecastingConfig = CONFIG) -> pd.DataFrame:
    """The unseen days as the models see them (canonical columns, features included)."""
    prep = prepare_history(frame, config, RUN_DATE + dt.timedelta(days=48))
    return prep.frame[prep.frame["ds"] >= pd.Timestamp(RUN_DATE)].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# the default configuration


def test_the_default_is_lightgbm_over_three_rolling_windows_by_rmspe():
    assert [m.family for m in CONFIG.models] == ["lightgbm", "seasonal_naive"]
    assert (CONFIG.backtest_windows, CONFIG.backtest_step_days, CONFIG.horizon_days) == (3, 48, 48)
    assert CONFIG.selection_metric == "rmspe" and CONFIG.selection_margin > 0
    assert check_families(CONFIG) == []
    assert {"lightgbm", "prophet", "seasonal_naive", "ensemble"} <= set(SHIPPED)


@pytest.mark.parametrize("store", STORE_IDS)
def test_default_training_keeps_every_window_and_the_reason(trained, store):
    row = trained[store]
    assert row["status"] == "ok", row["status_reason"]
    assert row["champion"] in ("lightgbm", "seasonal_naive")
    assert row["status_reason"].startswith(("lightgbm RMSPE", "seasonal naive beats lightgbm"))
    windows = {(m["model"], m["backtest_window"]) for m in row["metrics"] if m["metric"] == "rmspe"}
    assert windows == {(f, w) for f in ("lightgbm", "seasonal_naive") for w in (0, 1, 2)}
    # the windows are rolling origins 48 days apart, each a 48-day holdout before the run date
    points = pd.DataFrame(row["backtest_points"])
    ends = points.groupby("backtest_window")["ds"].max()
    assert ends[0] == RUN_DATE - dt.timedelta(days=1)
    assert [(ends[0] - ends[w]).days for w in (1, 2)] == [48, 96]
    assert isinstance(load_model(row["model_json"]), SHIPPED[row["champion"]])


def test_lightgbm_beats_the_seasonal_naive_baseline_on_the_unseen_days(featured, trained):
    truth, lightgbm, naive = [], [], []
    for store in STORE_IDS:
        future = _future(featured[store])
        forecast = forecast_group_checked(trained[store], future, {"store": store}, CONFIG)
        assert forecast.status == "ok" and len(forecast.frame) == len(future)
        baseline = load_model(trained[store]["baseline_json"])
        horizon = _horizon(featured[store])
        truth.append(future["sales"].to_numpy(dtype=float))
        lightgbm.append(forecast.frame["yhat"].to_numpy())
        naive.append(baseline.predict(horizon)["yhat"].to_numpy())
        closed = future["open"].to_numpy() == 0
        assert (forecast.frame["yhat"].to_numpy()[closed] == 0).all()
    y = np.concatenate(truth)
    assert rmspe(y, np.concatenate(lightgbm)) < 0.8 * rmspe(y, np.concatenate(naive))


def test_a_lightgbm_model_is_json_and_predicts_the_same_after_loading(featured, trained):
    row = trained[1]
    payload = json.loads(row["model_json"])
    assert payload["model_type"] == "lightgbm" and payload["features"]
    model = load_model(row["model_json"])
    assert isinstance(model, LightGBMForecaster)
    future = _horizon(featured[1])
    first = model.predict(future)
    again = LightGBMForecaster.from_json(model.to_json()).predict(future)
    pd.testing.assert_frame_equal(first, again)
    is_open = future["open"].to_numpy() != 0
    assert (first["yhat_lower"] <= first["yhat"]).all() and (first["yhat"] <= first["yhat_upper"]).all()
    assert (first.loc[is_open, "yhat_upper"] > first.loc[is_open, "yhat_lower"]).all()
    # deterministic: the same rows and seed give the same model
    assert train_group(featured[1], {"store": 1}, CONFIG, RUN_DATE)["model_json"] == row["model_json"]


def test_lightgbm_parameters_are_checked_when_the_job_starts():
    bad = dataclasses.replace(
        CONFIG,
        models=[
            ForecastModelSpec("lightgbm", {"learning_rate": 2.0}),
            ForecastModelSpec("seasonal_naive", {}),
        ],
    )
    assert any("learning_rate must be in (0, 1]" in p for p in check_families(bad))
    unknown = dataclasses.replace(CONFIG, models=[ForecastModelSpec("lightgbm", {"depth": 3})])
    assert any("lightgbm takes no parameter(s) depth" in p for p in check_families(unknown))
    no_window = dataclasses.replace(CONFIG, features=dataclasses.replace(CONFIG.features, event_window_days=0))
    assert "forecasting.features.event_window_days must be >= 1, got 0" in check_families(no_window)
    no_features = dataclasses.replace(CONFIG, features=dataclasses.replace(CONFIG.features, enabled=False))
    assert any("needs feature(s) day_of_week" in p for p in check_families(no_features))


def test_a_history_without_the_features_falls_back_with_the_reason(featured):
    bare = featured[1].drop(columns=list(FEATURE_COLUMNS))
    row = train_group(bare, {"store": 1}, CONFIG, RUN_DATE)
    assert row["status"] == "fallback" and row["champion"] == "seasonal_naive"
    assert row["status_reason"].startswith(
        "lightgbm failed in backtest window 0 (KeyError): seasonal naive used"
    )


# ---------------------------------------------------------------------------------------------
# the ensemble

ENSEMBLE = dataclasses.replace(
    CONFIG,
    models=[
        ForecastModelSpec("ensemble", {"members": ["lightgbm", "prophet"], "k": 2}),
        ForecastModelSpec("lightgbm"),
        ForecastModelSpec("prophet"),
        ForecastModelSpec("seasonal_naive"),
    ],
    selection_margin=10.0,  # the ensemble (the default here) keeps every group
    backtest_windows=2,
)


def test_the_ensemble_is_the_mean_of_its_members_in_backtests_and_forecasts(featured):
    row = train_group(featured[353], {"store": 353}, ENSEMBLE, RUN_DATE)
    assert row["status"] == "ok" and row["champion"] == "ensemble", row["status_reason"]
    assert "(members: " in row["status_reason"]
    points = pd.DataFrame(row["backtest_points"])
    wide = points.pivot_table(index=["backtest_window", "ds"], columns="model", values="yhat")
    assert set(wide.columns) == {"ensemble", "lightgbm", "prophet", "seasonal_naive"}
    np.testing.assert_allclose(wide["ensemble"], (wide["lightgbm"] + wide["prophet"]) / 2)
    model = load_model(row["model_json"], ENSEMBLE)
    assert isinstance(model, EnsembleForecaster) and sorted(model.member_names) == ["lightgbm", "prophet"]
    forecast = forecast_group_checked(row, _future(featured[353]), {"store": 353}, ENSEMBLE)
    assert forecast.status == "ok" and set(forecast.frame["model_type"]) == {"ensemble"}
    horizon = _horizon(featured[353], ENSEMBLE)
    members = [m.predict(horizon)["yhat"].to_numpy() for m in model.members]
    np.testing.assert_allclose(forecast.frame["yhat"].to_numpy(), np.mean(members, axis=0))


def test_ensemble_members_must_be_configured_families():
    bad = dataclasses.replace(
        CONFIG,
        models=[
            ForecastModelSpec("lightgbm"),
            ForecastModelSpec("ensemble", {"members": ["lightgbm", "arima"]}),
        ],
    )
    assert any("members arima are not configured" in p for p in check_families(bad))
    single = dataclasses.replace(CONFIG, models=[ForecastModelSpec("ensemble", {"members": ["lightgbm"]})])
    assert any("at least two" in p for p in check_families(single))


# ---------------------------------------------------------------------------------------------
# poison: every family can fail for a group; the fallback takes over with the reason


def _fails(*args, **kwargs):
    raise RuntimeError("poisoned group")


POISONED = {
    # family under test -> (configured families, what to break, the reason's start)
    "lightgbm": (["lightgbm", "seasonal_naive"], (LightGBMForecaster, "fit"), "lightgbm failed in backtest window 0"),
    "prophet": (["prophet", "seasonal_naive"], ("prophet", "fit"), "prophet failed in backtest window 0"),
    "ensemble": (["ensemble", "lightgbm", "prophet", "seasonal_naive"], (training, "mean_prediction"), "ensemble failed in backtest"),
    "user family": ([TOY, "seasonal_naive"], ("toy", "fit"), "weekday mean failed in backtest window 0"),
}


@pytest.mark.parametrize("family", sorted(POISONED))
def test_every_family_failing_for_a_group_gives_the_fallback_and_the_reason(featured, family, monkeypatch):
    from mlcore.forecasting.models import ProphetForecaster
    from tests.unit.toy_family import WeekdayMeanForecaster

    names, (target, attribute), reason = POISONED[family]
    target = {"prophet": ProphetForecaster, "toy": WeekdayMeanForecaster}.get(target, target)  # type: ignore[arg-type]
    monkeypatch.setattr(target, attribute, _fails)
    specs = [
        ForecastModelSpec(n, {"members": ["lightgbm", "prophet"]} if n == "ensemble" else {})
        for n in names
    ]
    config = dataclasses.replace(CONFIG, models=specs, backtest_windows=1)
    row = train_group(featured[1], {"store": 1}, config, RUN_DATE)
    assert row["status"] == "fallback", row["status_reason"]
    assert row["champion"] == "seasonal_naive" and row["error_class"] == "RuntimeError"
    assert row["status_reason"].startswith(reason)
    assert "seasonal naive used" in row["status_reason"]
    assert load_model(row["model_json"]).family == "seasonal_naive"
    # the next group is untouched by the failure
    monkeypatch.undo()
    healthy = train_group(featured[13], {"store": 13}, config, RUN_DATE)
    assert healthy["status"] == "ok", healthy["status_reason"]


@pytest.mark.parametrize("bagging", [1.0, 0.7])
def test_interval_residuals_are_the_fitted_values_lightgbm_kept(featured, bagging):
    """The in-sample residuals for the intervals come from the scores LightGBM kept while boosting,
    not a second pass of the design through the trees: they must be the predictions exactly,
    with and without bagging (out-of-bag rows' scores are updated too)."""
    from mlcore.forecasting.gbm import _open_mask, _training_scores

    prep = prepare_history(featured[13], CONFIG, RUN_DATE)
    model = LightGBMForecaster(bagging_fraction=bagging).fit(prep.frame)
    y = pd.to_numeric(prep.frame["y"], errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(y) & (y > 0) & _open_mask(prep.frame)
    design = model._design(prep.frame)[keep]
    kept = _training_scores(model.booster_, len(design))
    assert np.array_equal(kept, model.booster_.predict(design, num_threads=1))
    residuals = np.log1p(y[keep]) - kept
    low, high = np.quantile(residuals, [0.1, 0.9])
    assert model.residual_low_ == pytest.approx(min(low, 0.0) * model.interval_scale)
    assert model.residual_high_ == pytest.approx(max(high, 0.0) * model.interval_scale)
