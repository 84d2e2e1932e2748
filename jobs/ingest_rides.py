"""Ingest NYC TLC yellow-taxi trip records into Delta, partitioned by pickup date.

    Reads:  sources.rides.path (TLC yellow trip CSV, snake_case header)
    Writes: rides (+ rides_quarantine with a reason per bad row)

Bad rows are quarantined, never dropped; a batch whose bad-row share exceeds
ingest.bad_row_budget fails before any table is written. Re-running for the same run date is a
no-op (idempotent writes).

Examples:
    python jobs/ingest_rides.py --env local --run-date 2021-01-01
    python -m mlcore run ingest_rides --env local --run-date 2021-01-01 --set ingest.bad_row_budget=0.05
    ./spark-submit.sh ingest_rides --env emr --run-date 2021-01-01
    Databricks spark_python_task: python_file=jobs/ingest_rides.py,
        parameters=["--env", "databricks", "--run-date", "2021-01-01"]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("ingest_rides", argv)


if __name__ == "__main__":
    sys.exit(main())
