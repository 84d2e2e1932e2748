"""Per-group forecasting models with a small, uniform API (statsforecast/sklearn style).

Every model takes its parameters in the constructor, learns in ``fit(df) -> self`` (fitted
state lives in attributes ending in ``_``), predicts with ``predict(future_df)`` and is saved as
JSON text with ``to_json()`` / ``from_json()``. Models are never pickled: JSON is portable across
library versions, readable, and safe to load.

Column contract (the group functions in :mod:`mlcore.forecasting.training` and :mod:`~mlcore.forecasting.prediction` produce it):

* ``fit(df)``: ``ds`` (date-like), ``y`` (float), every configured regressor, and the configured
  holidays column (raw codes, optional).
* ``predict(future_df)``: ``ds``, regressors, holidays column, and optionally ``open``. Rows with
  ``open == 0`` are not sent to the model: their ``yhat``, ``yhat_lower`` and ``yhat_upper`` are 0.
  The result has one row per input row, in input order, with columns
  ``ds, yhat, yhat_lower, yhat_upper`` (``ds`` as ``datetime64[ns]``).

Prophet is imported lazily (``import prophet`` costs ~0.6 s and is only needed on executors
that actually fit), and its INFO logging (and the cmdstanpy chatter) is silenced on first use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd

from mlcore.config.models import ForecastingConfig, ProphetConfig
from mlcore.forecasting import prophet_map

FORMAT_VERSION: Final[int] = 1
PREDICTION_COLUMNS: Final[tuple[str, ...]] = ("ds", "yhat", "yhat_lower", "yhat_upper")
# Rossmann StateHoliday codes -> Prophet holiday names. Any other non-"0" code becomes
# "holiday_<code>"; "0", empty and null mean "no holiday".
HOLIDAY_NAMES: Final[dict[str, str]] = {"a": "public", "b": "easter", "c": "christmas"}
NO_HOLIDAY_CODES: Final[frozenset[str]] = frozenset({"", "0", "0.0", "nan", "none", "null"})

_SEASONALITY_FLAGS: Final[tuple[tuple[str, str], ...]] = (
    ("yearly", "yearly_seasonality"),
    ("weekly", "weekly_seasonality"),
    ("daily", "daily_seasonality"),
)
_PROPHET: Any = None
# Write cmdstanpy's input JSON with the C encoder (identical bytes, ~12 ms less per fit); see
# _use_fast_stan_json. Module-level so that it can be switched off if a cmdstanpy upgrade breaks it.
FAST_STAN_JSON: bool = True


# --------------------------------------------------------------------------------------------
# helpers


def _prophet_api() -> Any:
    """Import prophet lazily (once per process) and silence its and cmdstanpy's INFO logging."""
    global _PROPHET
    if _PROPHET is None:
        logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)  # "Importing plotly failed"
        import cmdstanpy.utils
        import prophet
        import prophet.serialize
        import prophet.utilities

        # prophet sets its logger to INFO when imported, and cmdstanpy configures its logger
        # (level DEBUG plus its own handler) on first use: set both levels after the imports.
        cmdstanpy.utils.get_logger().setLevel(logging.WARNING)
        logging.getLogger("prophet").setLevel(logging.WARNING)
        _PROPHET = prophet
    return _PROPHET


def _plain_json_value(value: Any) -> bool:
    """True for what ``json.dumps`` writes exactly as stanio does: numbers and lists of them."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, list):
        return not value or _plain_json_value(value[0])
    return False


def _use_fast_stan_json(model: Any) -> None:
    """Let one Prophet model's cmdstanpy ``optimize`` read data/inits from fast-written JSON.

    cmdstanpy writes the Stan data and inits with stanio's pure-Python JSON encoder, about
    20 ms per fit for a Rossmann store (a 800 x 30 feature matrix). Prophet already hands it
    plain Python lists, which the C ``json`` encoder writes byte for byte the same in ~8 ms. The
    wrapper writes the two files itself and passes their paths (a documented ``optimize`` input);
    for anything but plain numbers/lists, or NaN/inf, it defers to cmdstanpy unchanged.
    """
    backend = getattr(model, "stan_backend", None)
    stan_model = getattr(backend, "model", None)
    original = getattr(stan_model, "optimize", None)
    if stan_model is None or original is None:
        return

    def optimize(data: Any = None, **kwargs: Any) -> Any:
        inits = kwargs.get("inits")
        if not (
            isinstance(data, dict)
            and isinstance(inits, dict)
            and all(_plain_json_value(v) for v in data.values())
            and all(_plain_json_value(v) for v in inits.values())
        ):
            return original(data, **kwargs)
        try:
            data_text = json.dumps(data, allow_nan=False)
            inits_text = json.dumps(inits, allow_nan=False)
        except (TypeError, ValueError):
            return original(data, **kwargs)
        with tempfile.TemporaryDirectory(prefix="mlcore-stan-") as tmp:
            data_path = os.path.join(tmp, "data.json")
            inits_path = os.path.join(tmp, "inits.json")
            with open(data_path, "w", encoding="utf-8") as fh:
                fh.write(data_text)
            with open(inits_path, "w", encoding="utf-8") as fh:
                fh.write(inits_text)
            kwargs["inits"] = inits_path
            return original(data_path, **kwargs)

    stan_model.optimize = optimize


def holiday_name(code: object) -> str | None:
    """Prophet holiday name of a raw holidays-column value (``None`` = not a holiday)."""
    if code is None or (isinstance(code, float) and math.isnan(code)):
        return None
    text = str(code).strip()
    if text.lower() in NO_HOLIDAY_CODES:
        return None
    return HOLIDAY_NAMES.get(text, f"holiday_{text}")


def _holiday_frame(df: pd.DataFrame, column: str | None) -> pd.DataFrame:
    """Prophet ``holidays`` frame (``holiday``, ``ds``) from the rows of ``df`` that are holidays."""
    if not column or column not in df.columns or df.empty:
        return pd.DataFrame({"holiday": pd.Series(dtype=object), "ds": pd.Series(dtype="M8[ns]")})
    codes = df[column]
    uniques = pd.unique(codes)
    mapping = {c: holiday_name(c) for c in uniques}
    names = codes.map(mapping)
    mask = names.notna().to_numpy()
    frame = pd.DataFrame(
        {"holiday": names.to_numpy()[mask], "ds": pd.to_datetime(df["ds"].to_numpy()[mask])}
    )
    return frame.drop_duplicates().sort_values(["ds", "holiday"], kind="mergesort")


def _open_mask(future_df: pd.DataFrame) -> np.ndarray:
    """Rows to send to a model: every row, except ``open == 0`` when an ``open`` column exists."""
    if "open" not in future_df.columns:
        return np.ones(len(future_df), dtype=bool)
    is_open = pd.to_numeric(future_df["open"], errors="coerce").to_numpy(dtype=np.float64)
    return ~(is_open == 0)  # NaN (unknown) counts as open


def _empty_prediction(future_df: pd.DataFrame) -> pd.DataFrame:
    n = len(future_df)
    return pd.DataFrame(
        {
            "ds": pd.to_datetime(future_df["ds"].to_numpy()) if n else pd.Series(dtype="M8[ns]"),
            "yhat": np.zeros(n),
            "yhat_lower": np.zeros(n),
            "yhat_upper": np.zeros(n),
        }
    )


def _seed32(seed: int) -> int:
    return int(seed) % (2**32)


def _json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _from_json_float(value: float | None) -> float:
    return float("nan") if value is None else float(value)


# --------------------------------------------------------------------------------------------
# Prophet


class ProphetForecaster:
    """Prophet configured from :class:`~mlcore.config.models.ProphetConfig`.

    * Seasonalities, priors, changepoints, interval width and ``uncertainty_samples`` come from
      the config. Extra regressors (``prophet.regressors``) must be present, without nulls, in
      both the training frame and ``future_df``.
    * Holidays come from ``prophet.holidays_column`` (raw codes, see :func:`holiday_name`): the
      training rows give the holiday dates Prophet learns from, and the holiday rows of
      ``future_df`` are added at prediction time (a holiday kind never seen in training has no
      effect, as in Prophet itself).
    * ``init_json`` (a previous model's :meth:`to_json`, or Prophet's own JSON) warm-starts the
      optimiser through ``prophet.utilities.warm_start_params`` when the previous model is
      compatible (same growth, seasonalities, regressors, holiday kinds, changepoint count, MAP
      fit); otherwise the fit is cold and ``warm_start_note_`` says why.
    * Deterministic: the Stan optimiser gets ``seed`` and the uncertainty simulation in
      :meth:`predict` runs under ``numpy.random.seed(seed)`` (the global state is restored
      afterwards), so identical inputs give identical intervals, also after a JSON round trip.
    """

    family: ClassVar[str] = "prophet"
    model_type: ClassVar[str] = family
    model_: Any  # the fitted Prophet object, set by fit (or from_json)

    def __init__(self, prophet: ProphetConfig, seed: int = 0, init_json: str | None = None):
        self.prophet = prophet
        self.seed = int(seed)
        self.init_json = init_json

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Any],
        config: ForecastingConfig,
        seed: int,
        init_json: str | None = None,
    ) -> ProphetForecaster:
        """The ``forecasting.prophet`` settings with ``params`` (any of its keys) on top, typed
        and checked as the config loader checks them."""
        from mlcore.config.typed import build_section

        if not params:
            return cls(config.prophet, seed=seed, init_json=init_json)
        unknown_params(params, {f.name for f in fields(ProphetConfig)}, cls.family)
        merged = build_section(ProphetConfig, {**asdict(config.prophet), **params})
        return cls(merged, seed=seed, init_json=init_json)

    @property
    def features(self) -> tuple[str, ...]:
        holidays = (self.prophet.holidays_column,) if self.prophet.holidays_column else ()
        return (*self.prophet.regressors, *holidays)

    # -- fitting -------------------------------------------------------------------------------

    def _new_model(self, holidays: pd.DataFrame | None) -> Any:
        api = _prophet_api()
        cfg = self.prophet
        m = api.Prophet(
            growth=cfg.growth,
            n_changepoints=cfg.n_changepoints,
            yearly_seasonality=cfg.yearly_seasonality,
            weekly_seasonality=cfg.weekly_seasonality,
            daily_seasonality=cfg.daily_seasonality,
            holidays=holidays if holidays is not None and len(holidays) else None,
            seasonality_mode=cfg.seasonality_mode,
            seasonality_prior_scale=cfg.seasonality_prior_scale,
            holidays_prior_scale=cfg.holidays_prior_scale,
            changepoint_prior_scale=cfg.changepoint_prior_scale,
            interval_width=cfg.interval_width,
            uncertainty_samples=cfg.uncertainty_samples,
        )
        for name in cfg.regressors:
            m.add_regressor(name)
        if cfg.optimizer == "inprocess":
            m.stan_backend = prophet_map.new_backend()
        elif FAST_STAN_JSON:
            _use_fast_stan_json(m)
        return m

    def fit(
        self, df: pd.DataFrame, init_model: ProphetForecaster | None = None
    ) -> ProphetForecaster:
        """Fit on ``df`` (``ds``, ``y``, regressors, holidays column).

        ``init_model`` (a fitted forecaster) takes precedence over ``init_json`` as the warm
        start source. ``train_group`` does *not* warm-start its final fit from the backtest fit:
        measured on Rossmann stores that saves only ~8 ms per fit but moves forecasts by up to
        10 % (L-BFGS stops at a different point), so the final model would depend on the
        backtest settings.
        """
        api = _prophet_api()
        cfg = self.prophet
        missing = [c for c in ("ds", "y", *cfg.regressors) if c not in df.columns]
        if missing:
            raise ValueError(f"training frame lacks column(s): {', '.join(missing)}")
        holidays = _holiday_frame(df, cfg.holidays_column)
        m = self._new_model(holidays)
        train = pd.DataFrame({"ds": pd.to_datetime(df["ds"].to_numpy()), "y": df["y"].to_numpy()})
        for name in cfg.regressors:
            train[name] = df[name].to_numpy()

        self.warm_started_ = False
        self.warm_start_note_: str | None = None
        previous = init_model.model_ if init_model is not None else None
        if previous is None and self.init_json:
            try:
                previous = _load_prophet_model(self.init_json)
            except Exception as exc:  # noqa: BLE001 - a bad previous model only costs a cold start
                self.warm_start_note_ = f"warm start skipped: unreadable previous model ({exc!r})"[
                    :200
                ]
        kwargs: dict[str, Any] = {"seed": _seed32(self.seed)}
        if previous is not None:
            why = warm_start_incompatibility(previous, cfg, set(holidays["holiday"]))
            if why is None:
                kwargs["init"] = api.utilities.warm_start_params(previous)
                self.warm_started_ = True
            else:
                self.warm_start_note_ = f"warm start skipped: {why}"
        m.fit(train, **kwargs)
        try:  # cmdstanpy leaves one CSV per fit in its temp dir; executors live long
            m.stan_backend.cleanup()
        except Exception:  # noqa: BLE001, S110 - best effort
            pass
        self.model_ = m
        return self

    # -- prediction ----------------------------------------------------------------------------

    def predict(self, future_df: pd.DataFrame) -> pd.DataFrame:
        """``ds, yhat, yhat_lower, yhat_upper`` for every row of ``future_df`` (closed rows 0).

        Only the open rows are sent to Prophet (never the history). The sampled interval is
        widened to contain ``yhat`` where sampling noise leaves it just outside, so
        ``yhat_lower <= yhat <= yhat_upper`` always holds.
        """
        m = self._fitted()
        out = _empty_prediction(future_df)
        mask = _open_mask(future_df)
        if not mask.any():
            return out
        cfg = self.prophet
        rows = future_df.loc[mask]
        fut = pd.DataFrame({"ds": pd.to_datetime(rows["ds"].to_numpy())})
        for name in cfg.regressors:
            if name not in rows.columns:
                raise ValueError(f"future frame lacks regressor column {name!r}")
            fut[name] = rows[name].to_numpy()
        order = np.argsort(fut["ds"].to_numpy(), kind="mergesort")
        fut = fut.iloc[order].reset_index(drop=True)  # Prophet returns rows sorted by ds

        saved_holidays = m.holidays
        future_holidays = _holiday_frame(rows, cfg.holidays_column)
        if len(future_holidays) and m.train_holiday_names is not None:
            base = saved_holidays if saved_holidays is not None else future_holidays.iloc[:0]
            m.holidays = (
                pd.concat([base[["holiday", "ds"]], future_holidays], ignore_index=True)
                .drop_duplicates()
                .reset_index(drop=True)
            )
        state = np.random.get_state()
        try:
            np.random.seed(_seed32(self.seed))
            fc = m.predict(fut)
        finally:
            np.random.set_state(state)
            m.holidays = saved_holidays

        yhat = fc["yhat"].to_numpy(dtype=np.float64)
        lower = fc["yhat_lower"].to_numpy(dtype=np.float64) if "yhat_lower" in fc else yhat
        upper = fc["yhat_upper"].to_numpy(dtype=np.float64) if "yhat_upper" in fc else yhat
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        idx = np.flatnonzero(mask)
        out.loc[idx, "yhat"] = yhat[inverse]
        out.loc[idx, "yhat_lower"] = np.minimum(lower, yhat)[inverse]
        out.loc[idx, "yhat_upper"] = np.maximum(upper, yhat)[inverse]
        return out

    # -- persistence ---------------------------------------------------------------------------

    def to_json(self) -> str:
        """The fitted model as JSON: our envelope around ``prophet.serialize.model_to_json``."""
        m = self._fitted()
        api = _prophet_api()
        return json.dumps(
            {
                "model_type": self.model_type,
                "format_version": FORMAT_VERSION,
                "seed": self.seed,
                "config": asdict(self.prophet),
                "prophet_model": api.serialize.model_to_json(m),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ProphetForecaster:
        """Load a model written by :meth:`to_json`."""
        payload = json.loads(text)
        if payload.get("model_type") != cls.model_type:
            raise ValueError(f"not a {cls.model_type} model: {payload.get('model_type')!r}")
        obj = cls(ProphetConfig(**payload["config"]), seed=int(payload["seed"]))
        obj.model_ = _prophet_api().serialize.model_from_json(payload["prophet_model"])
        obj.warm_started_ = False
        obj.warm_start_note_ = None
        return obj

    def _fitted(self) -> Any:
        m = getattr(self, "model_", None)
        if m is None:
            raise RuntimeError("ProphetForecaster is not fitted")
        return m


def _load_prophet_model(text: str) -> Any:
    """A Prophet object from our envelope JSON or from Prophet's own ``model_to_json`` text."""
    payload = json.loads(text)
    api = _prophet_api()
    if isinstance(payload, dict) and "prophet_model" in payload:
        return api.serialize.model_from_json(payload["prophet_model"])
    return api.serialize.model_from_dict(payload)


def warm_start_incompatibility(
    previous: Any, cfg: ProphetConfig, holiday_names: set[str]
) -> str | None:
    """Why ``previous`` (a fitted Prophet) cannot warm-start a model for ``cfg``; ``None`` if it can.

    ``warm_start_params`` is only valid when the parameter vectors line up: same growth and
    seasonality mode, MAP fit, same changepoint count, same seasonalities, regressors and
    holiday kinds (each adds one coefficient to ``beta``).
    """
    if getattr(previous, "params", None) is None or getattr(previous, "history", None) is None:
        return "previous model is not fitted"
    if previous.mcmc_samples:
        return "previous model used MCMC sampling"
    if previous.growth != cfg.growth:
        return f"growth {previous.growth} != {cfg.growth}"
    if previous.seasonality_mode != cfg.seasonality_mode:
        return f"seasonality_mode {previous.seasonality_mode} != {cfg.seasonality_mode}"
    if len(previous.changepoints) != cfg.n_changepoints:
        return f"{len(previous.changepoints)} changepoints != {cfg.n_changepoints}"
    wanted = {name for name, flag in _SEASONALITY_FLAGS if getattr(cfg, flag)}
    if set(previous.seasonalities) != wanted:
        return f"seasonalities {sorted(previous.seasonalities)} != {sorted(wanted)}"
    if list(previous.extra_regressors) != list(cfg.regressors):
        return f"regressors {list(previous.extra_regressors)} != {list(cfg.regressors)}"
    prev_holidays = (
        set(previous.train_holiday_names) if previous.train_holiday_names is not None else set()
    )
    if prev_holidays != holiday_names:
        return f"holidays {sorted(prev_holidays)} != {sorted(holiday_names)}"
    return None


# --------------------------------------------------------------------------------------------
# Seasonal naive


class SeasonalNaiveForecaster:
    """Seasonal-naive baseline that is robust to closed days.

    Definition: the forecast for a day is the **mean of the last ``n_seasons`` (default 4)
    observed values in the same phase of the season** (for ``season_length=7``: the same
    weekday), where only *trading* observations count: finite ``y > 0`` on rows not marked
    ``open == 0``. A closed day in the last week therefore never turns the forecast into 0, and
    averaging four weeks smooths out Rossmann's alternating promo weeks. A phase with no trading
    observation at all (e.g. Sundays for a store that never opens on Sunday) falls back to the
    mean of the last ``n_seasons * season_length`` trading observations. The phase is the day
    number modulo ``season_length``, so any date, however far ahead, gets a forecast (the last
    season is repeated).

    Intervals: the same rule applied in-sample (each trading day predicted from the
    ``n_seasons`` previous same-phase observations, once that many exist) gives relative errors
    ``y / yhat``; the ``(1 - w) / 2`` and ``(1 + w) / 2`` empirical quantiles of those ratios
    (``w = interval_width``) scale the point forecast into ``yhat_lower``/``yhat_upper``. Using
    ratios makes the band proportional to the level (busy Mondays get wider bands than quiet
    Saturdays). The quantiles are clamped so that ``yhat_lower <= yhat <= yhat_upper``. These are
    one-season-ahead errors, so the intervals tend to be narrow at long horizons.
    """

    family: ClassVar[str] = "seasonal_naive"
    model_type: ClassVar[str] = family
    features: tuple[str, ...] = ()  # ds, y and open only

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], config: ForecastingConfig, seed: int
    ) -> SeasonalNaiveForecaster:
        """``season_length`` (default ``forecasting.seasonal_period_days``), ``n_seasons``
        (default 4) and ``interval_width`` (default Prophet's); ``seed`` is not used."""
        unknown_params(params, {"season_length", "n_seasons", "interval_width"}, cls.family)
        return cls(
            season_length=int(params.get("season_length", config.seasonal_period_days)),
            n_seasons=int(params.get("n_seasons", 4)),
            interval_width=float(params.get("interval_width", config.prophet.interval_width)),
        )

    def __init__(self, season_length: int = 7, n_seasons: int = 4, interval_width: float = 0.8):
        if season_length < 1 or n_seasons < 1:
            raise ValueError("season_length and n_seasons must be >= 1")
        if not 0.0 < interval_width < 1.0:
            raise ValueError("interval_width must be in (0, 1)")
        self.season_length = int(season_length)
        self.n_seasons = int(n_seasons)
        self.interval_width = float(interval_width)

    def fit(self, df: pd.DataFrame) -> SeasonalNaiveForecaster:
        """Fit on ``ds``, ``y`` (and ``open`` if present)."""
        days = _day_numbers(df["ds"])
        y = pd.to_numeric(df["y"], errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(y) & (y > 0) & (days >= np.iinfo(np.int64).min + 1)
        keep &= _open_mask(df)
        if not keep.any():
            raise ValueError("seasonal naive needs at least one trading day (finite y > 0)")
        days, y = days[keep], y[keep]
        order = np.argsort(days, kind="mergesort")
        days, y = days[order], y[order]
        length, k = self.season_length, self.n_seasons

        phases = np.mod(days, length)
        levels: list[float] = []
        ratios: list[np.ndarray] = []
        for p in range(length):
            ys = y[phases == p]
            levels.append(float(np.mean(ys[-k:])) if ys.size else float("nan"))
            if ys.size > k:
                csum = np.concatenate(([0.0], np.cumsum(ys)))
                idx = np.arange(k, ys.size)
                prev_mean = (csum[idx] - csum[idx - k]) / k
                ratios.append(ys[idx] / prev_mean)
        ratio = np.concatenate(ratios) if ratios else np.empty(0)
        if ratio.size:
            alpha = (1.0 - self.interval_width) / 2.0
            lo, hi = np.quantile(ratio, [alpha, 1.0 - alpha])
        else:
            lo = hi = 1.0
        self.levels_ = levels
        self.fallback_level_ = float(np.mean(y[-k * length :]))
        self.ratio_lower_ = float(min(lo, 1.0))
        self.ratio_upper_ = float(max(hi, 1.0))
        self.last_day_ = int(days[-1])
        self.n_obs_ = int(y.size)
        return self

    def predict(self, future_df: pd.DataFrame) -> pd.DataFrame:
        """``ds, yhat, yhat_lower, yhat_upper`` for every row of ``future_df`` (closed rows 0)."""
        self._check_fitted()
        out = _empty_prediction(future_df)
        mask = _open_mask(future_df)
        if not mask.any():
            return out
        days = _day_numbers(future_df["ds"])[mask]
        levels = np.asarray(self.levels_, dtype=np.float64)
        yhat = levels[np.mod(days, self.season_length)]
        yhat = np.where(np.isfinite(yhat), yhat, self.fallback_level_)
        idx = np.flatnonzero(mask)
        out.loc[idx, "yhat"] = yhat
        out.loc[idx, "yhat_lower"] = yhat * self.ratio_lower_
        out.loc[idx, "yhat_upper"] = yhat * self.ratio_upper_
        return out

    def to_json(self) -> str:
        self._check_fitted()
        return json.dumps(
            {
                "model_type": self.model_type,
                "format_version": FORMAT_VERSION,
                "season_length": self.season_length,
                "n_seasons": self.n_seasons,
                "interval_width": self.interval_width,
                "levels": [_json_float(v) for v in self.levels_],
                "fallback_level": _json_float(self.fallback_level_),
                "ratio_lower": self.ratio_lower_,
                "ratio_upper": self.ratio_upper_,
                "last_date": str(np.datetime64(self.last_day_, "D")),
                "n_obs": self.n_obs_,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SeasonalNaiveForecaster:
        payload = json.loads(text)
        if payload.get("model_type") != cls.model_type:
            raise ValueError(f"not a {cls.model_type} model: {payload.get('model_type')!r}")
        obj = cls(payload["season_length"], payload["n_seasons"], payload["interval_width"])
        obj.levels_ = [_from_json_float(v) for v in payload["levels"]]
        obj.fallback_level_ = _from_json_float(payload["fallback_level"])
        obj.ratio_lower_ = float(payload["ratio_lower"])
        obj.ratio_upper_ = float(payload["ratio_upper"])
        obj.last_day_ = int(np.datetime64(payload["last_date"], "D").astype(np.int64))
        obj.n_obs_ = int(payload["n_obs"])
        return obj

    def _check_fitted(self) -> None:
        if not hasattr(self, "levels_"):
            raise RuntimeError("SeasonalNaiveForecaster is not fitted")


def _day_numbers(ds: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 (int64) of a date-like column (dates, datetimes, strings)."""
    values = pd.to_datetime(ds.to_numpy() if isinstance(ds, pd.Series) else ds)
    return np.asarray(values.to_numpy(dtype="datetime64[D]").astype(np.int64))


# --------------------------------------------------------------------------------------------

def unknown_params(params: Mapping[str, Any], allowed: set[str], family: str) -> None:
    """Raise ``ValueError`` naming the parameters ``family`` does not take."""
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"{family} takes no parameter(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )



def model_digest(text: str) -> str:
    """The content hash stored beside a model's JSON and checked before it is loaded."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
