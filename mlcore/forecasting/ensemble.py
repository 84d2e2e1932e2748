"""The ``ensemble`` family: the mean of a group's best ``k`` member families by backtest.

Configured like any family, with ``members`` (names of other configured families) and ``k``::

    models:
      - family: lightgbm
      - family: prophet
      - family: ensemble
        params: {members: [lightgbm, prophet], k: 2}

Training does not refit the members to backtest the ensemble: the members are deterministic,
so the ensemble's prediction in a window is the mean of the members' predictions in that window
(the same numbers a refit would give). Per group, the ``k`` members with the best mean
``selection_metric`` over the windows that every member scored make up the ensemble; the
ensemble then competes with the other families like any of them. Its stored JSON holds its
members' JSON, so it loads and predicts wherever they do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mlcore.config.models import ForecastingConfig
from mlcore.forecasting.models import FORMAT_VERSION, unknown_params


class EnsembleForecaster:
    """The mean forecast (point and bounds) of fitted or unfitted member models."""

    family: ClassVar[str] = "ensemble"
    model_type: ClassVar[str] = family

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], config: ForecastingConfig, seed: int
    ) -> EnsembleForecaster:
        """``members``: configured family names (at least two, not the ensemble itself); ``k``:
        how many of them each group averages (default all)."""
        from mlcore.forecasting.families import build_model, family_name

        unknown_params(params, {"members", "k"}, cls.family)
        members = params.get("members")
        if not isinstance(members, list) or len(members) < 2:
            raise ValueError(f"{cls.family}: members must list at least two configured families")
        specs = {}
        for spec in config.models:
            if spec.family != cls.family:
                specs[spec.family] = spec
                specs.setdefault(family_name(spec), spec)
        unknown = [m for m in members if m not in specs]
        if unknown:
            raise ValueError(
                f"{cls.family}: members {', '.join(map(str, unknown))} are not configured "
                "families (forecasting.models)"
            )
        k = params.get("k", len(members))
        if not isinstance(k, int) or not 1 <= k <= len(members):
            raise ValueError(f"{cls.family}: k must be an integer in 1..{len(members)}")
        models = [build_model(specs[m], config, seed) for m in members]
        return cls(models, k)

    def __init__(self, members: Sequence[Any], k: int | None = None):
        if not members:
            raise ValueError(f"{self.family}: no members")
        self.members = list(members)
        self.k = int(k) if k is not None else len(self.members)

    @property
    def member_names(self) -> list[str]:
        return [str(m.family) for m in self.members]

    @property
    def features(self) -> tuple[str, ...]:
        names: dict[str, None] = {}
        for member in self.members:
            names.update(dict.fromkeys(getattr(member, "features", ())))
        return tuple(names)

    def fit(self, history: pd.DataFrame) -> EnsembleForecaster:
        """Fit every member on ``history``."""
        self.members = [member.fit(history) for member in self.members]
        self.fitted_ = True
        return self

    def predict(self, future: pd.DataFrame) -> pd.DataFrame:
        """The members' mean ``yhat``, ``yhat_lower`` and ``yhat_upper`` per row."""
        if not getattr(self, "fitted_", False):
            raise RuntimeError("EnsembleForecaster is not fitted")
        return mean_prediction([member.predict(future) for member in self.members])

    def to_json(self) -> str:
        if not getattr(self, "fitted_", False):
            raise RuntimeError("EnsembleForecaster is not fitted")
        return json.dumps(
            {
                "model_type": self.model_type,
                "format_version": FORMAT_VERSION,
                "k": self.k,
                "members": [member.to_json() for member in self.members],
            }
        )

    @classmethod
    def from_json(cls, text: str, config: ForecastingConfig | None = None) -> EnsembleForecaster:
        from mlcore.forecasting.families import load_model

        payload = json.loads(text)
        if payload.get("model_type") != cls.model_type:
            raise ValueError(f"not a {cls.model_type} model: {payload.get('model_type')!r}")
        obj = cls([load_model(member, config) for member in payload["members"]], payload.get("k"))
        obj.fitted_ = True
        return obj


def mean_prediction(predictions: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Row-wise mean of aligned ``ds, yhat, yhat_lower, yhat_upper`` frames."""
    out = predictions[0][["ds"]].copy()
    for column in ("yhat", "yhat_lower", "yhat_upper"):
        stacked = np.vstack([p[column].to_numpy(dtype=np.float64) for p in predictions])
        out[column] = stacked.mean(axis=0)
    return out.reset_index(drop=True)
