"""Score a Delta table with the champion classifier into bank_scores.

    Reads:  bank (classification.score_table); the registered model behind alias
            classification.score_alias (default champion) or classification.score_version
    Writes: bank_scores, partition run_date: row_key, probability, label (at the model's stored
            threshold), model_name, model_version, threshold, run_id, run_date, scored_at

Missing or mistyped input columns and a missing alias fail before anything is written. Re-running
for the same run date is a no-op; bump run.revision to re-score deliberately.

Examples:
    python jobs/score_classifier.py --env local --run-date 2015-06-14
    python jobs/score_classifier.py --set classification.score_version=3
    ./spark-submit.sh score_classifier --env emr --run-date 2015-06-14
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("score_classifier", argv)


if __name__ == "__main__":
    sys.exit(main())
