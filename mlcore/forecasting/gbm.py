"""Gradient-boosted trees per group (LightGBM) on the shared features: the ``lightgbm`` family.

Why LightGBM: it is the well-kept library for small tabular fits (a store's ~800 open days fit
in ~25 ms on one thread), handles missing values natively (null features), and its models
serialise to text, so a fitted model is stored as JSON like every other family (never pickled).

Model: ``log1p(y)`` regressed on the configured features, fitted on open days with ``y > 0``
(a zero on an open day is an anomaly the log model should not chase); the forecast is
``expm1`` of the prediction, 0 on closed days. Fitting in log space suits RMSPE, the Rossmann
metric: errors are relative. Defaults (200 rounds, learning rate 0.1, 7 leaves) were chosen on
all 1,115 Rossmann stores at run date 2015-06-14 among a handful of settings that all scored
within 0.001 RMSPE of each other (the cheapest of them), and are not tuned per store.

Intervals: the ``(1 - w) / 2`` and ``(1 + w) / 2`` quantiles of the in-sample residuals in log
space, times ``interval_scale`` (default 1.5), because boosted trees fit their own training rows
more closely than they forecast. Approximate: the backtest's ``coverage`` metric says how well
they hold.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd

from mlcore.config.models import ForecastingConfig
from mlcore.forecasting.features import CALENDAR_FEATURES
from mlcore.forecasting.models import FORMAT_VERSION, _open_mask, unknown_params

DEFAULT_FEATURES: Final[tuple[str, ...]] = (
    *CALENDAR_FEATURES,
    "promo2_active",
    "competition_open_months",
)
_PARAMS: Final[dict[str, type]] = {
    "n_estimators": int,
    "learning_rate": float,
    "num_leaves": int,
    "min_child_samples": int,
    "feature_fraction": float,
    "bagging_fraction": float,
    "lambda_l2": float,
    "interval_width": float,
    "interval_scale": float,
}


def _training_scores(booster: Any, rows: int) -> np.ndarray:
    """The fitted values of the training rows, as LightGBM kept them while boosting (its
    ``eval_train`` hands them to a metric function): the same numbers as predicting the design
    matrix again, without another pass of every row through every tree (~4 ms of a store's fit).
    The regression objective's raw score is the prediction (identity link)."""
    captured: list[np.ndarray] = []

    def keep(scores: np.ndarray, _data: Any) -> tuple[str, float, bool]:
        captured.append(np.asarray(scores, dtype=np.float64))
        return "fitted", 0.0, False

    booster.eval_train(feval=keep)
    if not captured or captured[0].shape != (rows,):
        raise RuntimeError("LightGBM returned no training scores")
    return captured[0]


class LightGBMForecaster:
    """One LightGBM regressor per group on the shared features (see the module docstring)."""

    family: ClassVar[str] = "lightgbm"
    model_type: ClassVar[str] = family

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], config: ForecastingConfig, seed: int
    ) -> LightGBMForecaster:
        """The constructor's parameters plus ``features`` (default: the calendar features, the
        configured regressors, ``promo2_active`` and ``competition_open_months``);
        ``interval_width`` defaults to Prophet's."""
        unknown_params(params, {*_PARAMS, "features"}, cls.family)
        values: dict[str, Any] = {}
        for name, kind in _PARAMS.items():
            if name in params and params[name] is not None:
                try:
                    values[name] = kind(params[name])
                except (TypeError, ValueError):
                    raise ValueError(f"{cls.family}: {name} must be a {kind.__name__}") from None
        values.setdefault("interval_width", config.prophet.interval_width)
        features = params.get("features")
        if features is None:
            features = [*DEFAULT_FEATURES, *config.prophet.regressors]
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise ValueError(f"{cls.family}: features must be a list of column names")
        return cls(features=features, seed=seed, **values)

    def __init__(
        self,
        features: Sequence[str] = DEFAULT_FEATURES,
        n_estimators: int = 200,
        learning_rate: float = 0.1,
        num_leaves: int = 7,
        min_child_samples: int = 10,
        feature_fraction: float = 0.8,
        bagging_fraction: float = 0.9,
        lambda_l2: float = 1.0,
        interval_width: float = 0.8,
        interval_scale: float = 1.5,
        seed: int = 0,
    ):
        if not features:
            raise ValueError(f"{self.family}: features is empty")
        if n_estimators < 1 or num_leaves < 2 or min_child_samples < 1:
            raise ValueError(
                f"{self.family}: n_estimators >= 1, num_leaves >= 2, min_child_samples >= 1"
            )
        if not 0 < learning_rate <= 1:
            raise ValueError(f"{self.family}: learning_rate must be in (0, 1]")
        for name, value in (("feature_fraction", feature_fraction), ("bagging_fraction", bagging_fraction)):
            if not 0 < value <= 1:
                raise ValueError(f"{self.family}: {name} must be in (0, 1]")
        if lambda_l2 < 0 or interval_scale <= 0:
            raise ValueError(f"{self.family}: lambda_l2 >= 0 and interval_scale > 0")
        if not 0.0 < interval_width < 1.0:
            raise ValueError(f"{self.family}: interval_width must be in (0, 1)")
        self.feature_names = tuple(dict.fromkeys(features))
        self.n_estimators = int(n_estimators)
        self.learning_rate = float(learning_rate)
        self.num_leaves = int(num_leaves)
        self.min_child_samples = int(min_child_samples)
        self.feature_fraction = float(feature_fraction)
        self.bagging_fraction = float(bagging_fraction)
        self.lambda_l2 = float(lambda_l2)
        self.interval_width = float(interval_width)
        self.interval_scale = float(interval_scale)
        self.seed = int(seed)

    @property
    def features(self) -> tuple[str, ...]:
        return self.feature_names

    def _design(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.feature_names if f not in frame.columns]
        if missing:
            raise KeyError(f"{self.family} needs feature column(s) {', '.join(missing)}")
        columns = frame[list(self.feature_names)]
        if all(dtype.kind == "f" for dtype in columns.dtypes):  # the history rules' floats
            return columns.to_numpy(dtype=np.float64)
        return np.column_stack(
            [pd.to_numeric(frame[f], errors="coerce").to_numpy(dtype=np.float64) for f in self.feature_names]
        )

    def _train_params(self) -> dict[str, Any]:
        return {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1 else 0,
            "lambda_l2": self.lambda_l2,
            "num_threads": 1,  # one group per core: Spark runs the groups in parallel
            "force_col_wise": True,
            "deterministic": True,
            "seed": self.seed,
            "verbose": -1,
        }

    def fit(self, history: pd.DataFrame) -> LightGBMForecaster:
        """Fit on the open days with ``y > 0`` of ``history`` (``ds``, ``y``, ``open``, features)."""
        import lightgbm

        y = pd.to_numeric(history["y"], errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(y) & (y > 0) & _open_mask(history)
        if keep.sum() < 2 * self.min_child_samples:
            raise ValueError(
                f"{self.family} needs at least {2 * self.min_child_samples} trading days, got {int(keep.sum())}"
            )
        design = self._design(history)[keep]
        target = np.log1p(y[keep])
        data = lightgbm.Dataset(design, target, free_raw_data=True)
        # keep_training_booster: no text round trip of the model at the end of train (~4 ms a fit)
        booster = lightgbm.train(
            self._train_params(), data, num_boost_round=self.n_estimators, keep_training_booster=True
        )
        residuals = target - _training_scores(booster, len(target))
        alpha = (1.0 - self.interval_width) / 2.0
        low, high = np.quantile(residuals, [alpha, 1.0 - alpha])
        self.booster_ = booster
        self.residual_low_ = float(min(low, 0.0)) * self.interval_scale
        self.residual_high_ = float(max(high, 0.0)) * self.interval_scale
        self.n_obs_ = int(keep.sum())
        return self

    def predict(self, future: pd.DataFrame) -> pd.DataFrame:
        """``ds, yhat, yhat_lower, yhat_upper`` for every row of ``future`` (closed rows 0)."""
        self._check_fitted()
        mask = _open_mask(future)
        yhat = np.zeros(len(future))
        lower, upper = np.zeros(len(future)), np.zeros(len(future))
        if mask.any():
            design = self._design(future.loc[mask])
            # one thread: a booster read back from text has no num_threads, and OpenMP's default
            # (every core) per call thrashes when groups or requests already run in parallel
            log_yhat = np.asarray(self.booster_.predict(design, num_threads=1), dtype=np.float64)
            yhat[mask] = np.maximum(np.expm1(log_yhat), 0.0)
            lower[mask] = np.maximum(np.expm1(log_yhat + self.residual_low_), 0.0)
            upper[mask] = np.maximum(np.expm1(log_yhat + self.residual_high_), 0.0)
        return pd.DataFrame(
            {
                "ds": pd.to_datetime(future["ds"].to_numpy()) if len(future) else pd.Series(dtype="M8[ns]"),
                "yhat": yhat,
                "yhat_lower": lower,
                "yhat_upper": upper,
            }
        )

    def to_json(self) -> str:
        """The parameters and the booster's text model (zlib + base64: a store's 200 trees are
        ~160 KB as text, ~70 KB so)."""
        self._check_fitted()
        text = self.booster_.model_to_string()
        return json.dumps(
            {
                "model_type": self.model_type,
                "format_version": FORMAT_VERSION,
                "features": list(self.feature_names),
                "params": {name: getattr(self, name) for name in _PARAMS} | {"seed": self.seed},
                "residual_low": self.residual_low_,
                "residual_high": self.residual_high_,
                "n_obs": self.n_obs_,
                "booster": base64.b64encode(zlib.compress(text.encode("utf-8"), 1)).decode("ascii"),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> LightGBMForecaster:
        import lightgbm

        payload = json.loads(text)
        if payload.get("model_type") != cls.model_type:
            raise ValueError(f"not a {cls.model_type} model: {payload.get('model_type')!r}")
        obj = cls(features=payload["features"], **payload["params"])
        booster_text = zlib.decompress(base64.b64decode(payload["booster"])).decode("utf-8")
        obj.booster_ = lightgbm.Booster(model_str=booster_text)
        obj.residual_low_ = float(payload["residual_low"])
        obj.residual_high_ = float(payload["residual_high"])
        obj.n_obs_ = int(payload["n_obs"])
        return obj

    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise RuntimeError("LightGBMForecaster is not fitted")
