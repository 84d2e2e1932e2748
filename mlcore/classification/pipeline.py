"""Model pipelines: encoding + SMOTE + estimator, built from a fixed menu of estimators.

The estimator is chosen by name from ``ESTIMATORS`` (never imported by a name taken from config).
SMOTE is a step of an imblearn ``Pipeline``, so during cross-validation it resamples only the
training folds; ``serving_pipeline`` drops it again, leaving a plain sklearn pipeline to store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mlcore.classification.features import FeatureSpec

ENCODE, SMOTE_STEP, MODEL = "encode", "smote", "model"


def _random_forest(seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(random_state=seed, n_jobs=1)


def _extra_trees(seed: int) -> Any:
    from sklearn.ensemble import ExtraTreesClassifier

    return ExtraTreesClassifier(random_state=seed, n_jobs=1)


def _gradient_boosting(seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed)


def _logistic_regression(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(random_state=seed, max_iter=1000)


ESTIMATORS: dict[str, Callable[[int], Any]] = {
    "random_forest": _random_forest,
    "extra_trees": _extra_trees,
    "gradient_boosting": _gradient_boosting,
    "logistic_regression": _logistic_regression,
}


def encoder(spec: FeatureSpec) -> Any:
    """One-hot categoricals (unknown categories ignored), imputed and scaled numerics.

    Scaling matters for SMOTE, which interpolates between k nearest neighbours.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = []
    if spec.categorical:
        parts.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                        ("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                list(spec.categorical),
            )
        )
    if spec.numeric:
        parts.append(
            (
                "numeric",
                Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
                list(spec.numeric),
            )
        )
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=True)


def build_pipeline(
    spec: FeatureSpec,
    estimator: str,
    seed: int,
    estimator_params: Mapping[str, Any] | None = None,
    smote: bool = True,
    smote_k_neighbors: int = 5,
) -> Any:
    """The training pipeline (imblearn ``Pipeline``); ``estimator_params`` are fixed params."""
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline

    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}")
    steps: list[tuple[str, Any]] = [(ENCODE, encoder(spec))]
    if smote:
        steps.append((SMOTE_STEP, SMOTE(k_neighbors=smote_k_neighbors, random_state=seed)))
    steps.append((MODEL, ESTIMATORS[estimator](seed)))
    pipeline = Pipeline(steps)
    if estimator_params:
        pipeline.set_params(**qualify_params(pipeline, estimator_params))
    return pipeline


def qualify_params(pipeline: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """Map search-space keys onto pipeline params: ``max_depth`` -> ``model__max_depth``;
    keys with a step prefix (``smote__k_neighbors``) pass through. Unknown keys are errors."""
    valid = pipeline.get_params(deep=True)
    qualified, unknown = {}, []
    for key, value in params.items():
        full = key if "__" in key else f"{MODEL}__{key}"
        if full not in valid:
            unknown.append(key)
        qualified[full] = value
    if unknown:
        model_params = sorted(k.split("__", 1)[1] for k in valid if k.startswith(f"{MODEL}__") and k.count("__") == 1)
        raise ValueError(f"unknown parameters {unknown} for this pipeline; the estimator accepts {model_params}")
    return qualified


def serving_pipeline(fitted: Any) -> Any:
    """The fitted pipeline without its sampler: a plain sklearn ``Pipeline`` for scoring.

    Samplers only act in ``fit``; dropping the step keeps imblearn out of the stored model.
    Tree ensembles are set to one thread: executors score in parallel already.
    """
    from sklearn.pipeline import Pipeline

    steps = [(name, step) for name, step in fitted.steps if name != SMOTE_STEP]
    model = steps[-1][1]
    if "n_jobs" in model.get_params():
        model.set_params(n_jobs=1)
    return Pipeline(steps)


def encoded_feature_names(pipeline: Any) -> list[str]:
    return [str(n) for n in pipeline.named_steps[ENCODE].get_feature_names_out()]
