"""Classifier logic on pandas: SMOTE only inside training folds, search equal to sklearn's
RandomizedSearchCV, threshold choice, feature contract, pickle-free model files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcore.classification.features import (
    FeatureError,
    FeatureSpec,
    check_spark_columns,
    feature_frame,
    feature_spec,
    label_vector,
)
from mlcore.classification.pipeline import build_pipeline, qualify_params, serving_pipeline
from mlcore.classification.search import (
    SearchSettings,
    best_f1_threshold,
    fold_splits,
    holdout_metrics,
    plan,
    sample_candidates,
    search_local,
)
from mlcore.io import model_files

SPEC = FeatureSpec(categorical=("job", "contact"), numeric=("age", "balance", "noise"), label="y", positive_label="yes")
SPACE = {"n_estimators": [5, 10, 20], "max_depth": [3, 5, None], "min_samples_leaf": [1, 3]}


def bank_like(rows: int = 600, seed: int = 0, signal: bool = True) -> pd.DataFrame:
    """Imbalanced (~12% positive) rows of the bank shape; with ``signal`` the label depends on them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "job": rng.choice(["admin.", "technician", "retired", "student"], rows),
            "contact": rng.choice(["cellular", "telephone", "unknown"], rows),
            "age": rng.integers(18, 90, rows),
            "balance": rng.normal(1500, 3000, rows).round(),
            "noise": rng.normal(size=rows),
        }
    )
    if signal:
        score = 0.04 * (frame["age"] - 50) + (frame["job"] == "retired") * 1.5 + (frame["contact"] == "cellular") * 1.0
        p = 1 / (1 + np.exp(-(score - 2.6)))
    else:
        p = np.full(rows, 0.12)
    frame["y"] = np.where(rng.random(rows) < p, "yes", "no")
    return frame


def settings(**kw) -> SearchSettings:
    return SearchSettings(spec=SPEC, estimator="random_forest", seed=7, **kw)


def test_smote_sees_only_training_fold_rows(monkeypatch):
    """Every SMOTE call gets exactly one fold's training rows: never validation rows, never all rows."""
    from imblearn.over_sampling import SMOTE

    frame = bank_like()
    X, y = feature_frame(frame, SPEC), label_vector(frame, SPEC)
    candidates, splits = plan(y, SPACE, n_iter=2, folds=3, seed=7)
    seen: list[int] = []
    original = SMOTE.fit_resample

    def spy(self, X_part, y_part, **kw):
        seen.append(len(X_part))
        return original(self, X_part, y_part, **kw)

    monkeypatch.setattr(SMOTE, "fit_resample", spy)
    result = search_local(X, y, settings(), candidates, splits)
    train_sizes = sorted(len(train) for train, _ in splits)
    assert len(seen) == len(candidates) * len(splits)
    assert sorted(set(seen)) == sorted(set(train_sizes)) and len(X) not in seen
    for fold in result.folds:
        assert len(fold.val_proba) == len(splits[fold.fold][1]), "validation rows are scored unresampled"


def test_smote_leak_would_inflate_scores_but_ours_does_not():
    """On pure-noise features, SMOTE before the split leaks (high AUC); SMOTE in folds does not."""
    from imblearn.over_sampling import SMOTE
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import cross_val_score

    frame = bank_like(rows=800, seed=3, signal=False)
    X, y = feature_frame(frame, SPEC), label_vector(frame, SPEC)
    candidates, splits = plan(y, {"n_estimators": [50]}, n_iter=1, folds=3, seed=7)
    ours = search_local(X, y, settings(), candidates, splits).table()["mean_roc_auc"].iloc[0]

    encoded = build_pipeline(SPEC, "random_forest", 7).named_steps["encode"].fit_transform(X)
    X_leaky, y_leaky = SMOTE(random_state=7).fit_resample(encoded, y)
    leaky = cross_val_score(
        RandomForestClassifier(n_estimators=50, random_state=7), X_leaky, y_leaky, cv=3, scoring="roc_auc"
    ).mean()
    assert ours < 0.65, f"in-fold SMOTE on noise should be near chance, got AUC {ours:.3f}"
    assert leaky > 0.8, f"the leaky comparison should look (falsely) good, got {leaky:.3f}"


def test_local_search_equals_sklearn_randomized_search():
    from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold

    frame = bank_like(rows=500, seed=1)
    X, y = feature_frame(frame, SPEC), label_vector(frame, SPEC)
    candidates, splits = plan(y, SPACE, n_iter=4, folds=3, seed=11)
    ours = search_local(X, y, settings(), candidates, splits).table().sort_values("candidate")

    pipeline = build_pipeline(SPEC, "random_forest", 7)
    reference = RandomizedSearchCV(
        pipeline,
        {f"model__{k}": v for k, v in SPACE.items()},
        n_iter=4,
        scoring="f1",
        cv=StratifiedKFold(3, shuffle=True, random_state=11),
        random_state=11,
    ).fit(X, y)
    assert [{k.removeprefix("model__"): v for k, v in p.items()} for p in reference.cv_results_["params"]] == candidates
    np.testing.assert_allclose(ours["mean_f1"].to_numpy(), reference.cv_results_["mean_test_score"], rtol=0, atol=1e-12)


def test_candidates_are_reproducible_and_ranges_are_sampled():
    from mlcore.config.models import SearchDistribution

    space = {"max_depth": [4, 8], "max_features": SearchDistribution("uniform", 0.2, 0.8)}
    first, again = sample_candidates(space, 5, seed=3), sample_candidates(space, 5, seed=3)
    assert first == again and len(first) == 5
    assert all(0.2 <= c["max_features"] <= 0.8 and c["max_depth"] in (4, 8) for c in first)
    assert sample_candidates(space, 5, seed=4) != first
    with pytest.raises(ValueError, match="low"):
        sample_candidates({"C": SearchDistribution("loguniform", 0.0, 1.0)}, 2, seed=0)


def test_unknown_search_parameter_is_rejected_by_name():
    pipeline = build_pipeline(SPEC, "random_forest", 0)
    with pytest.raises(ValueError, match=r"unknown parameters \['learning_rate'\]"):
        qualify_params(pipeline, {"learning_rate": 0.1, "max_depth": 3})
    assert qualify_params(pipeline, {"smote__k_neighbors": 3}) == {"smote__k_neighbors": 3}


def test_failed_candidate_is_recorded_not_raised():
    frame = bank_like(rows=300)
    X, y = feature_frame(frame, SPEC), label_vector(frame, SPEC)
    splits = fold_splits(y, 2, 0)
    result = search_local(X, y, settings(), [{"max_depth": 3}, {"max_depth": -5}], splits)
    table = result.table().set_index("candidate")
    assert np.isnan(table.loc[1, "mean_f1"]) and "max_depth" in table.loc[1, "error"]
    assert result.best_candidate == 0


def test_best_f1_threshold_and_holdout_metrics():
    y = np.array([0, 0, 0, 0, 1, 1, 0, 1])
    proba = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.65, 0.9])
    threshold, f1 = best_f1_threshold(y, proba)
    assert threshold == pytest.approx(0.4) and f1 == pytest.approx(2 * 0.75 * 1.0 / 1.75)
    metrics = holdout_metrics(y, proba, threshold)
    assert (metrics["tp"], metrics["fp"], metrics["fn"], metrics["tn"]) == (3, 1, 0, 4)
    assert metrics["precision"] == pytest.approx(0.75) and metrics["recall"] == 1.0
    assert metrics["roc_auc"] == pytest.approx(13 / 15)  # 13 of 15 positive-negative pairs ordered


def test_feature_spec_refuses_leaks_overlaps_and_label(make_config):
    config = make_config().classification
    spec = feature_spec(config)
    assert "duration" not in spec.columns and spec.label == "y"
    with pytest.raises(FeatureError, match="duration"):
        feature_spec(make_config("classification.numeric_columns=[age, duration]").classification)
    with pytest.raises(FeatureError, match="more than once"):
        feature_spec(make_config("classification.categorical_columns=[job, job]").classification)
    with pytest.raises(FeatureError, match="label column"):
        feature_spec(make_config("classification.categorical_columns=[job, y]").classification)


def test_input_contract_lists_every_problem():
    problems = check_spark_columns({"job": "int", "age": "string", "balance": "double", "noise": "double"}, SPEC)
    assert problems == [
        "missing columns ['contact']",
        "numeric feature 'age' has type string",
        "categorical feature 'job' has type int (expected string)",
    ]
    with pytest.raises(FeatureError, match="single class"):
        label_vector(bank_like(rows=20).assign(y="no"), SPEC)


def test_serving_pipeline_drops_smote_and_round_trips_through_skops():
    frame = bank_like(rows=400)
    X, y = feature_frame(frame, SPEC), label_vector(frame, SPEC)
    fitted = build_pipeline(SPEC, "random_forest", 0, {"n_estimators": 5, "n_jobs": 2}).fit(X, y)
    served = serving_pipeline(fitted)
    assert [name for name, _ in served.steps] == ["encode", "model"]
    assert type(served).__module__.startswith("sklearn") and served.named_steps["model"].n_jobs == 1
    restored = model_files.loads(model_files.dumps(served))
    np.testing.assert_array_equal(restored.predict_proba(X), served.predict_proba(X))
    unseen = X.head(3).assign(job="astronaut")  # unknown categories are ignored, not errors
    assert restored.predict_proba(unseen).shape == (3, 2)


@pytest.mark.parametrize("estimator", ["extra_trees", "gradient_boosting", "logistic_regression"])
def test_every_estimator_in_the_menu_stores_without_pickle(estimator):
    frame = bank_like(rows=300)
    X, y = feature_frame(frame, SPEC), label_vector(frame, SPEC)
    served = serving_pipeline(build_pipeline(SPEC, estimator, 0).fit(X, y))
    np.testing.assert_allclose(model_files.loads(model_files.dumps(served)).predict_proba(X), served.predict_proba(X))


def test_model_file_with_untrusted_types_is_refused():
    import skops.io
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    rogue = make_pipeline(FunctionTransformer(np.char.upper))  # a function reference: untrusted
    with pytest.raises(model_files.UnsafeModelError, match="untrusted types"):
        model_files.loads(skops.io.dumps(rogue))


def test_mlflow_model_dir_in_pickle_format_is_refused_unread(tmp_path):
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    serialization_format: cloudpickle\n"
    )
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04not read")
    with pytest.raises(model_files.UnsafeModelError, match="only loads skops"):
        model_files.read_mlflow_model_dir(tmp_path)
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: ../outside.skops\n    serialization_format: skops\n"
    )
    with pytest.raises(model_files.UnsafeModelError, match="outside"):
        model_files.read_mlflow_model_dir(tmp_path)
