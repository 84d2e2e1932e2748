"""Score the bank classifier and the ride anomaly model concurrently in one Spark application.

    Runs score_classifier and score_anomalies as concurrent Spark jobs (fair-scheduler pools,
    score_batch.mode=parallel) or one after the other (sequential). Each output commits on its
    own; if one scorer fails the other's output is still committed and the exit code is 1.

Examples:
    python jobs/score_batch.py --env local --run-date 2019-01-15
    python jobs/score_batch.py --run-date 2019-01-15 --set score_batch.mode=sequential
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("score_batch", argv)


if __name__ == "__main__":
    sys.exit(main())
