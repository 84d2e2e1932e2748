"""The nightly chain for one run date: ingest -> validate -> drift -> retrain what needs it
(promotion gates inside the training jobs) -> forecast and score.

    Steps:  pipeline.steps (default ingest_sales, ingest_bank, ingest_rides, validate_inputs,
            monitor_drift, train_forecasts, train_classifier, detect_anomalies,
            train_anomaly_model, make_forecasts, score_batch), each run as its own job.
    Writes: what the steps write, and one run_manifest row per step (plus one for the chain).
            Stops at the first failed step with its reason and exit 1; rerunning the same run date
            resumes after the steps that already succeeded. --dry-run prints the plan only.

Examples:
    python jobs/run_pipeline.py --env local --run-date 2015-08-01
    python jobs/run_pipeline.py --run-date 2015-08-01 --dry-run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("run_pipeline", argv)


if __name__ == "__main__":
    sys.exit(main())
