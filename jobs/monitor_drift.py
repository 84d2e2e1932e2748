"""Monitor drift: current data vs the reference each champion was trained on -> drift_metrics.

    Reads:  bank (at the classifier champion's training version and now), bank_scores, rides
            (the anomaly champion's reference days vs the run's batch days), sales, forecasts
    Writes: drift_metrics (partition run_date): PSI/KS per numeric feature, PSI/chi-square per
            categorical, prediction drift, per-store sales drift and realised forecast WAPE,
            each with its threshold and drifted flag; MLflow metrics, drift/drift_report.html
            and drift/drift_metrics.csv. Idempotent per run date.

Examples:
    python jobs/monitor_drift.py --env local --run-date 2015-08-01
    python jobs/monitor_drift.py --run-date 2019-02-01 --set drift.monitors=[ride_features,bank_features]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("monitor_drift", argv)


if __name__ == "__main__":
    sys.exit(main())
