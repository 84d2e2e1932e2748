"""train_classifier: encoding + SMOTE + estimator, randomized search, holdout gate, registry.

Reads the input table (``bank``), splits a stratified holdout, runs the randomized search with its
candidate x fold fits on Spark executors (or locally), picks the decision threshold that maximises
F1 over the best candidate's out-of-fold predictions, fits that candidate on the whole training
part on the driver and evaluates it on the holdout. The model is logged to MLflow as skops (no
pickle) with signature, input example, threshold and feature spec, registered as
``bank_classifier`` (alias ``challenger``) and promoted to ``champion`` when its holdout metric is
no worse than the champion's measured on the same holdout. A rerun for the same run date finds
the version its run already registered and only re-applies the (idempotent) gate.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlcore.classification.features import (
    FeatureError,
    FeatureSpec,
    check_spark_columns,
    feature_frame,
    feature_spec,
    label_vector,
)
from mlcore.classification.pipeline import (
    build_pipeline,
    encoded_feature_names,
    qualify_params,
    serving_pipeline,
)
from mlcore.classification.search import (
    SearchResult,
    SearchSettings,
    best_f1_threshold,
    holdout_metrics,
    permutation_importance_table,
    plan,
    search_local,
    validate_candidates,
)
from mlcore.io import model_files
from mlcore.pipelines._models import (
    THRESHOLD_TAG,
    RegisteredModel,
    load_champion,
    replayed_candidate,
)
from mlcore.pipelines._progress import StageReporter
from mlcore.pipelines._validation import check_inputs
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary
from mlcore.tracking.candidates import ModelCandidate, SklearnModel
from mlcore.tracking.registry import METRIC_TAG

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def load_training_frame(
    ctx: JobContext, spec: FeatureSpec, extra_columns: Sequence[str] = ()
) -> pd.DataFrame:
    """Feature and label columns (plus ``extra_columns`` the table has) in a deterministic order."""
    from pyspark.sql import functions as F

    cc = ctx.config.classification
    frame = check_inputs(ctx, {cc.input_table: ctx.tables.read(cc.input_table)})[cc.input_table]
    fields = {f.name: f.dataType.simpleString() for f in frame.schema}
    problems = check_spark_columns(fields, spec)
    if spec.label not in fields:
        problems.append(f"label column {spec.label!r} missing")
    if problems:
        raise JobFailed(f"{cc.input_table} does not fit the feature spec: " + "; ".join(problems))
    wanted = [*spec.columns, spec.label]
    columns = wanted + [c for c in dict.fromkeys(extra_columns) if c in fields and c not in wanted]
    frame = frame.select(*[F.col(f"`{c}`") for c in columns])
    if cc.max_training_rows is not None:
        total = frame.count()
        if total > cc.max_training_rows:
            share = cc.max_training_rows / total
            labels = [r[0] for r in frame.select(spec.label).distinct().collect()]
            frame = frame.sampleBy(spec.label, dict.fromkeys(labels, share), seed=cc.seed)
    # Delta file order is not a contract: sort so the same table version gives the same search.
    ordered = frame.orderBy(
        F.xxhash64(*[F.col(f"`{c}`") for c in wanted]), *[F.col(f"`{c}`") for c in wanted]
    )
    return ordered.toPandas()


def run_search(
    ctx: JobContext, X: pd.DataFrame, y: np.ndarray, settings: SearchSettings
) -> SearchResult:
    cc = ctx.config.classification
    space = cc.search_spaces.get(cc.estimator, {})
    try:
        candidates, splits = plan(y, space, cc.n_iter, cc.cv_folds, cc.seed)
        validate_candidates(settings, candidates)
    except ValueError as exc:
        raise JobFailed(f"classification search space for {cc.estimator}: {exc}") from None
    if cc.search_backend == "spark":
        from mlcore.classification.distributed import search_on_spark

        fits = len(candidates) * len(splits)
        with StageReporter(ctx.spark, "search", fits, "fits"):
            return search_on_spark(ctx.spark, X, y, settings, candidates, splits)
    with StageReporter(None, "search (in process)", len(candidates) * len(splits), "fits"):
        return search_local(X, y, settings, candidates, splits)


def champion_on_holdout(
    champion: RegisteredModel, holdout: pd.DataFrame, y: np.ndarray, metric: str
) -> tuple[float | None, str]:
    """The champion's metric on this run's holdout rows, at its own stored threshold."""
    spec = FeatureSpec.from_dict(champion.info["features"])
    missing = [c for c in spec.columns if c not in holdout.columns]
    if missing:
        return (
            None,
            f"champion v{champion.version} needs columns {missing} the input lacks; its stored metric is used",
        )
    proba = champion.model.predict_proba(feature_frame(holdout, spec))[:, 1]
    value = holdout_metrics(y, proba, float(champion.info["threshold"]))[metric]
    return value, f"champion v{champion.version} re-evaluated on this holdout: {metric} {value:.4f}"


def _artifacts(
    ctx: JobContext,
    search: SearchResult,
    metrics: dict[str, float],
    importance: pd.DataFrame,
    y_holdout: np.ndarray,
    proba: np.ndarray,
) -> None:
    from mlcore.classification.plots import curves_png, importance_png

    ctx.artifacts["search/search_results.csv"] = search.table().to_csv(index=False)
    ctx.artifacts["evaluation/holdout_metrics.json"] = json.dumps(metrics, indent=2, sort_keys=True)
    ctx.artifacts["evaluation/confusion_matrix.csv"] = (
        "actual,predicted_0,predicted_1\n"
        f"0,{int(metrics['tn'])},{int(metrics['fp'])}\n1,{int(metrics['fn'])},{int(metrics['tp'])}\n"
    )
    ctx.artifacts["evaluation/feature_importance.csv"] = importance.to_csv(index=False)
    folder = Path(tempfile.mkdtemp(prefix="mlcore_classifier_plots_"))
    for path in [
        *curves_png(y_holdout, proba, metrics["threshold"], folder),
        importance_png(importance, folder),
    ]:
        ctx.artifact_files[f"plots/{path.name}"] = str(path)


def run(ctx: JobContext) -> JobSummary:
    from sklearn.model_selection import train_test_split

    cc = ctx.config.classification
    summary = JobSummary()
    replay = replayed_candidate(
        ctx, summary, cc.model_name, cc.promotion_metric, cc.promotion_tolerance
    )
    if replay is not None:
        summary.candidates.append(replay)
        return summary
    try:
        spec = feature_spec(cc)
    except FeatureError as exc:
        raise JobFailed(f"classification config: {exc}") from None
    if not 0 < cc.holdout_fraction < 1:
        raise JobFailed(
            f"classification.holdout_fraction must be in (0, 1), got {cc.holdout_fraction}"
        )

    champion, champion_note = load_champion(ctx, cc.model_name)
    champion_columns = FeatureSpec.from_dict(champion.info["features"]).columns if champion else ()
    frame = load_training_frame(ctx, spec, champion_columns)
    try:
        y_all = label_vector(frame, spec)
    except FeatureError as exc:
        raise JobFailed(f"{cc.input_table}: {exc}") from None
    X_all = feature_frame(frame, spec)
    minority = int(min(y_all.sum(), len(y_all) - y_all.sum()))
    if minority < 2 * cc.cv_folds:
        raise JobFailed(
            f"only {minority} rows of the minority class: too few for {cc.cv_folds}-fold search"
        )
    train_rows, holdout_rows = train_test_split(
        np.arange(len(y_all)), test_size=cc.holdout_fraction, stratify=y_all, random_state=cc.seed
    )
    X_train, X_holdout = X_all.iloc[train_rows], X_all.iloc[holdout_rows]
    y_train, y_holdout = y_all[train_rows], y_all[holdout_rows]
    summary.add("rows (train / holdout)", f"{len(X_train):,} / {len(X_holdout):,}")
    summary.add("positive share", f"{y_all.mean():.4f}")
    summary.metrics.update(rows_train=float(len(X_train)), rows_holdout=float(len(X_holdout)))

    settings = SearchSettings(
        spec=spec,
        estimator=cc.estimator,
        seed=cc.seed,
        estimator_params=dict(cc.estimator_params),
        smote=cc.smote,
        smote_k_neighbors=cc.smote_k_neighbors,
        scoring=cc.scoring,
    )
    started = time.perf_counter()
    search = run_search(ctx, X_train.reset_index(drop=True), y_train, settings)
    search_seconds = time.perf_counter() - started
    table = search.table()
    try:
        best = search.best_candidate
    except RuntimeError as exc:
        raise JobFailed(f"randomized search: {exc}") from None
    best_row = table[table["candidate"] == best].iloc[0]
    failed = int(table["error"].notna().sum())
    summary.add(
        "search",
        f"{len(search.candidates)} candidates x {cc.cv_folds} folds on {cc.search_backend} in {search_seconds:.1f} s"
        + (f" ({failed} candidates failed)" if failed else ""),
    )
    summary.add("best params", best_row["params"])
    summary.add(
        f"best CV {cc.scoring}",
        f"{best_row[f'mean_{cc.scoring}']:.4f} ± {best_row[f'std_{cc.scoring}']:.4f}",
    )
    summary.metrics.update(
        search_seconds=search_seconds,
        search_candidates=float(len(search.candidates)),
        search_failed_candidates=float(failed),
        search_fit_seconds=float(table["fit_seconds"].sum()),
        **{
            f"cv_{name}": float(best_row[f"mean_{name}"])
            for name in ("f1", "precision", "recall", "roc_auc", "average_precision")
        },
    )

    oof = search.out_of_fold_proba(best, len(y_train))
    threshold, oof_f1 = best_f1_threshold(y_train, oof)
    summary.add("threshold (max out-of-fold F1)", f"{threshold:.4f} (F1 {oof_f1:.4f})")

    started = time.perf_counter()
    pipeline = build_pipeline(
        spec, cc.estimator, cc.seed, dict(cc.estimator_params), cc.smote, cc.smote_k_neighbors
    )
    pipeline.set_params(**qualify_params(pipeline, search.candidates[best]))
    if "n_jobs" in pipeline.named_steps["model"].get_params():
        pipeline.set_params(model__n_jobs=cc.final_fit_n_jobs)
    with StageReporter(None, "final fit", 1, "model"):
        pipeline.fit(X_train, y_train)
    model = serving_pipeline(pipeline)
    fit_seconds = time.perf_counter() - started
    proba = model.predict_proba(X_holdout)[:, 1]
    metrics = holdout_metrics(y_holdout, proba, threshold)
    summary.metrics["final_fit_seconds"] = fit_seconds
    summary.metrics.update({f"holdout_{k}": v for k, v in metrics.items()})
    summary.add(
        "holdout",
        f"F1 {metrics['f1']:.4f}  precision {metrics['precision']:.4f}  recall {metrics['recall']:.4f}  "
        f"ROC AUC {metrics['roc_auc']:.4f}  PR AUC {metrics['pr_auc']:.4f}",
    )
    summary.add(
        "confusion (tn fp fn tp)", " ".join(str(int(metrics[k])) for k in ("tn", "fp", "fn", "tp"))
    )

    importance = permutation_importance_table(
        model, X_holdout, y_holdout, cc.seed, cc.importance_rows
    )
    _artifacts(ctx, search, metrics, importance, y_holdout, proba)

    data = model_files.dumps(model)
    metadata = {
        "features": spec.as_dict(),
        "threshold": threshold,
        "estimator": cc.estimator,
        "params": json.loads(best_row["params"]),
        "encoded_features": encoded_feature_names(model),
        "holdout_metrics": metrics,
        "input_table": cc.input_table,
        "input_version": ctx.tables.read_versions.get(cc.input_table),
        "run_date": ctx.run_date.isoformat(),
        "model_sha256": model_files.digest(data),
        "config": asdict(cc),
    }
    if not ctx.config.mlflow.enabled:
        summary.add("registry", "MLflow disabled: model not logged or registered")
        return summary

    value = metrics[cc.promotion_metric]
    champion_value, note = None, champion_note
    if champion is not None:
        champion_value, note = champion_on_holdout(
            champion, frame.iloc[holdout_rows], y_holdout, cc.promotion_metric
        )
    example = X_holdout.head(5)
    tags = {
        METRIC_TAG.format(cc.promotion_metric): f"{value:.6f}",
        THRESHOLD_TAG: f"{threshold:.6f}",
        "mlcore.estimator": cc.estimator,
        "mlcore.model_sha256": metadata["model_sha256"],
    }
    logged = SklearnModel(model, example, model.predict_proba(example), metadata, "predict_proba")
    summary.candidates.append(
        ModelCandidate(
            cc.model_name, logged, cc.promotion_metric, value, cc.promotion_tolerance,
            champion_value=champion_value, note=note, tags=tags,
        )
    )  # fmt: skip
    return summary
