"""Cluster each day's rides with DBSCAN; rides outside the clusters are anomalies.

    Reads:  rides (the anomaly.batch_days days before --run-date; more days = a backfill)
    Writes: ride_anomalies (ride key, cluster, anomaly flag, features), ride_anomaly_batches (one
            status row per batch: clusters, noise, silhouette, eps), ride_anomalies_quarantine
            (zero distance, non-positive or huge duration, implausible speed: rule + reason);
            MLflow run with counts and a PNG of one batch's clusters. Idempotent per run date.

Examples:
    python jobs/detect_anomalies.py --env local --run-date 2019-01-15
    python jobs/detect_anomalies.py --run-date 2019-02-01 --set anomaly.batch_days=31   # backfill January
    python jobs/detect_anomalies.py --set anomaly.batch_keys=[pickup_location_id] --set anomaly.min_batch_rows=20
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("detect_anomalies", argv)


if __name__ == "__main__":
    sys.exit(main())
