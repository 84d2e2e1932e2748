"""Task retries: the first attempt of some per-group (pandas UDF) tasks fails, Spark retries them
(the test session's master is ``local[2,2]``: up to 2 attempts per task; plain ``local[N]`` never
retries), and the job's outputs are identical to those of a clean run.

The injection wraps ``train_group`` from the test (no hook in the forecasting code): the UDF
closure captures the module global when Spark pickles it, so the wrapper runs on the executors.
The write side (a Delta writer task failing on its first attempt) is covered by
``tests/unit/test_delta_io.py::test_retried_task_commits_once_and_leaves_only_committed_files``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mlcore.runner import run_job
from tests.conftest import CONF_DIR
from tests.reliability.conftest import (
    FAST_FORECASTING,
    FORECAST_OUTPUTS,
    RUN_DATE,
    lake_path,
    scan,
    write_sales,
)

pytestmark = pytest.mark.reliability
STORES = 3
VOLATILE = [
    "run_id",
    "run_date",
    "created_at",
    "trained_run_date",
    "fit_seconds",
    "backtest_seconds",
]


def args_for(day: dt.date) -> list[str]:
    return [
        "--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", day.isoformat(),
        *FAST_FORECASTING, "--set", f"forecasting.group_partitions={STORES}",
    ]  # fmt: skip


def outputs_of(home: Path, day: dt.date) -> dict:
    out = {}
    for name, keys in FORECAST_OUTPUTS.items():
        frame = scan(lake_path(home, name))
        frame = frame[frame["run_date"] == day].drop(columns=[c for c in VOLATILE if c in frame])
        out[name] = frame.sort_values(keys).reset_index(drop=True)
    return out


def test_first_attempt_failures_are_retried_to_identical_outputs(
    spark, tables, mlcore_home, monkeypatch, tmp_path
):
    import mlcore.forecasting.distributed as distributed

    write_sales(spark, tables, STORES)  # history ends the day before RUN_DATE
    markers = tmp_path / "injected"
    markers.mkdir()
    real_train_group = distributed.train_group

    def flaky_train_group(pdf, key_values, *args, **kwargs):
        from pyspark import TaskContext

        context = TaskContext.get()
        if key_values["store"] in (1, 3) and context.attemptNumber() == 0:
            (markers / f"store{key_values['store']}-stage{context.stageId()}").touch()
            raise RuntimeError(f"injected executor failure for store {key_values['store']}")
        return real_train_group(pdf, key_values, *args, **kwargs)

    monkeypatch.setattr(distributed, "train_group", flaky_train_group)
    assert run_job("train_forecasts", args_for(RUN_DATE)) == 0
    injected = sorted(p.name.split("-")[0] for p in markers.iterdir())
    assert set(injected) == {"store1", "store3"}, "both injected failures fired (and were retried)"

    monkeypatch.setattr(distributed, "train_group", real_train_group)
    clean_day = RUN_DATE + dt.timedelta(days=1)  # same history (it ends before both run dates)
    assert run_job("train_forecasts", args_for(clean_day)) == 0

    retried, clean = outputs_of(mlcore_home, RUN_DATE), outputs_of(mlcore_home, clean_day)
    assert len(retried["forecast_models"]) == STORES
    assert set(retried["forecast_models"]["status"]) <= {"ok", "fallback"}
    for name in FORECAST_OUTPUTS:
        assert len(retried[name]) > 0
        assert retried[name].equals(clean[name]), f"{name} differs from the clean run"
