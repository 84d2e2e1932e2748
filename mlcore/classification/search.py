"""Randomized hyper-parameter search whose candidate x fold fits can run anywhere.

The search is split into independent tasks (one candidate on one fold). ``evaluate_task`` is a
pure function of the data, the task and the settings, so running the tasks in this process
(``search_local``) or spread over Spark executors (``mlcore.classification.distributed``) gives
the same numbers. Candidates come from sklearn's ``ParameterSampler`` and folds from
``StratifiedKFold`` with the configured seed, exactly as ``RandomizedSearchCV`` would draw them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcore.classification.features import FeatureSpec
from mlcore.classification.pipeline import build_pipeline, qualify_params

if TYPE_CHECKING:
    import pandas as pd

SCORES = ("f1", "precision", "recall", "roc_auc", "average_precision")


@dataclass(frozen=True)
class SearchSettings:
    """Everything a task needs besides data: plain values, cheap to ship to executors."""

    spec: FeatureSpec
    estimator: str
    seed: int
    estimator_params: Mapping[str, Any] = field(default_factory=dict)
    smote: bool = True
    smote_k_neighbors: int = 5
    scoring: str = "f1"


@dataclass(frozen=True)
class FoldResult:
    candidate: int
    fold: int
    scores: dict[str, float]
    fit_seconds: float
    val_proba: np.ndarray
    error: str | None = None


@dataclass
class SearchResult:
    candidates: list[dict[str, Any]]
    splits: list[tuple[np.ndarray, np.ndarray]]
    folds: list[FoldResult]
    scoring: str

    def table(self) -> pd.DataFrame:
        """One row per candidate: params, mean/std of every score, fit seconds, rank."""
        import pandas as pd

        rows = []
        for index, params in enumerate(self.candidates):
            mine = [f for f in self.folds if f.candidate == index]
            row: dict[str, Any] = {"candidate": index, "params": json.dumps(_jsonable(params), sort_keys=True)}
            for name in SCORES:
                values = np.array([f.scores.get(name, math.nan) for f in mine], dtype=float)
                row[f"mean_{name}"] = float(values.mean()) if len(values) else math.nan
                row[f"std_{name}"] = float(values.std()) if len(values) else math.nan
            row["fit_seconds"] = float(sum(f.fit_seconds for f in mine))
            errors = [f.error for f in mine if f.error]
            row["error"] = errors[0] if errors else None
            rows.append(row)
        table = pd.DataFrame(rows)
        key = f"mean_{self.scoring}"
        table["rank"] = table[key].rank(ascending=False, method="min", na_option="bottom").astype(int)
        return table.sort_values(["rank", "candidate"]).reset_index(drop=True)

    @property
    def best_candidate(self) -> int:
        table = self.table()
        best = table.iloc[0]
        if math.isnan(best[f"mean_{self.scoring}"]):
            raise RuntimeError(f"every candidate failed; first error: {best['error']}")
        return int(best["candidate"])

    def out_of_fold_proba(self, candidate: int, n_rows: int) -> np.ndarray:
        """The candidate's validation-fold probabilities, placed back at their row positions."""
        oof = np.full(n_rows, np.nan)
        for result in self.folds:
            if result.candidate == candidate:
                oof[self.splits[result.fold][1]] = result.val_proba
        return oof


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}


def param_distributions(space: Mapping[str, Any]) -> dict[str, Any]:
    """Config search space -> sklearn distributions (lists stay lists; ranges become scipy)."""
    from scipy import stats

    out: dict[str, Any] = {}
    for name, value in space.items():
        if isinstance(value, list):
            if not value:
                raise ValueError(f"search space {name!r} is an empty list")
            out[name] = value
            continue
        low, high = value.low, value.high
        if not low < high:
            raise ValueError(f"search space {name!r}: low {low} must be below high {high}")
        if value.distribution == "randint":
            out[name] = stats.randint(int(low), int(high) + 1)
        elif value.distribution == "uniform":
            out[name] = stats.uniform(low, high - low)
        else:
            if low <= 0:
                raise ValueError(f"search space {name!r}: loguniform needs low > 0")
            out[name] = stats.loguniform(low, high)
    return out


def sample_candidates(space: Mapping[str, Any], n_iter: int, seed: int) -> list[dict[str, Any]]:
    """The same candidates ``RandomizedSearchCV(random_state=seed, n_iter=n_iter)`` would try."""
    from sklearn.model_selection import ParameterSampler

    if not space:
        return [{}]
    return [_jsonable(p) for p in ParameterSampler(param_distributions(space), n_iter, random_state=seed)]


def fold_splits(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(train, val) for train, val in splitter.split(np.zeros(len(y)), y)]


def validate_candidates(settings: SearchSettings, candidates: Sequence[Mapping[str, Any]]) -> None:
    """Fail before any fit when a search-space key is not a parameter of the pipeline."""
    pipeline = build_pipeline(
        settings.spec, settings.estimator, settings.seed, settings.estimator_params,
        settings.smote, settings.smote_k_neighbors,
    )
    for params in candidates:
        qualify_params(pipeline, params)


def fold_scores(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """sklearn scorer semantics: labels from ``argmax`` (p > 0.5), AUCs from probabilities."""
    from sklearn.metrics import (
        average_precision_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    predicted = (proba > 0.5).astype(int)
    both = len(np.unique(y_true)) == 2
    return {
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(y_true, proba)) if both else math.nan,
        "average_precision": float(average_precision_score(y_true, proba)) if both else math.nan,
    }


def evaluate_task(
    X: pd.DataFrame,
    y: np.ndarray,
    split: tuple[np.ndarray, np.ndarray],
    params: Mapping[str, Any],
    settings: SearchSettings,
    candidate: int,
    fold: int,
) -> FoldResult:
    """Fit one candidate on one fold's training rows (SMOTE inside) and score its validation rows."""
    train, val = split
    started = time.perf_counter()
    try:
        pipeline = build_pipeline(
            settings.spec, settings.estimator, settings.seed, settings.estimator_params,
            settings.smote, settings.smote_k_neighbors,
        )
        pipeline.set_params(**qualify_params(pipeline, params))
        pipeline.fit(X.iloc[train], y[train])
        proba = pipeline.predict_proba(X.iloc[val])[:, 1]
    except Exception as exc:  # noqa: BLE001 - a failed candidate is a result (sklearn's error_score=nan)
        return FoldResult(candidate, fold, dict.fromkeys(SCORES, math.nan), time.perf_counter() - started,
                          np.full(len(val), np.nan), f"{type(exc).__name__}: {str(exc)[:300]}")
    return FoldResult(candidate, fold, fold_scores(y[val], proba), time.perf_counter() - started, proba)


def plan(
    y: np.ndarray, space: Mapping[str, Any], n_iter: int, folds: int, seed: int
) -> tuple[list[dict[str, Any]], list[tuple[np.ndarray, np.ndarray]]]:
    return sample_candidates(space, n_iter, seed), fold_splits(y, folds, seed)


def search_local(
    X: pd.DataFrame,
    y: np.ndarray,
    settings: SearchSettings,
    candidates: list[dict[str, Any]],
    splits: list[tuple[np.ndarray, np.ndarray]],
) -> SearchResult:
    """Every task in this process, one after another (the reference for the Spark path)."""
    results = [
        evaluate_task(X, y, split, params, settings, c, f)
        for c, params in enumerate(candidates)
        for f, split in enumerate(splits)
    ]
    return SearchResult(candidates, splits, results, settings.scoring)


def best_f1_threshold(y_true: np.ndarray, proba: np.ndarray) -> tuple[float, float]:
    """The probability threshold with the highest F1 (and that F1) over the given predictions."""
    from sklearn.metrics import precision_recall_curve

    mask = ~np.isnan(proba)
    precision, recall, thresholds = precision_recall_curve(y_true[mask], proba[mask])
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.nanargmax(f1[:-1])) if len(thresholds) else 0
    return (float(thresholds[best]), float(f1[best])) if len(thresholds) else (0.5, 0.0)


def holdout_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """Metrics at the stored threshold (label = p >= threshold) plus threshold-free AUCs."""
    from sklearn.metrics import (
        average_precision_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    predicted = (proba >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, predicted, labels=[0, 1]).ravel()
    return {
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(y_true, proba)),
        "pr_auc": float(average_precision_score(y_true, proba)),
        "tn": float(tn),
        "fp": float(fp),
        "fn": float(fn),
        "tp": float(tp),
        "threshold": float(threshold),
    }


def permutation_importance_table(
    model: Any, X: pd.DataFrame, y: np.ndarray, seed: int, max_rows: int
) -> pd.DataFrame:
    """Permutation importance per input column (average precision drop), on at most ``max_rows``."""
    import pandas as pd
    from sklearn.inspection import permutation_importance

    if len(X) > max_rows:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(X), size=max_rows, replace=False))
        X, y = X.iloc[rows], y[rows]
    result = permutation_importance(model, X, y, scoring="average_precision", n_repeats=3, random_state=seed)
    return pd.DataFrame(
        {"feature": list(X.columns), "importance_mean": result.importances_mean, "importance_std": result.importances_std}
    ).sort_values("importance_mean", ascending=False, ignore_index=True)
