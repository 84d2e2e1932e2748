"""Train the ride anomaly detector (IsolationForest) on a reference window and gate it.

    Reads:  rides (the anomaly.reference_days days before --run-date; the last
            anomaly.holdout_days are held out and labelled by DBSCAN for the gate)
    Writes: MLflow run and model (skops, threshold, features); registers ride_anomaly_model
            (challenger; champion when its agreement with DBSCAN on the holdout is no worse than
            the champion's on the same holdout). --dry-run decides without moving aliases.

Examples:
    python jobs/train_anomaly_model.py --env local --run-date 2019-01-15
    python jobs/train_anomaly_model.py --set anomaly.detector_params.contamination=0.02
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("train_anomaly_model", argv)


if __name__ == "__main__":
    sys.exit(main())
