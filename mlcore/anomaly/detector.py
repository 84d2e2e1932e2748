"""Outlier detectors for rides: a fixed menu of sklearn estimators behind one scoring contract.

``anomaly_score`` is ``-score_samples`` (higher = more anomalous) and a ride is flagged when its
score exceeds the model's ``threshold`` (``-offset_``, i.e. exactly where the detector's own
``predict`` says -1). The gate metric compares scores with DBSCAN's noise labels on held-out
days: ROC AUC of the score against "DBSCAN called it noise".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def _isolation_forest(seed: int) -> Any:
    from sklearn.ensemble import IsolationForest

    return IsolationForest(random_state=seed, n_jobs=1)


def _local_outlier_factor(seed: int) -> Any:
    from sklearn.neighbors import LocalOutlierFactor

    return LocalOutlierFactor(novelty=True)


DETECTORS: dict[str, Callable[[int], Any]] = {
    "isolation_forest": _isolation_forest,
    "local_outlier_factor": _local_outlier_factor,
}


def build_detector(name: str, seed: int, params: Mapping[str, Any] | None = None) -> Any:
    """StandardScaler + detector (unknown detector or parameter names are errors)."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}")
    detector = DETECTORS[name](seed)
    if params:
        unknown = sorted(set(params) - set(detector.get_params()))
        if unknown:
            raise ValueError(f"unknown parameters {unknown} for {name}; it accepts {sorted(detector.get_params())}")
        detector.set_params(**params)
    return Pipeline([("scale", StandardScaler()), ("detector", detector)])


def threshold_of(model: Any) -> float:
    return float(-model.named_steps["detector"].offset_)


def anomaly_scores(model: Any, features: pd.DataFrame) -> np.ndarray:
    """Higher = more anomalous. ``features`` holds the model's feature columns (by name)."""
    return -model.score_samples(features.astype("float64"))


def agreement_with_dbscan(scores: np.ndarray, dbscan_noise: np.ndarray) -> float | None:
    """ROC AUC of the anomaly score against DBSCAN's noise label (None if one class only)."""
    from sklearn.metrics import roc_auc_score

    if dbscan_noise.all() or not dbscan_noise.any():
        return None
    return float(roc_auc_score(dbscan_noise.astype(int), scores))
