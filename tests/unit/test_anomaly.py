"""Anomaly logic on pandas: DBSCAN flags planted outliers (the seed's simulated shape: 370 normal
rides plus three groups of 10 unusual ones), eps from the k-distance heuristic, batch statuses,
and the detector's flag threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcore.anomaly.clustering import (
    DbscanSettings,
    anomaly_flags,
    cluster_batch,
    k_distance_eps,
    standardise,
)
from mlcore.anomaly.detector import (
    agreement_with_dbscan,
    anomaly_scores,
    build_detector,
    threshold_of,
)

FEATURES = ("distance_miles", "duration_minutes", "speed_mph")


def simulated_rides(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """370 normal rides (uniform distance, normal speed) and three groups of 10 unusual ones:
    very long, very slow, very fast. Returns the rides and the planted-outlier mask."""
    rng = np.random.default_rng(seed)
    distance = [rng.uniform(1, 10, 370), rng.uniform(25, 40, 10), rng.uniform(2, 8, 10), rng.uniform(2, 8, 10)]
    speed = [rng.normal(30, 4, 370), rng.normal(30, 4, 10), rng.normal(4, 1, 10), rng.normal(85, 8, 10)]
    d, s = np.concatenate(distance), np.clip(np.concatenate(speed), 1, None)
    frame = pd.DataFrame({"distance_miles": d, "duration_minutes": 60 * d / s, "speed_mph": s})
    planted = np.r_[np.zeros(370, bool), np.ones(30, bool)]
    return frame, planted


def test_dbscan_flags_the_planted_outliers_and_clusters_the_normal_rides():
    frame, planted = simulated_rides()
    settings = DbscanSettings(features=FEATURES, min_samples=10, eps_quantile=0.95, min_cluster_share=0.05)
    labels, stats = cluster_batch(frame, settings)
    flags = anomaly_flags(labels, settings.min_cluster_share)
    assert stats["status"] == "ok" and stats["rows"] == 400 and stats["eps_source"] == "k-distance q0.95"
    assert flags[planted].sum() >= 28, f"only {flags[planted].sum()} of 30 planted outliers flagged"
    assert flags[~planted].mean() <= 0.03, f"{flags[~planted].mean():.1%} of normal rides flagged"
    assert stats["noise"] == (labels == -1).sum() and stats["anomalies"] == flags.sum()
    assert stats["micro_cluster_rides"] == flags.sum() - (labels == -1).sum()
    # The groups of 10 are dense: plain DBSCAN noise alone misses most of them.
    assert (labels[planted] == -1).sum() < flags[planted].sum()


def test_micro_clusters_are_anomalies_only_below_the_share():
    labels = np.array([0] * 90 + [1] * 6 + [2] * 3 + [-1])
    np.testing.assert_array_equal(np.flatnonzero(anomaly_flags(labels, 0.05)), np.arange(96, 100))
    np.testing.assert_array_equal(np.flatnonzero(anomaly_flags(labels, 0.0)), [99])


def test_k_distance_eps_makes_the_quantile_share_core_points():
    from sklearn.cluster import DBSCAN

    frame, _ = simulated_rides(seed=1)
    z = standardise(frame.to_numpy())
    eps = k_distance_eps(z, min_samples=10, quantile=0.9)
    model = DBSCAN(eps=eps, min_samples=10).fit(z)
    assert len(model.core_sample_indices_) / len(z) == pytest.approx(0.9, abs=0.01)


def test_configured_eps_is_used_and_constant_columns_do_not_break_scaling():
    frame, _ = simulated_rides()
    frame["constant"] = 5.0
    labels, stats = cluster_batch(frame, DbscanSettings(features=(*FEATURES, "constant"), eps=0.5, min_samples=5))
    assert stats["eps"] == 0.5 and stats["eps_source"] == "config" and labels is not None


def test_small_and_oversized_batches_get_status_rows_not_errors():
    frame, _ = simulated_rides()
    _, small = cluster_batch(frame.head(20), DbscanSettings(features=FEATURES, min_batch_rows=30))
    assert small["status"] == "skipped" and "20 rides < min_batch_rows 30" in small["status_reason"]
    _, big = cluster_batch(frame, DbscanSettings(features=FEATURES, max_batch_rows=100))
    assert big["status"] == "failed" and "batch_keys" in big["status_reason"]
    _, broken = cluster_batch(frame.assign(speed_mph=np.nan), DbscanSettings(features=FEATURES))
    assert broken["status"] == "failed" and broken["status_reason"].startswith("ValueError")


def test_detector_flag_threshold_matches_its_own_predict():
    frame, planted = simulated_rides()
    model = build_detector("isolation_forest", 0, {"n_estimators": 100, "contamination": 0.075}).fit(frame)
    scores = anomaly_scores(model, frame)
    flagged = scores > threshold_of(model)
    np.testing.assert_array_equal(flagged, model.predict(frame) == -1)
    assert flagged[planted].mean() >= 0.9 and agreement_with_dbscan(scores, planted) > 0.95
    assert agreement_with_dbscan(scores, np.zeros(len(scores), bool)) is None


def test_detector_menu_and_parameters_are_checked():
    with pytest.raises(ValueError, match="unknown detector"):
        build_detector("one_class_svm", 0)
    with pytest.raises(ValueError, match=r"unknown parameters \['n_trees'\]"):
        build_detector("isolation_forest", 0, {"n_trees": 10})
    frame, planted = simulated_rides()
    lof = build_detector("local_outlier_factor", 0, {"n_neighbors": 20}).fit(frame[~planted])
    scores = anomaly_scores(lof, frame)
    np.testing.assert_array_equal(scores > threshold_of(lof), lof.predict(frame) == -1)
