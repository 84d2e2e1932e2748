"""Per-group training/forecasting on real Rossmann stores (pure pandas, no Spark).

Stores: 1 (typical, closed on Sundays and holidays), 13 (misses 2014-07..12, the known Kaggle
gap) and 353 (open on public holidays, so its Prophet model learns holiday effects). The run
date 2015-06-14 leaves the last 48 days of the file as a real, unseen forecast period.
Prophet-heavy tests are marked ``slow``; the whole module takes ~15 s on 2 cores.
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
from mlcore.forecasting import history, prediction
from mlcore.forecasting.families import load_model
from mlcore.forecasting.history import group_seed, prepare_history
from mlcore.forecasting.metrics import METRIC_NAMES, compute_metrics
from mlcore.forecasting.models import ProphetForecaster, SeasonalNaiveForecaster, holiday_name
from mlcore.forecasting.prediction import default_future_calendar, forecast_group
from mlcore.forecasting.schemas import (
    FORECAST_COLUMNS,
    MODEL_COLUMNS,
    forecast_schema,
    model_columns,
    model_schema,
)
from mlcore.forecasting.training import train_group

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASETS_DIR = Path(os.environ.get("MLCORE_DATASETS_DIR", REPO_ROOT.parent / "shared" / "datasets"))
TRAIN_CSV = DATASETS_DIR / "rossmann" / "train.csv.gz"
STORES = (1, 13, 353)
RUN_DATE = dt.date(2015, 6, 14)
# These tests cover the Prophet family and the mechanics around it (the configuration before
# LightGBM became the default; test_forecast_lightgbm.py covers today's default).
CONFIG = ForecastingConfig(
    models=[ForecastModelSpec("prophet"), ForecastModelSpec("seasonal_naive")],
    backtest_windows=1,
    selection_metric="wape",
    selection_margin=0.0,
)
SOURCE_NAMES = {
    "Store": "store",
    "Date": "date",
    "Sales": "sales",
    "Open": "open",
    "Promo": "promo",
    "StateHoliday": "state_holiday",
    "SchoolHoliday": "school_holiday",
}
prophet_heavy = pytest.mark.slow
# A few assertions are facts about the real stores (store 353 opens on public holidays and
# every day): they hold on Rossmann's data and are left out on the synthetic stand-in.
REAL_DATA = TRAIN_CSV.exists()
real_stores_only = pytest.mark.skipif(not REAL_DATA, reason=f"a fact about the real stores ({TRAIN_CSV})")


@pytest.fixture(scope="module")
def stores() -> dict[int, pd.DataFrame]:
    """The test stores' full rows (through 2015-07-31), snake_case, dates as datetime.date:
    the real Rossmann stores where ``train.csv`` is present, else the same store ids from the
    bundled synthetic generator (same schema and calendar), so these tests never skip."""
    if TRAIN_CSV.exists():
        source = pd.read_csv(TRAIN_CSV, usecols=list(SOURCE_NAMES), dtype={"StateHoliday": str})
    else:
        from mlcore.config.models import SyntheticConfig
        from mlcore.ingest.synthetic import sales_frames

        source = sales_frames(SyntheticConfig(stores=max(STORES)))[0][list(SOURCE_NAMES)]
        source = source.astype({"StateHoliday": str})
    df = source.rename(columns=SOURCE_NAMES)
    df = df[df["store"].isin(STORES)]
    df["date"] = pd.to_datetime(df["date"]).dt.date
    return {int(s): g.reset_index(drop=True) for s, g in df.groupby("store")}


@pytest.fixture(scope="module")
def trained(stores) -> dict[int, dict]:
    """Each test store trained on its own (full history passed; the run date cuts it)."""
    return {s: train_group(stores[s], {"store": s}, CONFIG, RUN_DATE) for s in STORES}


def _comparable(row: dict) -> dict:
    """A result row without the timings (the only fields allowed to differ between runs)."""
    return {k: v for k, v in row.items() if k not in ("fit_seconds", "backtest_seconds")}


def _future(history: pd.DataFrame) -> pd.DataFrame:
    return history[history["date"] >= RUN_DATE].sort_values("date").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# healthy stores


@prophet_heavy
@pytest.mark.parametrize("store", STORES)
def test_healthy_store_trains(trained, store):
    row = trained[store]
    assert row["status"] == "ok", row["status_reason"]
    assert row["champion"] in ("prophet", "seasonal_naive")
    assert row["error_class"] is None and row["error_message"] is None
    assert list(row) == model_columns(["store"])
    assert row["store"] == store

    model = load_model(row["model_json"])
    assert model.model_type == row["champion"]
    assert isinstance(load_model(row["baseline_json"]), SeasonalNaiveForecaster)

    # only data strictly before the run date was used
    assert row["train_end"] < RUN_DATE
    assert row["train_end"] == RUN_DATE - dt.timedelta(days=1)
    assert row["train_rows"] > CONFIG.min_history_days

    # every metric for both models on every backtest window
    got = {(m["backtest_window"], m["model"], m["metric"]) for m in row["metrics"]}
    want = {
        (w, model_name, metric)
        for w in range(CONFIG.backtest_windows)
        for model_name in ("prophet", "seasonal_naive")
        for metric in METRIC_NAMES
    }
    assert got == want
    wape = {m["model"]: m["value"] for m in row["metrics"] if m["metric"] == "wape"}
    assert wape[row["champion"]] < 0.25
    assert all(m["n_obs"] > 30 for m in row["metrics"])

    # holdout = the 48 days before the run date, for both models
    points = pd.DataFrame(row["backtest_points"])
    assert set(points["model"]) == {"prophet", "seasonal_naive"}
    for _, p in points.groupby("model"):
        assert p["ds"].max() == RUN_DATE - dt.timedelta(days=1)
        assert p["ds"].min() == RUN_DATE - dt.timedelta(days=CONFIG.horizon_days)
    # pooled metrics from the points agree with the per-window metrics
    prophet_points = points[points["model"] == "prophet"]
    assert compute_metrics(prophet_points["y"], prophet_points["yhat"])["wape"] == pytest.approx(
        wape["prophet"]
    )


@prophet_heavy
@real_stores_only
def test_prophet_learns_and_applies_holidays(trained, stores):
    """Store 353 opens on public holidays: the model knows them and uses future holiday rows."""
    model = load_model(trained[353]["model_json"])
    assert isinstance(model, ProphetForecaster)
    assert set(model.model_.train_holiday_names) == {"public", "easter", "christmas"}
    day = {"ds": [pd.Timestamp("2015-07-01")], "open": [1], "promo": [0], "school_holiday": [0]}
    plain = model.predict(pd.DataFrame({**day, "state_holiday": ["0"]}))
    holiday = model.predict(pd.DataFrame({**day, "state_holiday": ["a"]}))
    assert holiday["yhat"].iloc[0] != pytest.approx(plain["yhat"].iloc[0], rel=1e-3)
    assert holiday_name("a") == "public" and holiday_name("0") is None
    assert holiday_name(0) is None and holiday_name("z") == "holiday_z"


@prophet_heavy
@pytest.mark.parametrize("store", STORES)
def test_forecast_group_on_the_real_future(trained, stores, store):
    future = _future(stores[store])
    assert len(future) == CONFIG.horizon_days
    out = forecast_group(trained[store], future, {"store": store}, CONFIG)

    assert list(out.columns) == ["store", *FORECAST_COLUMNS]
    assert len(out) == CONFIG.horizon_days
    assert out["ds"].tolist() == future["date"].tolist()
    assert (out["store"] == store).all()
    assert (out["model_type"] == trained[store]["champion"]).all()
    assert (out["yhat_lower"] <= out["yhat"]).all() and (out["yhat"] <= out["yhat_upper"]).all()
    closed = future["open"].to_numpy() == 0
    if REAL_DATA:
        assert closed.any() == (store != 353)  # store 353 opens every day
    assert (out.loc[closed, ["yhat", "yhat_lower", "yhat_upper"]].to_numpy() == 0).all()
    assert (out.loc[~closed, "yhat"] > 0).all()
    # an honest out-of-sample check on 48 unseen days
    assert compute_metrics(future["sales"], out["yhat"])["wape"] < 0.25

    # closing two more days zeroes exactly those days; the point forecasts elsewhere are unchanged
    forced = future.copy()
    forced.loc[[2, 9], "open"] = 0
    out2 = forecast_group(trained[store], forced, {"store": store}, CONFIG)
    assert (out2.loc[[2, 9], ["yhat", "yhat_lower", "yhat_upper"]].to_numpy() == 0).all()
    others = ~forced.index.isin([2, 9])
    np.testing.assert_allclose(out2.loc[others, "yhat"], out.loc[others, "yhat"])


@prophet_heavy
def test_forecast_with_default_calendar(trained):
    future = default_future_calendar(RUN_DATE - dt.timedelta(days=1), CONFIG.horizon_days, CONFIG)
    assert list(future.columns) == ["date", "open", "promo", "school_holiday", "state_holiday"]
    assert future["date"].iloc[0] == RUN_DATE and len(future) == CONFIG.horizon_days
    sundays = np.array([d.weekday() == 6 for d in future["date"]])
    assert (future["open"].to_numpy() == np.where(sundays, 0, 1)).all()
    assert (future["promo"] == 0).all() and (future["state_holiday"] == "0").all()

    out = forecast_group(trained[1], future, {"store": 1}, CONFIG)
    assert len(out) == CONFIG.horizon_days
    assert (out.loc[sundays, "yhat"] == 0).all()
    assert (out.loc[~sundays, "yhat"] > 0).all()


@prophet_heavy
def test_json_round_trip_gives_identical_predictions(stores, trained):
    history = stores[1]
    future = _future(history)
    prep = prepare_history(history, CONFIG, RUN_DATE)
    fit_frame = prep.train
    canon = prediction._canonical_future(future, CONFIG)

    prophet = ProphetForecaster(CONFIG.prophet, seed=7).fit(fit_frame)
    again = ProphetForecaster.from_json(prophet.to_json())
    pd.testing.assert_frame_equal(prophet.predict(canon), again.predict(canon))
    assert again.to_json() == prophet.to_json()

    naive = SeasonalNaiveForecaster(7, 4, 0.8).fit(fit_frame)
    naive_again = load_model(naive.to_json())
    pd.testing.assert_frame_equal(naive.predict(canon), naive_again.predict(canon))

    # forecasting twice from the stored row is reproducible too (seeded intervals)
    first = forecast_group(trained[1], future, {"store": 1}, CONFIG)
    second = forecast_group(trained[1], future, {"store": 1}, CONFIG)
    pd.testing.assert_frame_equal(first, second)


@prophet_heavy
def test_determinism_two_runs(stores, trained):
    again = train_group(stores[1], {"store": 1}, CONFIG, RUN_DATE)
    assert again["model_json"] == trained[1]["model_json"]
    assert again["metrics"] == trained[1]["metrics"]
    assert _comparable(again) == _comparable(trained[1])


def test_group_seed_is_stable_and_key_dependent():
    assert group_seed(0, {"store": np.int64(1)}) == group_seed(0, {"store": 1})
    assert group_seed(0, {"store": 1}) != group_seed(0, {"store": 2})
    assert group_seed(0, {"store": 1}) != group_seed(1, {"store": 1})
    assert group_seed(0, {"a": 1, "b": 2}) == group_seed(0, {"b": 2, "a": 1})


# ---------------------------------------------------------------------------------------------
# run date and fingerprint


@prophet_heavy
def test_nothing_on_or_after_the_run_date_is_used(stores, trained):
    history = stores[1].copy()
    late = history["date"] >= RUN_DATE
    assert late.sum() == CONFIG.horizon_days
    history.loc[late, "sales"] = 10**7  # absurd values after the cut must not matter
    history.loc[late, "promo"] = 1
    row = train_group(history, {"store": 1}, CONFIG, RUN_DATE)
    assert row["train_end"] < RUN_DATE
    assert row["model_json"] == trained[1]["model_json"]
    assert row["data_fingerprint"] == trained[1]["data_fingerprint"]
    assert all(p["ds"] < RUN_DATE for p in row["backtest_points"])


def test_fingerprint_is_order_and_dtype_independent_and_value_sensitive(stores):
    history = stores[1]
    base = prepare_history(history, CONFIG, RUN_DATE).fingerprint
    assert base and len(base) == 64

    shuffled = history.sample(frac=1.0, random_state=3)
    assert prepare_history(shuffled, CONFIG, RUN_DATE).fingerprint == base
    as_float = history.assign(sales=history["sales"].astype(float), extra_column="ignored")
    assert prepare_history(as_float, CONFIG, RUN_DATE).fingerprint == base
    as_timestamps = history.assign(date=pd.to_datetime(history["date"]))
    assert prepare_history(as_timestamps, CONFIG, RUN_DATE).fingerprint == base

    changed = history.copy()
    changed.loc[changed.index[100], "sales"] += 1
    assert prepare_history(changed, CONFIG, RUN_DATE).fingerprint != base
    flipped = history.copy()
    flipped.loc[flipped.index[200], "promo"] = 1 - flipped.loc[flipped.index[200], "promo"]
    assert prepare_history(flipped, CONFIG, RUN_DATE).fingerprint != base


# ---------------------------------------------------------------------------------------------
# poison groups


def _poison_cases(h: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each poison group is derived from a healthy store's rows (newest first, as in the file)."""
    h = h[h["date"] < RUN_DATE].reset_index(drop=True)
    sales = h["sales"].astype(float)
    return {
        "empty": h.iloc[:0],
        "one_row": h.iloc[:1],
        "two_rows": h.iloc[:2],
        "all_nan_target": h.assign(sales=np.nan),
        "constant_target": h.assign(sales=5000),
        "constant_zero_target": h.assign(sales=0),
        "inf_target": h.assign(sales=sales.where(h.index != 10, np.inf)),
        "exact_duplicates": pd.concat([h, h.iloc[20:25]], ignore_index=True),
        "conflicting_duplicates": pd.concat(
            [h, h.iloc[20:22].assign(sales=h["sales"].iloc[20:22] + 1)], ignore_index=True
        ),
        "tz_aware_dates": h.assign(date=pd.to_datetime(h["date"]).dt.tz_localize("Europe/Berlin")),
        "all_after_run_date": h.assign(date=[d + (RUN_DATE - min(h["date"])) for d in h["date"]]),
        "missing_regressor_values": h.assign(
            promo=h["promo"].astype(float).where(h.index % 10 != 0)
        ),
        "missing_regressor_column": h.drop(columns=["promo"]),
    }


# name -> (status, champion, text expected in status_reason)
POISON_EXPECTED = {
    "empty": ("skipped", None, "insufficient history: 0 open days < 90"),
    "one_row": ("skipped", None, "insufficient history: 1 open day < 90"),
    "two_rows": ("skipped", None, "insufficient history: 2 open days < 90"),
    "all_nan_target": ("skipped", None, "insufficient history: 0 open days < 90"),
    "constant_target": ("ok", "seasonal_naive", "constant sales 5000"),
    "constant_zero_target": ("skipped", None, "constant sales 0: nothing to forecast"),
    "inf_target": ("ok", "prophet", "dropped 1 open day with a missing/non-finite sales"),
    "exact_duplicates": ("ok", "prophet", "dropped 5 exact duplicate rows"),
    "conflicting_duplicates": ("skipped", None, "conflicting duplicate dates: 2 dates"),
    "tz_aware_dates": ("ok", "prophet", "prophet WAPE"),
    "all_after_run_date": ("skipped", None, "all dates on/after run date 2015-06-14"),
    "missing_regressor_values": ("ok", "prophet", "missing/non-finite promo values with 0"),
    "missing_regressor_column": ("failed", None, "missing column(s): promo"),
}


@pytest.fixture(scope="module")
def poison_results(stores) -> dict[str, dict]:
    cases = _poison_cases(stores[1])
    assert set(cases) == set(POISON_EXPECTED)
    return {name: train_group(g, {"store": 1}, CONFIG, RUN_DATE) for name, g in cases.items()}


@prophet_heavy
@pytest.mark.parametrize("name", sorted(POISON_EXPECTED))
def test_poison_group_gets_expected_status(poison_results, name):
    status, champion, reason = POISON_EXPECTED[name]
    row = poison_results[name]
    assert row["status"] == status, row["status_reason"]
    assert row["champion"] == champion
    assert reason in row["status_reason"]
    assert list(row) == model_columns(["store"])
    if status in ("ok", "fallback"):
        assert load_model(row["model_json"]).model_type == champion
        assert row["train_end"] < RUN_DATE
    else:
        assert row["model_json"] is None
        assert row["train_rows"] == 0 and row["train_end"] is None
    if status == "failed":
        assert row["error_class"] == "ForecastInputError"
    else:
        assert row["error_class"] is None


@prophet_heavy
def test_tz_aware_dates_keep_their_local_day(poison_results, trained):
    row = poison_results["tz_aware_dates"]
    assert row["model_json"] == trained[1]["model_json"]
    assert row["data_fingerprint"] == trained[1]["data_fingerprint"]


@prophet_heavy
def test_healthy_groups_are_unaffected_by_poison_neighbours(stores, trained):
    cases = _poison_cases(stores[1])
    sequence = [
        ("conflicting_duplicates", cases["conflicting_duplicates"]),
        (13, stores[13]),
        ("all_nan_target", cases["all_nan_target"]),
        ("inf_target", cases["inf_target"]),
        ("missing_regressor_column", cases["missing_regressor_column"]),
        (353, stores[353]),
        ("one_row", cases["one_row"]),
        (1, stores[1]),
    ]
    for name, frame in sequence:
        store = name if isinstance(name, int) else 1
        row = train_group(frame, {"store": store}, CONFIG, RUN_DATE)
        if isinstance(name, int):
            assert row["model_json"] == trained[name]["model_json"]
            assert row["metrics"] == trained[name]["metrics"]
            assert _comparable(row) == _comparable(trained[name])


def test_prophet_failure_falls_back_to_seasonal_naive(stores, monkeypatch):
    def boom(self, df, init_model=None):
        raise RuntimeError("stan exploded")

    monkeypatch.setattr(ProphetForecaster, "fit", boom)
    row = train_group(stores[1], {"store": 1}, CONFIG, RUN_DATE)
    assert row["status"] == "fallback"
    assert row["champion"] == "seasonal_naive"
    assert row["error_class"] == "RuntimeError"
    assert row["error_message"] == "stan exploded"
    assert "prophet failed in backtest window 0 (RuntimeError)" in row["status_reason"]
    assert load_model(row["model_json"]).model_type == "seasonal_naive"
    assert row["model_json"] == row["baseline_json"]
    # the baseline was still backtested
    assert {m["model"] for m in row["metrics"]} == {"seasonal_naive"}
    out = forecast_group(row, _future(stores[1]), {"store": 1}, CONFIG)
    assert len(out) == CONFIG.horizon_days and (out["model_type"] == "seasonal_naive").all()


def test_everything_failing_gives_failed_and_never_raises(stores, monkeypatch):
    def boom(self, *args, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr(ProphetForecaster, "fit", boom)
    monkeypatch.setattr(SeasonalNaiveForecaster, "fit", boom)
    row = train_group(stores[1], {"store": 1}, CONFIG, RUN_DATE)
    assert row["status"] == "failed"
    assert row["champion"] is None and row["model_json"] is None
    assert row["error_class"] == "MemoryError"
    assert "seasonal naive failed too" in row["status_reason"]
    # and forecasting from a failed row yields no rows instead of raising
    out = forecast_group(row, _future(stores[1]), {"store": 1}, CONFIG)
    assert out.empty and list(out.columns) == ["store", *FORECAST_COLUMNS]


def test_error_message_is_truncated(stores, monkeypatch):
    def boom(self, *args, **kwargs):
        raise ValueError("x" * 5000)

    monkeypatch.setattr(ProphetForecaster, "fit", boom)
    row = train_group(stores[1], {"store": 1}, CONFIG, RUN_DATE)
    assert row["status"] == "fallback" and len(row["error_message"]) == 500


def test_unexpected_input_type_is_failed_not_raised():
    row = train_group(None, {"store": 9}, CONFIG, RUN_DATE)  # type: ignore[arg-type]
    assert row["status"] == "failed" and row["error_class"] == "AttributeError"
    assert row["store"] == 9


# ---------------------------------------------------------------------------------------------
# selection, backtest windows, warm start


@prophet_heavy
def test_seasonal_naive_wins_on_a_purely_weekly_series(stores):
    """A noiseless weekly pattern is forecast exactly by the baseline, which must win."""
    h = stores[1][stores[1]["date"] < RUN_DATE].copy()
    weekday = np.array([d.weekday() for d in h["date"]])
    h["sales"] = np.array([5000, 4000, 4200, 4100, 4500, 6000, 0])[weekday]
    h["open"] = (weekday != 6).astype(int)
    h["promo"] = 0
    h["state_holiday"] = "0"
    row = train_group(h, {"store": 1}, CONFIG, RUN_DATE)
    assert row["status"] == "ok" and row["champion"] == "seasonal_naive", row["status_reason"]
    assert "seasonal naive beats prophet by" in row["status_reason"]
    wape = {m["model"]: m["value"] for m in row["metrics"] if m["metric"] == "wape"}
    assert wape["seasonal_naive"] == pytest.approx(0.0)
    assert row["model_json"] == row["baseline_json"]


@prophet_heavy
def test_multiple_backtest_windows(stores):
    config = dataclasses.replace(CONFIG, backtest_windows=2, backtest_step_days=28)
    row = train_group(stores[1], {"store": 1}, config, RUN_DATE)
    assert row["status"] == "ok"
    assert {m["backtest_window"] for m in row["metrics"]} == {0, 1}
    points = pd.DataFrame(row["backtest_points"])
    last = RUN_DATE - dt.timedelta(days=1)
    for window, end in ((0, last), (1, last - dt.timedelta(days=28))):
        p = points[(points["backtest_window"] == window) & (points["model"] == "prophet")]
        assert p["ds"].max() == end
        assert p["ds"].min() == end - dt.timedelta(days=config.horizon_days - 1)


@prophet_heavy
def test_warm_start_from_previous_model(stores, trained):
    config = dataclasses.replace(CONFIG, warm_start=True)
    later = RUN_DATE + dt.timedelta(days=7)
    warm = train_group(stores[1], {"store": 1}, config, later, trained[1]["model_json"])
    assert warm["status"] == "ok" and warm["warm_started"] is True
    # an incompatible previous model (the baseline) only means a cold start, with a note
    cold = train_group(stores[1], {"store": 1}, config, later, trained[1]["baseline_json"])
    assert cold["status"] == "ok" and cold["warm_started"] is False
    assert "warm start skipped" in cold["status_reason"]
    # warm_start off: the previous model is ignored
    off = train_group(stores[1], {"store": 1}, CONFIG, later, trained[1]["model_json"])
    assert off["warm_started"] is False and off["model_json"] == cold["model_json"]


# ---------------------------------------------------------------------------------------------
# schemas


def test_schemas_match_the_result_layout():
    assert model_schema().names == ["store", *MODEL_COLUMNS]
    assert forecast_schema().names == ["store", *FORECAST_COLUMNS]
    metric_struct = model_schema()["metrics"].dataType.elementType
    assert metric_struct.names == ["backtest_window", "model", "metric", "value", "n_obs"]
    with pytest.raises(ValueError, match="clash"):
        model_schema([model_schema()["status"]])


def test_seasonal_naive_definition():
    """Mean of the last 4 trading same-weekday values; a closed day never makes it 0."""
    days = pd.date_range("2015-01-05", periods=35, freq="D")  # Monday .. 5 full weeks
    y = np.where(days.weekday == 0, 100.0 + np.arange(35), 50.0)
    open_ = np.ones(35, dtype=int)
    open_[28] = 0  # the last Monday is closed (y would be 0)
    y[28] = 0.0
    frame = pd.DataFrame({"ds": days, "y": y, "open": open_})
    model = SeasonalNaiveForecaster(7, 4, 0.8).fit(frame)
    future = pd.DataFrame({"ds": pd.date_range("2015-02-09", periods=8, freq="D")})
    future["open"] = [1, 1, 1, 1, 1, 1, 0, 1]
    pred = model.predict(future)
    mondays = [100.0 + i for i in (0, 7, 14, 21)]  # the 4 open Mondays (day 28 was closed)
    assert pred["yhat"].iloc[0] == pytest.approx(np.mean(mondays))
    assert pred["yhat"].iloc[7] == pytest.approx(np.mean(mondays))
    assert pred["yhat"].iloc[1] == pytest.approx(50.0)
    assert pred.loc[6, ["yhat", "yhat_lower", "yhat_upper"]].tolist() == [0.0, 0.0, 0.0]
    assert (pred["yhat_lower"] <= pred["yhat"]).all() and (pred["yhat"] <= pred["yhat_upper"]).all()
    state = json.loads(model.to_json())
    assert state["model_type"] == "seasonal_naive" and len(state["levels"]) == 7


def test_normalize_dates_keeps_the_local_day():
    import datetime as _dt

    from mlcore.forecasting.history import normalize_dates

    as_text = lambda a: [str(d) for d in a]  # noqa: E731
    plus2 = _dt.timezone(_dt.timedelta(hours=2))
    cases = {
        "date objects": pd.Series([_dt.date(2015, 7, 31), None], dtype=object),
        "strings": pd.Series(["2015-07-31", "not a date"]),
        "tz-aware dtype": pd.Series(
            pd.to_datetime(["2015-07-31 23:30", "NaT"]).tz_localize("Europe/Berlin")
        ),
        "mixed offsets": pd.Series(["2015-07-31T23:30:00+02:00", None]),
        "mixed tz objects": pd.Series(
            [_dt.datetime(2015, 7, 31, 23, 0, tzinfo=plus2), None], dtype=object
        ),
        "times of day": pd.Series(pd.to_datetime(["2015-07-31 18:00", None])),
    }
    for name, values in cases.items():
        assert as_text(normalize_dates(values)) == ["2015-07-31", "NaT"], name
    mixed = pd.Series(
        [
            _dt.datetime(2015, 7, 31, 23, 0, tzinfo=plus2),
            _dt.datetime(2015, 7, 30, tzinfo=_dt.timezone.utc),
        ],
        dtype=object,
    )
    assert as_text(normalize_dates(mixed)) == ["2015-07-31", "2015-07-30"]


def test_unparsable_dates_are_dropped_and_noted(stores):
    h = stores[1].copy()
    h["date"] = h["date"].astype(object)
    h.loc[h.index[300], "date"] = "garbage"
    prep = prepare_history(h, CONFIG, RUN_DATE)
    assert "dropped 1 row with an unparsable date" in prep.notes
    assert len(prep.frame) == (stores[1]["date"] < RUN_DATE).sum() - 1


@prophet_heavy
def test_forecast_group_hygiene_on_the_future_frame(trained, stores):
    future = _future(stores[1])
    messy = pd.concat([future, future.iloc[[5]]], ignore_index=True).sample(frac=1, random_state=1)
    messy["promo"] = messy["promo"].astype(float)
    messy.loc[messy.index[:3], "promo"] = np.nan
    messy["open"] = messy["open"].astype(float)
    messy.loc[messy["open"] == 1, "open"] = np.nan  # unknown counts as open
    out = forecast_group(trained[1], messy, {"store": 1}, CONFIG)
    assert len(out) == CONFIG.horizon_days  # one row per date, sorted
    assert out["ds"].tolist() == sorted(future["date"])
    assert ((out["yhat"] > 0) == (future["open"].to_numpy() == 1)).all()
    with pytest.raises(history.ForecastInputError, match="date column"):
        forecast_group(trained[1], future.drop(columns=["date"]), {"store": 1}, CONFIG)


@prophet_heavy
def test_short_history_trains_without_a_backtest(stores):
    h = stores[1]
    h = h[(h["date"] < RUN_DATE) & (h["date"] >= RUN_DATE - dt.timedelta(days=120))]
    row = train_group(h, {"store": 1}, CONFIG, RUN_DATE)
    assert row["status"] == "ok" and row["champion"] == "prophet"
    assert row["status_reason"].startswith("no scored backtest window: prophet by default")
    assert "backtest window 0 left out" in row["status_reason"]
    assert row["metrics"] == [] and row["backtest_points"] == []
    assert CONFIG.min_history_days <= row["train_rows"] < 120
