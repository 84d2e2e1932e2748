"""Score the run's rides with the champion anomaly model into ride_anomaly_scores.

    Reads:  rides (the anomaly.batch_days days before --run-date); ride_anomaly_model@champion
    Writes: ride_anomaly_scores (ride key, features, anomaly_score, is_anomaly, model name and
            version, threshold, run id, run date, scored_at), ride_anomaly_scores_quarantine.
            Idempotent per run date.

Examples:
    python jobs/score_anomalies.py --env local --run-date 2019-01-15
    python jobs/score_anomalies.py --set anomaly.score_version=2
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("score_anomalies", argv)


if __name__ == "__main__":
    sys.exit(main())
