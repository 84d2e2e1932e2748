"""A user's own model family, outside mlcore: named in config by import path
(``tests.unit.toy_family:WeekdayMeanForecaster``) and trained, selected, stored and forecast by
mlcore without any change to mlcore (tests/unit/test_forecast_families.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd


class WeekdayMeanForecaster:
    """Forecast = the mean of the last ``weeks`` trading days of the same weekday, scaled by the
    promo uplift seen in the history; interval = that +- ``band`` (a share)."""

    family: ClassVar[str] = "weekday_mean"
    features = ("promo",)

    def __init__(self, weeks: int = 6, band: float = 0.2) -> None:
        if weeks < 1:
            raise ValueError("weeks must be >= 1")
        self.weeks, self.band = int(weeks), float(band)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], config: Any, seed: int) -> WeekdayMeanForecaster:
        unknown = sorted(set(params) - {"weeks", "band"})
        if unknown:
            raise ValueError(f"weekday_mean takes no parameter(s) {', '.join(unknown)}")
        return cls(**params)

    def fit(self, history: pd.DataFrame) -> WeekdayMeanForecaster:
        trading = history[(history["y"] > 0) & (history.get("open", 1) != 0)]
        if trading.empty:
            raise ValueError("no trading day")
        weekday = pd.to_datetime(trading["ds"]).dt.weekday
        self.levels_ = {
            int(day): float(part["y"].tail(self.weeks).mean())
            for day, part in trading.groupby(weekday)
        }
        promo = trading["promo"] > 0
        uplift = trading.loc[promo, "y"].mean() / trading.loc[~promo, "y"].mean()
        self.uplift_ = float(uplift) if np.isfinite(uplift) else 1.0
        return self

    def predict(self, future: pd.DataFrame) -> pd.DataFrame:
        ds = pd.to_datetime(future["ds"])
        overall = float(np.mean(list(self.levels_.values())))
        yhat = np.array([self.levels_.get(d, overall) for d in ds.dt.weekday], dtype=float)
        yhat = yhat / np.sqrt(self.uplift_) * np.where(future["promo"] > 0, np.sqrt(self.uplift_) ** 2, 1.0)
        if "open" in future:
            yhat = np.where(future["open"].to_numpy() == 0, 0.0, yhat)
        return pd.DataFrame(
            {"ds": ds.to_numpy(), "yhat": yhat, "yhat_lower": yhat * (1 - self.band),
             "yhat_upper": yhat * (1 + self.band)}
        )  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(
            {"model_type": self.family, "weeks": self.weeks, "band": self.band,
             "levels": self.levels_, "uplift": self.uplift_}
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> WeekdayMeanForecaster:
        payload = json.loads(text)
        model = cls(payload["weeks"], payload["band"])
        model.levels_ = {int(k): float(v) for k, v in payload["levels"].items()}
        model.uplift_ = float(payload["uplift"])
        return model
