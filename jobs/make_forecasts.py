"""Forecast --run-date .. --run-date + H - 1 per store with the registry's champion models.

    Reads:  forecast_models (the version the champion alias records), forecast_calendar and
            sales' calendar columns (future open/promo/holiday flags; defaults when absent)
    Writes: forecasts (yhat, yhat_lower, yhat_upper, model name and version, run id, run date)

Re-running for the same run date is a no-op.

Examples:
    python jobs/make_forecasts.py --env local --run-date 2015-06-14
    python -m mlcore run make_forecasts --run-date 2015-08-01
    ./spark-submit.sh make_forecasts --env emr --run-date 2015-08-01
    Databricks spark_python_task: python_file=jobs/make_forecasts.py,
        parameters=["--env", "databricks", "--run-date", "2015-08-01"]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("make_forecasts", argv)


if __name__ == "__main__":
    sys.exit(main())
