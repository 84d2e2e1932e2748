"""Train one forecasting model per store (Prophet, with a seasonal-naive baseline and fallback).

    Reads:  sales (rows strictly before --run-date)
    Writes: forecast_models (one row per group: status, champion, model JSON, fingerprint),
            forecast_metrics (long format, per backtest window and model), forecast_backtest;
            MLflow run with aggregates and artifacts; registers store_forecaster (challenger,
            champion when no worse than the current champion).

Every group gets one status row (ok / fallback / skipped / failed); above
forecasting.failure_budget failed groups nothing is published and the exit code is 1.
Re-running for the same run date adds no rows, table versions or registry versions.

Examples:
    python jobs/train_forecasts.py --env local --run-date 2015-06-14 --set forecasting.limit_groups=50
    python -m mlcore run train_forecasts --run-date 2015-06-14 --set forecasting.only_changed=true
    ./spark-submit.sh train_forecasts --env emr --run-date 2015-06-14
    Databricks spark_python_task: python_file=jobs/train_forecasts.py,
        parameters=["--env", "databricks", "--run-date", "2015-06-14"]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("train_forecasts", argv)


if __name__ == "__main__":
    sys.exit(main())
