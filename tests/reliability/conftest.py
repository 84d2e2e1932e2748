"""Helpers shared by the reliability suite: small synthetic inputs, subprocess jobs, and checks
that read the Delta log and the MLflow store directly (never through the code under test)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient

from tests.conftest import CONF_DIR, REPO_ROOT

RUN_DATE = dt.date(2015, 6, 14)
ARGS = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", RUN_DATE.isoformat()]
# Cheap Prophet fits: the suite checks bookkeeping, not accuracy.
FAST_FORECASTING = [
    "--set", "forecasting.prophet.uncertainty_samples=0",
    "--set", "forecasting.prophet.yearly_seasonality=false",
    "--set", "forecasting.prophet.n_changepoints=5",
    "--set", "forecasting.plot_groups=0",
]  # fmt: skip
FORECAST_OUTPUTS = {
    # table -> natural key of one row (besides run_date, the partition)
    "forecast_models": ["store"],
    "forecast_metrics": ["store", "backtest_window", "model", "metric"],
    "forecast_backtest": ["store", "backtest_window", "model", "ds"],
}


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------
def sales_frame(stores: int, end: dt.date = RUN_DATE - dt.timedelta(days=1)) -> pd.DataFrame:
    """The bundled synthetic Rossmann generator, typed as the ``sales`` table."""
    from mlcore.config.models import SyntheticConfig
    from mlcore.ingest import synthetic
    from mlcore.ingest.schemas import SALES

    cfg = SyntheticConfig(stores=stores, start_date="2015-01-01", end_date=end.isoformat())
    frame, _ = synthetic.sales_frames(cfg)
    frame = frame.rename(columns=SALES.source_names)
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    frame["run_id"] = "fixture"
    frame["run_date"] = RUN_DATE
    return frame


def write_sales(spark, tables, stores: int) -> pd.DataFrame:
    from mlcore.ingest.schemas import SALES_SCHEMA

    frame = sales_frame(stores)
    ordered = frame[SALES_SCHEMA.fieldNames()]
    tables.write(spark.createDataFrame(ordered, SALES_SCHEMA), "sales", mode="overwrite")
    return frame


# ----------------------------------------------------------------------------------------------
# Reading the lake and the MLflow store directly
# ----------------------------------------------------------------------------------------------
def lake_path(home: Path, name: str) -> Path:
    return home / "lake" / name


def scan(
    path: Path | str, version: int | None = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """A table (version) through delta-rs's own scan (not our read path, not to_pandas)."""
    reader = DeltaTable(str(path), version=version).scan(
        columns=list(columns) if columns else None
    )
    table = pa.table(reader)
    fields = [
        pa.field(f.name, pa.string()) if pa.types.is_string_view(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields)).to_pandas()


def versions_of(path: Path | str) -> list[int]:
    return sorted(int(h["version"]) for h in DeltaTable(str(path)).history())


def assert_every_version_complete(
    path: Path | str, keys: Sequence[str], expected: dict, partition: str = "run_date"
) -> list[int]:
    """Each table version holds, per partition value, either nothing or exactly the expected
    set of group keys, each group complete: readers never see half of a run."""
    seen = []
    for version in versions_of(path):
        frame = scan(path, version)
        if frame.empty:
            continue
        assert not frame.duplicated([partition, *keys]).any(), f"{path} v{version}: duplicate keys"
        for value, part in frame.groupby(partition):
            want = expected[value]
            assert set(part[keys[0]]) == want, f"{path} v{version} {partition}={value}: partial"
        seen.append(version)
    return seen


def data_files(path: Path | str) -> set[str]:
    root = Path(path)
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}


def logged_files(path: Path | str, version: int | None = None) -> set[str]:
    actions = pa.table(DeltaTable(str(path), version=version).get_add_actions(flatten=True))
    return set(actions.column("path").to_pylist())


def ever_logged(path: Path | str) -> set[str]:
    """Data files referenced by any version (older ones stay until a VACUUM)."""
    return {f for version in versions_of(path) for f in logged_files(path, version)}


def registry(home: Path) -> MlflowClient:
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def job_runs(client: MlflowClient, job: str, run_date: dt.date = RUN_DATE) -> list:
    experiment = client.get_experiment_by_name(f"mlcore/{job}")
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id],
        f"tags.`mlcore.job` = '{job}' AND tags.`mlcore.run_date` = '{run_date.isoformat()}'",
    )


# ----------------------------------------------------------------------------------------------
# Jobs in a subprocess (python jobs/<job>.py, as a scheduler runs them)
# ----------------------------------------------------------------------------------------------
def job_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCORE_FAULT")}
    env.update(extra)
    return env


def start_job(job: str, args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start ``python jobs/<job>.py`` in its own process group (so a kill takes its JVM too)."""
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "jobs" / f"{job}.py"), *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def session_members(sid: int) -> list[int]:
    """Pids of the processes in session ``sid`` (the job's driver, its JVM, and PySpark's
    worker daemon, which moves itself into a process group of its own)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the job's whole process group and session (driver, JVM, Python workers): a lost
    node. Nothing of the job survives to finish a write after the kill."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in session_members(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_partial_stage(
    port: int, proc: subprocess.Popen, tasks: int, name: str, timeout: float = 300
) -> tuple[int, int]:
    """Poll the Spark UI's REST API until the active stage of ``tasks`` tasks named ``name...``
    has finished at least one task that read rows (a task that did real work, not an empty
    partition) while another one is still running. Returns (finished with rows, running)."""
    deadline = time.monotonic() + timeout
    base = f"http://127.0.0.1:{port}/api/v1/applications"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy

    def get(url: str):
        with opener.open(url, timeout=2) as response:
            return json.load(response)

    while time.monotonic() < deadline:
        assert proc.poll() is None, f"job exited early with {proc.returncode}"
        try:
            for app in get(base):
                for stage in get(f"{base}/{app['id']}/stages?status=active"):
                    if stage["numTasks"] != tasks or not stage["name"].startswith(name):
                        continue
                    listed = get(
                        f"{base}/{app['id']}/stages/{stage['stageId']}/{stage['attemptId']}"
                        f"/taskList?length={tasks * 4}"
                    )
                    worked = [
                        t for t in listed
                        if t["status"] == "SUCCESS"
                        and t.get("taskMetrics", {}).get("shuffleReadMetrics", {}).get("recordsRead", 0)
                    ]  # fmt: skip
                    running = [t for t in listed if t["status"] == "RUNNING"]
                    if worked and running:
                        return len(worked), len(running)
        except (OSError, ValueError, KeyError):
            pass  # UI not up yet, or the stage just ended
        time.sleep(0.2)
    raise AssertionError(f"no stage '{name}...' of {tasks} tasks was seen part-way in {timeout} s")


@pytest.fixture
def subprocess_log(tmp_path: Path):
    """Log files of subprocess jobs; their tails are printed when a test fails."""
    logs: list[Path] = []

    def _new(name: str) -> Path:
        path = tmp_path / f"{name}.log"
        logs.append(path)
        return path

    yield _new
    for path in logs:
        if path.exists():
            sys.stderr.write(f"---- {path.name} (tail) ----\n")
            sys.stderr.write(path.read_text(errors="replace")[-3000:] + "\n")
