"""DBSCAN on one batch of rides (a day, optionally x zone): pure pandas/sklearn.

Features are standardised within the batch, so ``eps`` is in standard deviations. When ``eps``
is not configured it is chosen per batch by the k-distance heuristic: with ``k = min_samples``,
each ride's distance to its k-th nearest neighbour (itself included, as DBSCAN counts it) is its
core distance, and ``eps`` is the ``eps_quantile`` quantile of those distances, i.e. that share
of rides become core points. Label -1 (noise) is an anomaly, and so is every ride of a
micro-cluster holding less than ``min_cluster_share`` of the batch: a handful of similar odd rides
(ten 40-mile trips) is dense enough to form its own cluster, yet it is exactly what operations
want to see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

OK, SKIPPED, FAILED = "ok", "skipped", "failed"


@dataclass(frozen=True)
class DbscanSettings:
    features: tuple[str, ...]
    eps: float | None = None
    min_samples: int = 10
    eps_quantile: float = 0.95
    min_batch_rows: int = 30
    max_batch_rows: int = 200_000
    silhouette_rows: int = 2000
    min_cluster_share: float = 0.0
    seed: int = 0


def standardise(values: np.ndarray) -> np.ndarray:
    """Z-scores per column; a constant column becomes zeros instead of NaN."""
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    return (values - mean) / np.where(std > 0, std, 1.0)


def k_distance_eps(z: np.ndarray, min_samples: int, quantile: float) -> float:
    from sklearn.neighbors import NearestNeighbors

    k = min(min_samples, len(z))
    distances, _ = NearestNeighbors(n_neighbors=k).fit(z).kneighbors(z)
    eps = float(np.quantile(distances[:, -1], quantile))
    return eps if eps > 0 else 1e-6


def anomaly_flags(labels: np.ndarray, min_cluster_share: float) -> np.ndarray:
    """Noise, plus members of clusters smaller than ``min_cluster_share`` of the batch."""
    flags = labels < 0
    if min_cluster_share > 0 and len(labels):
        clusters, sizes = np.unique(labels[labels >= 0], return_counts=True)
        small = clusters[sizes < min_cluster_share * len(labels)]
        flags |= np.isin(labels, small)
    return flags


def cluster_batch(frame: pd.DataFrame, settings: DbscanSettings) -> tuple[np.ndarray | None, dict[str, Any]]:
    """(labels or None, batch stats). Never raises: a failure is a ``failed`` status with reason."""
    from sklearn.cluster import DBSCAN
    from sklearn.metrics import silhouette_score

    started = time.perf_counter()
    stats: dict[str, Any] = {
        "status": OK, "status_reason": None, "rows": len(frame), "clusters": 0, "noise": 0,
        "micro_cluster_rides": 0, "anomalies": 0, "anomaly_share": None, "silhouette": None, "eps": None, "eps_source": None, "seconds": 0.0,
    }  # fmt: skip
    if len(frame) < settings.min_batch_rows:
        stats.update(status=SKIPPED, status_reason=f"{len(frame)} rides < min_batch_rows {settings.min_batch_rows}")
        return None, stats
    if len(frame) > settings.max_batch_rows:
        stats.update(
            status=FAILED,
            status_reason=f"{len(frame)} rides > max_batch_rows {settings.max_batch_rows}: split batches with batch_keys",
        )
        return None, stats
    try:
        z = standardise(frame[list(settings.features)].to_numpy(dtype=np.float64))
        if settings.eps is None:
            eps, source = k_distance_eps(z, settings.min_samples, settings.eps_quantile), f"k-distance q{settings.eps_quantile:g}"
        else:
            eps, source = settings.eps, "config"
        labels = DBSCAN(eps=eps, min_samples=settings.min_samples).fit_predict(z)
        clustered = labels >= 0
        n_clusters = len(np.unique(labels[clustered]))
        silhouette = None
        if n_clusters >= 2:
            rows = np.flatnonzero(clustered)
            if len(rows) > settings.silhouette_rows:
                rows = np.sort(np.random.default_rng(settings.seed).choice(rows, settings.silhouette_rows, replace=False))
            silhouette = float(silhouette_score(z[rows], labels[rows]))
    except Exception as exc:  # noqa: BLE001 - one bad batch is a status row, not a crashed job
        stats.update(status=FAILED, status_reason=f"{type(exc).__name__}: {str(exc)[:300]}")
        stats["seconds"] = time.perf_counter() - started
        return None, stats
    noise = int((~clustered).sum())
    anomalies = int(anomaly_flags(labels, settings.min_cluster_share).sum())
    stats.update(
        clusters=n_clusters, noise=noise, micro_cluster_rides=anomalies - noise, anomalies=anomalies,
        anomaly_share=anomalies / len(frame), silhouette=silhouette,
        eps=float(eps), eps_source=source, seconds=time.perf_counter() - started,
    )
    return labels, stats
