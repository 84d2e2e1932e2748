"""The in-process MAP backend against CmdStan, on the same Prophet models and data (no Spark).

The backend must reach an optimum of Prophet's posterior at least as good as CmdStan's L-BFGS
(compared with one objective function, evaluated at both answers) and give practically the same
forecasts, for the shapes the forecasting job produces: multiplicative seasonality with promo
regressors and holidays on Mon-Sat data, additive seasonality, flat growth, short series (where
CmdStan switches to Newton) and warm starts.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mlcore.config.models import ProphetConfig
from mlcore.forecasting import prophet_map
from mlcore.forecasting.models import ProphetForecaster

pytest.importorskip("prophet")


def _store_like(seed: int, days: int = 900, start: str = "2013-01-01") -> pd.DataFrame:
    """Rossmann-like daily sales: closed Sundays, weekly + yearly pattern, promo weeks, a trend
    change, holidays, lognormal noise."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range(start, periods=days, freq="D")
    t = np.arange(days)
    promo = ((t // 7) % 2 == 0).astype(float) * (ds.dayofweek < 5)
    school = ((ds.month == 8) | (ds.month == 12)).astype(float)
    holiday = np.where((ds.month == 12) & (ds.day == 25), "c", np.where((ds.month == 1) & (ds.day == 1), "a", "0"))
    level = 5000 + rng.normal(0, 300) + 1.5 * t - 2.0 * np.clip(t - 500, 0, None)
    weekly = 1 + 0.2 * np.cos(2 * np.pi * ds.dayofweek / 6)
    yearly = 1 + 0.15 * np.sin(2 * np.pi * ds.dayofyear / 365.25) + 0.3 * (ds.month == 12)
    y = level * weekly * yearly * (1 + 0.25 * promo) * np.exp(rng.normal(0, 0.08, days))
    frame = pd.DataFrame(
        {"ds": ds, "y": y, "promo": promo, "school_holiday": school, "state_holiday": holiday}
    )
    return frame[(ds.dayofweek != 6) & (holiday == "0") | (holiday != "0")].reset_index(drop=True)


class _Captured:
    data: dict | None = None


def _fit(df: pd.DataFrame, cfg: ProphetConfig, init_model: ProphetForecaster | None = None):
    """Fit ``cfg``; also return the Stan data Prophet handed to the backend."""
    captured = _Captured()
    original = prophet_map.fit_map

    def recording(data, init):
        captured.data = data
        return original(data, init)

    if cfg.optimizer == "inprocess":
        prophet_map.fit_map = recording
    try:
        model = ProphetForecaster(cfg, seed=3).fit(df, init_model=init_model)
    finally:
        prophet_map.fit_map = original
    return model, captured.data


def _objective(data: dict, model: ProphetForecaster) -> float:
    p = model.model_.params
    return prophet_map.MapProblem(data).neg_log_posterior(
        p["k"][0, 0], p["m"][0, 0], p["delta"][0], p["sigma_obs"][0, 0], p["beta"][0]
    )


def _future(df: pd.DataFrame) -> pd.DataFrame:
    return df.tail(48).reset_index(drop=True)


BASE = ProphetConfig()


@pytest.mark.parametrize(
    ("label", "cfg", "days"),
    [
        ("multiplicative with regressors and holidays", BASE, 900),
        ("additive", replace(BASE, seasonality_mode="additive"), 900),
        ("flat growth", replace(BASE, growth="flat"), 700),
        ("short series (CmdStan uses Newton)", replace(BASE, yearly_seasonality=False), 80),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_optimum_at_least_as_good_as_cmdstan(label: str, cfg: ProphetConfig, days: int, seed: int):
    df = _store_like(seed, days)
    ours, data = _fit(df, replace(cfg, optimizer="inprocess"))
    theirs, _ = _fit(df, replace(cfg, optimizer="cmdstan"))
    assert data is not None, "the in-process backend was not used"
    ours_value, theirs_value = _objective(data, ours), _objective(data, theirs)
    # lower is better; allow rounding noise only
    assert ours_value <= theirs_value + 1e-6 * abs(theirs_value), (label, ours_value, theirs_value)

    a = ours.predict(_future(df))["yhat"].to_numpy()
    b = theirs.predict(_future(df))["yhat"].to_numpy()
    assert np.all(np.isfinite(a))
    rel = np.abs(a - b) / np.abs(b)
    assert np.median(rel) < 0.01 and rel.max() < 0.05, (label, np.median(rel), rel.max())


def test_params_have_cmdstan_layout_and_survive_json():
    df = _store_like(4)
    ours, _ = _fit(df, BASE)
    theirs, _ = _fit(df, replace(BASE, optimizer="cmdstan"))
    for name in ("k", "m", "delta", "sigma_obs", "beta", "trend"):
        assert ours.model_.params[name].shape == theirs.model_.params[name].shape, name
    loaded = ProphetForecaster.from_json(ours.to_json())
    pd.testing.assert_frame_equal(loaded.predict(_future(df)), ours.predict(_future(df)))


def test_warm_start_reaches_an_optimum_as_good_as_cmdstan():
    """Warm-started from a model fitted 4 weeks earlier: as good as CmdStan's cold fit, and the
    same forecasts as a cold in-process fit (the optimum's flat valley leaves the parameters, not
    the fitted values, up to the starting point)."""
    df = _store_like(5)
    previous, _ = _fit(df.iloc[:-28], BASE)
    warm, data = _fit(df, BASE, init_model=previous)
    cold, _ = _fit(df, BASE)
    cmdstan, _ = _fit(df, replace(BASE, optimizer="cmdstan"))
    assert warm.warm_started_
    assert _objective(data, warm) <= _objective(data, cmdstan) + 1e-6 * abs(_objective(data, cmdstan))
    a = warm.predict(_future(df))["yhat"].to_numpy()
    b = cold.predict(_future(df))["yhat"].to_numpy()
    assert np.max(np.abs(a - b) / np.abs(b)) < 0.02


def test_fit_is_deterministic():
    df = _store_like(6)
    a, _ = _fit(df, BASE)
    b, _ = _fit(df, BASE)
    for name in ("k", "m", "delta", "beta", "sigma_obs"):
        np.testing.assert_array_equal(a.model_.params[name], b.model_.params[name])


def _lasso_value(a_mat, a_vec, lam, x):
    return 0.5 * x @ a_mat @ x + a_vec @ x + lam * np.abs(x).sum()


@pytest.mark.parametrize("seed", range(5))
def test_lasso_qp_is_exact(seed: int):
    """KKT conditions of the L1 subproblem hold, on ill-conditioned ramp designs like Prophet's."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 600)
    t_change = np.linspace(0.03, 0.8, 25)
    design = (t[:, None] >= t_change) * (t[:, None] - t_change)
    a_mat = design.T @ design / 0.01 + 1e-9 * np.eye(25)
    a_vec = rng.normal(size=25) * 300
    lam = 20.0
    x = prophet_map.lasso_qp(a_mat, a_vec, lam, np.zeros(25))
    grad = a_mat @ x + a_vec
    nonzero = x != 0
    assert nonzero.any()
    np.testing.assert_allclose(grad[nonzero], -lam * np.sign(x[nonzero]), rtol=1e-6, atol=1e-6 * lam)
    assert np.all(np.abs(grad[~nonzero]) <= lam * (1 + 1e-6))
    # and nothing nearby is better
    for _ in range(20):
        probe = x + rng.normal(scale=1e-3, size=25)
        assert _lasso_value(a_mat, a_vec, lam, probe) >= _lasso_value(a_mat, a_vec, lam, x) - 1e-9
    # a warm start from the answer returns it
    np.testing.assert_allclose(prophet_map.lasso_qp(a_mat, a_vec, lam, x), x, atol=1e-9)


def test_unsupported_trend_is_refused_by_the_problem():
    with pytest.raises(ValueError, match="linear and flat"):
        prophet_map.MapProblem(
            {"trend_indicator": 1, "t": [0.0], "y": [1.0], "X": [[0.0]], "S": 1, "K": 1,
             "t_change": [0.5], "s_a": [0.0], "s_m": [1.0], "tau": 0.05, "sigmas": [10.0]}
        )


def test_real_rossmann_stores_match_or_beat_cmdstan(datasets_dir):
    """On 12 real stores spread over the range (fitted without their last 48 open days): an
    optimum at least as good as CmdStan's for every store; forecasts practically the same for
    most stores and as accurate on the held-out days overall.

    The posterior is flat along some directions, so a better optimum can still forecast a store
    differently (store 389: 3.5 % apart, 5 nats better, WAPE 0.092 against CmdStan's 0.077);
    over all 1,115 stores the job's pooled WAPE moved from 0.1055 to 0.1059.
    """
    import datetime as dt

    from mlcore.config.models import ForecastingConfig
    from mlcore.forecasting.history import prepare_history
    from mlcore.ingest.schemas import SALES

    frame = pd.read_csv(datasets_dir / "rossmann" / "train.csv.gz", dtype={"StateHoliday": str})
    frame = frame.rename(columns=SALES.source_names)
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    config = ForecastingConfig()
    differences, errors = [], np.zeros(3)
    for store in range(1, 1116, 97):
        prep = prepare_history(frame[frame["store"] == store], config, dt.date(2015, 6, 14))
        train, holdout = prep.train.iloc[:-48], prep.train.iloc[-48:].reset_index(drop=True)
        ours, data = _fit(train, config.prophet)
        theirs, _ = _fit(train, replace(config.prophet, optimizer="cmdstan"))
        ours_value, theirs_value = _objective(data, ours), _objective(data, theirs)
        assert ours_value <= theirs_value + 1e-6 * abs(theirs_value), (store, ours_value, theirs_value)
        a, b = ours.predict(holdout)["yhat"].to_numpy(), theirs.predict(holdout)["yhat"].to_numpy()
        y = holdout["y"].to_numpy()
        differences.append(np.median(np.abs(a - b) / np.abs(b)))
        errors += [np.abs(a - y).sum(), np.abs(b - y).sum(), y.sum()]
    differences = np.asarray(differences)
    assert np.median(differences) < 0.005 and (differences > 0.02).sum() <= 1, differences
    wape_ours, wape_cmdstan = errors[0] / errors[2], errors[1] / errors[2]
    assert wape_ours <= 1.03 * wape_cmdstan, (wape_ours, wape_cmdstan)
