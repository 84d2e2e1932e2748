"""Ingest Rossmann-format daily store sales and store attributes into Delta.

    Reads:  sources.sales.train_path (train.csv format) and sources.sales.store_path (store.csv)
    Writes: sales, stores (+ sales_quarantine, stores_quarantine with a reason per bad row)

Bad rows are quarantined, never dropped; a batch whose bad-row share exceeds
ingest.bad_row_budget fails before any table is written. Re-running for the same run date is a
no-op (idempotent writes).

Examples:
    python jobs/ingest_sales.py --env local --run-date 2015-08-01
    python -m mlcore run ingest_sales --env local --run-date 2015-08-01 --set ingest.bad_row_budget=0.05
    ./spark-submit.sh ingest_sales --env emr --run-date 2015-08-01
    Databricks spark_python_task: python_file=jobs/ingest_sales.py,
        parameters=["--env", "databricks", "--run-date", "2015-08-01"]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("ingest_sales", argv)


if __name__ == "__main__":
    sys.exit(main())
