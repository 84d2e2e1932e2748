#!/usr/bin/env python
"""Quality report: the seed's bank classifier vs the platform's pipeline on a 20% holdout.

Data: the real UCI bank-full.csv (45,211 rows, label y), read with pandas in file order, split
with ``train_test_split(test_size=0.2, stratify=y, random_state=42)``: the same call as
train_classifier's holdout, but applied to the CSV order (the job applies it to rows sorted
deterministically from the Delta table), so the holdout rows differ from the job's.

(a) seed: 8 features [job, marital, education, contact, housing, loan, default, day], all
    one-hot encoded (OneHotEncoder(handle_unknown='ignore')), SMOTE(random_state=42) applied once
    to the whole (encoded) training part before fitting, RandomForestClassifier(random_state=42)
    with default parameters, label = predict() (p > 0.5). The seed's 100-iteration randomized
    search over 200-2000 trees is not rerun (hours of CPU here); defaults stand in for it.
(b) platform: mlcore.classification exactly as train_classifier.run does it, in process and
    without MLflow: feature spec from the local config, randomized search (SMOTE inside the
    training folds), threshold maximising F1 on the best candidate's out-of-fold probabilities,
    final fit on the whole training part, serving pipeline, holdout metrics at that threshold.

    .venv/bin/python scripts/compare_classifier_seed.py                     # 10 candidates x 3 folds
    .venv/bin/python scripts/compare_classifier_seed.py --n-iter 2 --backend spark
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlcore.classification.features import feature_frame, feature_spec, label_vector  # noqa: E402
from mlcore.classification.pipeline import build_pipeline, qualify_params, serving_pipeline  # noqa: E402
from mlcore.classification.search import (  # noqa: E402
    SearchSettings,
    best_f1_threshold,
    holdout_metrics,
    plan,
    search_local,
    validate_candidates,
)
from mlcore.config.loader import load_config  # noqa: E402

SEED_FEATURES = ["job", "marital", "education", "contact", "housing", "loan", "default", "day"]
HOLDOUT = 0.2
SPLIT_SEED = 42


def seed_model(train: pd.DataFrame, y_train: np.ndarray, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) on ``test`` from the seed's recipe."""
    from imblearn.over_sampling import SMOTE
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import OneHotEncoder

    encoder = OneHotEncoder(handle_unknown="ignore")
    X_train = encoder.fit_transform(train[SEED_FEATURES].astype(str))
    X_res, y_res = SMOTE(random_state=SPLIT_SEED).fit_resample(X_train, y_train)
    # n_jobs only spreads tree building over cores; the fitted forest is the same as n_jobs=None.
    model = RandomForestClassifier(random_state=SPLIT_SEED, n_jobs=-1).fit(X_res, y_res)
    X_test = encoder.transform(test[SEED_FEATURES].astype(str))
    return model.predict(X_test), model.predict_proba(X_test)[:, 1]


def metrics_from_labels(y_true: np.ndarray, labels: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import (
        average_precision_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    return {
        "f1": float(f1_score(y_true, labels, zero_division=0)),
        "precision": float(precision_score(y_true, labels, zero_division=0)),
        "recall": float(recall_score(y_true, labels, zero_division=0)),
        "roc_auc": float(roc_auc_score(y_true, proba)),
        "pr_auc": float(average_precision_score(y_true, proba)),
    }


def platform_model(
    config, X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame, n_iter: int, folds: int, backend: str
) -> tuple[np.ndarray, float, dict[str, str]]:
    """(holdout probabilities, threshold, notes): train_classifier.run's steps, without MLflow."""
    cc = config.classification
    spec = feature_spec(cc)
    settings = SearchSettings(
        spec=spec, estimator=cc.estimator, seed=cc.seed, estimator_params=dict(cc.estimator_params),
        smote=cc.smote, smote_k_neighbors=cc.smote_k_neighbors, scoring=cc.scoring,
    )
    candidates, splits = plan(y_train, cc.search_spaces.get(cc.estimator, {}), n_iter, folds, cc.seed)
    validate_candidates(settings, candidates)
    started = time.perf_counter()
    if backend == "spark":
        from mlcore.classification.distributed import search_on_spark
        from mlcore.spark import get_spark

        spark = get_spark(config.spark, "compare_classifier_seed")
        search = search_on_spark(spark, X_train, y_train, settings, candidates, splits)
    else:
        search = search_local(X_train, y_train, settings, candidates, splits)
    search_seconds = time.perf_counter() - started
    table = search.table()
    best = search.best_candidate
    best_row = table[table["candidate"] == best].iloc[0]
    oof = search.out_of_fold_proba(best, len(y_train))
    threshold, oof_f1 = best_f1_threshold(y_train, oof)

    pipeline = build_pipeline(spec, cc.estimator, cc.seed, dict(cc.estimator_params), cc.smote, cc.smote_k_neighbors)
    pipeline.set_params(**qualify_params(pipeline, search.candidates[best]))
    if "n_jobs" in pipeline.named_steps["model"].get_params():
        pipeline.set_params(model__n_jobs=cc.final_fit_n_jobs)
    pipeline.fit(X_train, y_train)
    model = serving_pipeline(pipeline)
    notes = {
        "features": f"{len(spec.categorical)} categorical {list(spec.categorical)} + {len(spec.numeric)} numeric {list(spec.numeric)}",
        "search": f"{len(candidates)} candidates x {folds} folds on {backend} in {search_seconds:.1f} s",
        "best params": best_row["params"],
        f"best CV {cc.scoring}": f"{best_row[f'mean_{cc.scoring}']:.4f} ± {best_row[f'std_{cc.scoring}']:.4f}",
        "threshold": f"{threshold:.4f} (out-of-fold F1 {oof_f1:.4f})",
    }
    return model.predict_proba(X_test)[:, 1], threshold, notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-iter", type=int, default=10, help="candidates of the platform's search")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--backend", choices=["local", "spark"], default="local")
    parser.add_argument("--csv", help="bank-full.csv(.gz) (default: sources.bank.path of the local env)")
    args = parser.parse_args()
    for name in ("py4j",):
        logging.getLogger(name).setLevel(logging.ERROR)

    from sklearn.model_selection import train_test_split

    config = load_config("local", conf_dir=ROOT / "conf")
    path = Path(args.csv or config.sources.bank.path)
    frame = pd.read_csv(path, sep=";")
    spec = feature_spec(config.classification)
    y = label_vector(frame, spec)
    train_rows, test_rows = train_test_split(
        np.arange(len(frame)), test_size=HOLDOUT, stratify=y, random_state=SPLIT_SEED
    )
    train, test = frame.iloc[train_rows].reset_index(drop=True), frame.iloc[test_rows].reset_index(drop=True)
    y_train, y_test = y[train_rows], y[test_rows]
    print(f"data: {path} ({len(frame):,} rows, positive share {y.mean():.4f})")
    print(f"holdout: train_test_split(test_size={HOLDOUT}, stratify=y, random_state={SPLIT_SEED}) on the CSV "
          f"row order -> {len(train):,} train / {len(test):,} holdout rows ({int(y_test.sum())} positive); "
          "train_classifier splits rows sorted from the Delta table, so its holdout rows differ")
    print(f"cores: {os.cpu_count()}")

    started = time.perf_counter()
    seed_labels, seed_proba = seed_model(train, y_train, test)
    seed_seconds = time.perf_counter() - started
    seed = metrics_from_labels(y_test, seed_labels, seed_proba)

    started = time.perf_counter()
    proba, threshold, notes = platform_model(
        config, feature_frame(train, spec), y_train, feature_frame(test, spec), args.n_iter, args.folds, args.backend
    )
    platform_seconds = time.perf_counter() - started
    platform = holdout_metrics(y_test, proba, threshold)
    at_half = metrics_from_labels(y_test, (proba > 0.5).astype(int), proba)

    print()
    print(f"(a) seed: {len(SEED_FEATURES)} one-hot features {SEED_FEATURES}, SMOTE on the whole training part, "
          f"RandomForest defaults (100 trees), threshold 0.5; {seed_seconds:.1f} s")
    print("    (the seed's 100-iteration search over 200-2000 trees is not rerun: too slow here)")
    print(f"(b) platform: {notes.pop('search')}; {platform_seconds:.1f} s in all")
    for key, value in notes.items():
        print(f"    {key}: {value}")
    print()
    header = f"{'model':<44} {'F1':>7} {'precision':>9} {'recall':>7} {'ROC AUC':>8} {'PR AUC':>7}"
    print(header)
    print("-" * len(header))
    rows = [
        ("(a) seed (threshold 0.5)", seed),
        (f"(b) platform (threshold {threshold:.4f})", platform),
        ("    platform model at threshold 0.5", at_half),
    ]
    for name, m in rows:
        print(f"{name:<44} {m['f1']:7.4f} {m['precision']:9.4f} {m['recall']:7.4f} {m['roc_auc']:8.4f} {m['pr_auc']:7.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
