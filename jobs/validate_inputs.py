"""Validate the input tables for a run date: schema contract, row rules, keys, freshness, row counts.

    Reads:  the tables in validation.input_tables (default sales, stores, bank, rides)
    Writes: validation_results (partition run_date/job: one row per table and rule) and, for rows
            breaking a row rule, validation_quarantine. Exits 1 listing every batch-level problem
            (schema drift, duplicate keys, stale or shrunken input, row budget) of every table.

Examples:
    python jobs/validate_inputs.py --env local --run-date 2015-08-01
    python jobs/validate_inputs.py --run-date 2015-08-01 --set validation.input_tables=[sales]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("validate_inputs", argv)


if __name__ == "__main__":
    sys.exit(main())
