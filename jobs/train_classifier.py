"""Train the propensity classifier: encoding + SMOTE + random forest, randomized search.

    Reads:  bank (classification.input_table)
    Writes: MLflow run (search results table, holdout metrics, ROC/PR/importance PNGs, the model
            as skops with signature, input example, threshold and feature spec); registers
            bank_classifier (challenger; champion when its holdout metric is no worse than the
            champion's on the same holdout). --dry-run decides without moving aliases.

The candidate x fold fits run on Spark executors (classification.search_backend=spark) with the
same results as a local search with the same seed. Re-running for the same run date registers
no new version.

Examples:
    python jobs/train_classifier.py --env local --run-date 2015-06-14
    python jobs/train_classifier.py --set classification.estimator=gradient_boosting --set classification.n_iter=20
    ./spark-submit.sh train_classifier --env emr --run-date 2015-06-14
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("train_classifier", argv)


if __name__ == "__main__":
    sys.exit(main())
