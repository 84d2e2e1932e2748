"""train_anomaly_model: an outlier detector (IsolationForest by default) on a reference window.

A run for date D trains on the ``anomaly.reference_days`` days before D minus the last
``anomaly.holdout_days``, which are held out for the gate: DBSCAN labels those days batch by batch
(as ``detect_anomalies`` would) and the gate metric ``dbscan_auc`` is the ROC AUC of the
detector's anomaly score against DBSCAN's anomaly flag (noise or micro-cluster). The model is logged as skops with its
feature list and flag threshold, registered as ``ride_anomaly_model`` (``challenger``) and
promoted to ``champion`` when its AUC is no worse than the champion's on the same holdout.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcore.anomaly.clustering import anomaly_flags, cluster_batch
from mlcore.anomaly.detector import (
    agreement_with_dbscan,
    anomaly_scores,
    build_detector,
    threshold_of,
)
from mlcore.anomaly.features import ROW_KEY
from mlcore.io import model_files
from mlcore.pipelines._models import (
    THRESHOLD_TAG,
    load_champion,
    replayed_candidate,
)
from mlcore.pipelines._rides import batch_keys, days_before, read_rides, split_usable
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary
from mlcore.pipelines.detect_anomalies import dbscan_settings
from mlcore.tracking.candidates import ModelCandidate, SklearnModel
from mlcore.tracking.registry import METRIC_TAG

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

METRIC = "dbscan_auc"


def load_window(ctx: JobContext) -> tuple[pd.DataFrame, list[Any], int]:
    """Usable rides of the reference window (deterministic sample), holdout days, quarantined count."""
    from pyspark.sql import functions as F

    ac = ctx.config.anomaly
    if ac.holdout_days < 1 or ac.reference_days <= ac.holdout_days:
        raise JobFailed(
            f"anomaly.reference_days ({ac.reference_days}) must exceed anomaly.holdout_days ({ac.holdout_days}) >= 1"
        )
    days = days_before(ctx.run_date, ac.reference_days)
    usable, quarantined = split_usable(ctx, read_rides(ctx, days))
    keys = batch_keys(ctx)
    usable = usable.select(ROW_KEY, *keys, *ac.features)
    total = usable.count()
    if total > ac.max_training_rows:
        # Hash-based sample: the same rides are chosen on every rerun, whatever the file order.
        share = ac.max_training_rows / total
        usable = usable.filter(
            F.pmod(F.xxhash64(ROW_KEY, F.lit(ac.seed)), F.lit(1_000_000)) < int(share * 1_000_000)
        )
    frame = usable.orderBy(*keys, ROW_KEY).toPandas()
    return frame, days[-ac.holdout_days :], quarantined.count()


def dbscan_noise(ctx: JobContext, holdout: pd.DataFrame) -> tuple[np.ndarray, int]:
    """DBSCAN's noise flag for every holdout ride, batch by batch; rides of unclustered batches are NaN."""
    settings = dbscan_settings(ctx)
    flags = np.full(len(holdout), np.nan)
    clustered = 0
    for _, batch in holdout.groupby(batch_keys(ctx), sort=True):
        batch = batch.sort_values(ROW_KEY)
        labels, _stats = cluster_batch(batch.reset_index(drop=True), settings)
        if labels is not None:
            flags[holdout.index.get_indexer(batch.index)] = anomaly_flags(
                labels, settings.min_cluster_share
            )
            clustered += 1
    return flags, clustered


def champion_on_holdout(
    champion: Any, holdout: pd.DataFrame, noise: np.ndarray
) -> tuple[float | None, str]:
    names = list(champion.info["features"])
    missing = [c for c in names if c not in holdout.columns]
    if missing:
        return (
            None,
            f"champion v{champion.version} needs features {missing}; its stored metric is used",
        )
    mask = ~np.isnan(noise)
    value = agreement_with_dbscan(
        anomaly_scores(champion.model, holdout.loc[mask, names]), noise[mask].astype(bool)
    )
    return value, f"champion v{champion.version} re-evaluated on this holdout: {METRIC} {value}"


def run(ctx: JobContext) -> JobSummary:
    ac = ctx.config.anomaly
    summary = JobSummary()
    replay = replayed_candidate(ctx, summary, ac.model_name, METRIC, ac.promotion_tolerance)
    if replay is not None:
        summary.candidates.append(replay)
        return summary
    names = list(ac.features)
    frame, holdout_days, quarantined = load_window(ctx)
    is_holdout = frame[ac.date_column].isin(holdout_days).to_numpy()
    train, holdout = frame[~is_holdout], frame[is_holdout].reset_index(drop=True)
    summary.add("rides (train / holdout)", f"{len(train):,} / {len(holdout):,}")
    summary.add("rides quarantined in window", quarantined, metric="rides_quarantined")
    summary.metrics.update(rows_train=float(len(train)), rows_holdout=float(len(holdout)))
    if len(train) < 10 * ac.min_samples or holdout.empty:
        raise JobFailed(
            f"too little usable data in the {ac.reference_days}-day window before {ctx.run_date}: "
            f"{len(train)} training and {len(holdout)} holdout rides"
        )

    try:
        model = build_detector(ac.detector, ac.seed, dict(ac.detector_params))
    except ValueError as exc:
        raise JobFailed(f"anomaly.detector: {exc}") from None
    started = time.perf_counter()
    model.fit(train[names].astype("float64"))
    summary.metrics["fit_seconds"] = time.perf_counter() - started
    threshold = threshold_of(model)

    noise, clustered_batches = dbscan_noise(ctx, holdout)
    mask = ~np.isnan(noise)
    scores = anomaly_scores(model, holdout[names])
    flagged = scores > threshold
    value = agreement_with_dbscan(scores[mask], noise[mask].astype(bool))
    summary.add("holdout batches clustered", clustered_batches)
    summary.add(
        "holdout flagged share", f"{flagged.mean():.4f} (DBSCAN anomalies {np.nanmean(noise):.4f})"
    )
    summary.metrics.update(
        holdout_flagged_share=float(flagged.mean()),
        holdout_dbscan_noise_share=float(np.nanmean(noise)),
    )
    if value is None:
        raise JobFailed(
            "the holdout has no DBSCAN noise (or only noise): the gate metric is undefined"
        )
    if mask.any():
        both = flagged[mask] & noise[mask].astype(bool)
        summary.metrics["holdout_flag_precision_vs_dbscan"] = float(
            both.sum() / max(flagged[mask].sum(), 1)
        )
        summary.metrics["holdout_flag_recall_vs_dbscan"] = float(
            both.sum() / max(noise[mask].sum(), 1)
        )
    summary.add(f"holdout {METRIC}", f"{value:.4f}", metric=None)
    summary.metrics[f"holdout_{METRIC}"] = value

    data = model_files.dumps(model)
    metadata = {
        "features": names,
        "threshold": threshold,
        "detector": ac.detector,
        "params": dict(ac.detector_params),
        "reference_days": [
            str(d) for d in (frame[ac.date_column].min(), frame[ac.date_column].max())
        ],
        "holdout_days": [str(holdout_days[0]), str(holdout_days[-1])],
        "training_rows": len(train),
        "holdout_metrics": {METRIC: value, "flagged_share": float(flagged.mean())},
        "input_table": ac.input_table,
        "input_version": ctx.tables.read_versions.get(ac.input_table),
        "run_date": ctx.run_date.isoformat(),
        "model_sha256": model_files.digest(data),
    }
    if not ctx.config.mlflow.enabled:
        summary.add("registry", "MLflow disabled: model not logged or registered")
        return summary
    champion, note = load_champion(ctx, ac.model_name)
    champion_value = None
    if champion is not None:
        champion_value, note = champion_on_holdout(champion, holdout, noise)
    example = holdout[names].head(5).astype("float64")
    tags: dict[str, str] = {
        METRIC_TAG.format(METRIC): f"{value:.6f}",
        THRESHOLD_TAG: f"{threshold:.6f}",
        "mlcore.detector": ac.detector,
        "mlcore.model_sha256": str(metadata["model_sha256"]),
    }
    logged = SklearnModel(model, example, model.predict(example), metadata, "predict")
    summary.candidates.append(
        ModelCandidate(
            ac.model_name, logged, METRIC, value, ac.promotion_tolerance,
            champion_value=champion_value, note=note, tags=tags,
        )
    )  # fmt: skip
    return summary
