"""The jobs on a real multi-process Spark standalone cluster (issue 7).

``scripts/local_cluster.sh`` starts a master and two workers (separate JVMs, one core each) on
127.0.0.1 under a temporary MLCORE_HOME; ``./spark-submit.sh --master spark://...`` then runs
``train_forecasts``, ``train_classifier`` and ``score_classifier`` in client mode on tables
ingested once (4 synthetic stores, the 800-row synthetic bank file). The same three jobs also run
in local mode (the in-process ``local[2,2]`` session) on a copy of the same tables, and:

- every cluster job is a FINISHED application in the master's JSON, and its executors ran tasks,
  Python ones included, inside the workers: executor logs under each worker's work dir
  (``<work>/<app id>/<executor id>/stderr``) show finished tasks and PythonRunner timings. None
  of that exists in local mode, where the driver JVM runs every task itself.
- the output tables equal the local run's, row for row, ignoring only run ids, timestamps and
  timings (floats within a tight relative tolerance).

The cluster is always stopped in teardown. The module skips, with the reason, only when the
cluster cannot start for environmental reasons (no Java, ports taken, no memory for the JVMs).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient

from mlcore.runner import run_job
from tests.conftest import CONF_DIR, REPO_ROOT

JAVA_MISSING = shutil.which("java") is None and not os.environ.get("JAVA_HOME")
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    # Checked before any fixture: the session-wide local Spark needs Java as well.
    pytest.mark.skipif(
        JAVA_MISSING, reason="java not found: the Spark standalone cluster needs Java 17"
    ),
]

CLUSTER_SCRIPT = str(REPO_ROOT / "scripts" / "local_cluster.sh")
SUBMIT_SCRIPT = str(REPO_ROOT / "spark-submit.sh")
RUN_DATE = "2015-06-14"
STORES = 4
JOB_ARGS = ["--env", "test", "--run-date", RUN_DATE]
INGEST_ARGS = [*JOB_ARGS, "--conf-dir", str(CONF_DIR), "--set", f"synthetic.stores={STORES}"]
CLUSTER_JOBS = ("train_forecasts", "train_classifier", "score_classifier")
# Submitted again with native Delta (./spark-submit.sh --with-delta: the cached Delta jars go to
# the executors with --jars), in a home of their own: one training and one scoring job.
NATIVE_JOBS = ("train_classifier", "score_classifier")
NATIVE_ARGS = [*JOB_ARGS, "--set", "storage.delta_engine=spark"]
# Reasons a cluster cannot start that say nothing about this code: skip, not fail.
ENVIRONMENTAL = re.compile(
    r"java not found|is in use|Address already in use|Cannot assign requested address"
    r"|Could not reserve enough space|Cannot allocate memory|insufficient memory",
    re.IGNORECASE,
)
# Row keys per compared table. Columns that legitimately differ between two runs are left out:
# run_id, timings (*_seconds) and wall-clock timestamps (*_at: created_at, scored_at, ...).
TABLE_KEYS = {
    "forecast_models": ["store"],
    "forecast_metrics": ["store", "backtest_window", "model", "metric"],
    "forecast_backtest": ["store", "backtest_window", "model", "ds"],
    "bank_scores": ["row_key"],
}
RTOL = 1e-9


@dataclass(frozen=True)
class Cluster:
    url: str
    home: Path
    env: dict[str, str]
    json_url: str

    def state(self) -> dict:
        with urllib.request.urlopen(self.json_url, timeout=10) as response:
            return json.load(response)


@dataclass(frozen=True)
class Runs:
    cluster: Cluster
    local_home: Path
    submitted: dict[str, subprocess.CompletedProcess]
    native_home: Path


def free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1 (all held open while picking, so never the same)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def cluster_logs(home: Path) -> str:
    logs = sorted((home / "cluster").glob("*.log"))
    return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}" for log in logs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("cluster_home")
    master_port, webui = free_ports(2)
    env = {
        **os.environ,
        "MLCORE_HOME": str(home),
        "PYTHON": sys.executable,
        "MLCORE_CLUSTER_MASTER_PORT": str(master_port),
        "MLCORE_CLUSTER_WEBUI_PORT": str(webui),
    }
    for name in ("MLCORE_ENV", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "SPARK_HOME"):
        env.pop(name, None)
    try:
        started = subprocess.run(
            [CLUSTER_SCRIPT, "start"], env=env, capture_output=True, text=True, timeout=240
        )
        if started.returncode != 0:
            output = f"{started.stdout}\n{started.stderr}\n{cluster_logs(home)}"
            if ENVIRONMENTAL.search(output):
                pytest.skip(f"cannot start a local Spark cluster here: {output.strip()[-800:]}")
            pytest.fail(
                f"local_cluster.sh start failed (exit {started.returncode}):\n{output[-6000:]}"
            )
        url = started.stdout.strip().splitlines()[-1]
        assert url == f"spark://127.0.0.1:{master_port}", started.stdout
        yield Cluster(url, home, env, f"http://127.0.0.1:{webui}/json/")
    finally:
        stopped = subprocess.run(
            [CLUSTER_SCRIPT, "stop"], env=env, capture_output=True, text=True, timeout=120
        )
        assert stopped.returncode == 0, stopped.stderr
        status = subprocess.run([CLUSTER_SCRIPT, "status"], env=env, capture_output=True, text=True)
        assert status.returncode == 3 and "running" not in status.stdout, status.stdout


@pytest.fixture(scope="module")
def runs(cluster: Cluster, spark, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Ingest once, then the same jobs on the cluster (spark-submit) and in local mode."""
    local_home = tmp_path_factory.mktemp("local_home")
    seconds: dict[str, float] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLCORE_HOME", str(local_home))
        for name in ("MLCORE_ENV", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            patch.delenv(name, raising=False)
        started = time.monotonic()
        assert run_job("ingest_sales", INGEST_ARGS) == 0
        assert run_job("ingest_bank", INGEST_ARGS) == 0
        seconds["local ingest"] = time.monotonic() - started
        shutil.copytree(local_home / "lake", cluster.home / "lake")

        submitted = {}
        # Client mode from the checkout, as a user runs it (executors never see this cwd).
        for job in CLUSTER_JOBS:
            started = time.monotonic()
            done = subprocess.run(
                [SUBMIT_SCRIPT, "--master", cluster.url, job, *JOB_ARGS],
                env=cluster.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            assert done.returncode == 0, (
                f"{job} on the cluster:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
            )
            submitted[job] = done
            seconds[f"cluster {job}"] = time.monotonic() - started

        native_home = tmp_path_factory.mktemp("native_home")
        shutil.copytree(local_home / "lake", native_home / "lake")
        for job in NATIVE_JOBS:
            started = time.monotonic()
            done = subprocess.run(
                [SUBMIT_SCRIPT, "--master", cluster.url, "--with-delta", job, *NATIVE_ARGS],
                env={**cluster.env, "MLCORE_HOME": str(native_home)},
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            assert done.returncode == 0, (
                f"{job} on the cluster, native Delta:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
            )
            assert "engine=spark" in done.stdout, done.stdout[-2000:]
            submitted[f"native {job}"] = done
            seconds[f"cluster native {job}"] = time.monotonic() - started

        for job in CLUSTER_JOBS:
            started = time.monotonic()
            assert run_job(job, [*JOB_ARGS, "--conf-dir", str(CONF_DIR)]) == 0
            seconds[f"local {job}"] = time.monotonic() - started
    print("seconds:", ", ".join(f"{name} {value:.0f}" for name, value in seconds.items()))
    return Runs(cluster, local_home, submitted, native_home)


def executor_logs(home: Path, app_id: str) -> dict[str, list[Path]]:
    """Executor stderr files of one application, per worker."""
    return {
        worker.name: sorted((worker / "work" / app_id).glob("*/stderr"))
        for worker in sorted((home / "cluster").glob("worker-*"))
        if worker.is_dir()
    }


def test_jobs_ran_as_cluster_apps_with_executors_in_the_workers(runs: Runs):
    state = runs.cluster.state()
    assert state["status"] == "ALIVE" and state["aliveworkers"] == 2
    apps: dict[str, list[dict]] = {}
    for app in sorted(state["completedapps"], key=lambda app: app["starttime"]):
        apps.setdefault(app["name"], []).append(app)
    workers_with_python_tasks: set[str] = set()
    for key, done in runs.submitted.items():
        job = key.removeprefix("native ")
        assert f"== {job} run_date={RUN_DATE} env=test" in done.stdout
        submitted = apps.get(f"mlcore-{job}", [])
        # The delta-rs submission came first, the native one (if any) second.
        app = submitted[-1 if key.startswith("native ") else 0] if submitted else None
        assert app is not None, f"{job} is not an application of the master: {sorted(apps)}"
        assert app["state"] == "FINISHED" and app["cores"] == 2, app
        # One executor per worker (1 core each), launched by that worker for this application.
        logs = executor_logs(runs.cluster.home, app["id"])
        assert set(logs) == {"worker-1", "worker-2"} and all(logs.values()), logs
        finished = 0
        for worker, paths in logs.items():
            text = "".join(path.read_text(errors="replace") for path in paths)
            assert f"--app-id {app['id']}" in text.replace('"', ""), f"{worker}: {paths}"
            finished += text.count("Finished task")
            if re.search(r"PythonRunner: Times: total = \d+", text):
                workers_with_python_tasks.add(worker)
        assert finished > 0, f"{job}: no task finished in the workers' executors"
    assert workers_with_python_tasks == {"worker-1", "worker-2"}, (
        "Python tasks (pandas UDFs, the Delta writer) ran in both workers' executors"
    )


def volatile(column: str) -> bool:
    return column == "run_id" or column.endswith(("_seconds", "_at"))


def comparable(home: Path, table: str) -> pd.DataFrame:
    frame = DeltaTable(str(home / "lake" / table)).to_pandas()
    frame = frame.drop(columns=[c for c in frame.columns if volatile(c)])
    return frame.sort_values(TABLE_KEYS[table], ignore_index=True)


def assert_values_equal(left: object, right: object, where: str) -> None:
    """Recursive equality; floats within RTOL (NaN equals NaN); arrays and structs element-wise."""
    if hasattr(left, "tolist") and not isinstance(left, (str, bytes)):
        left = left.tolist()
    if hasattr(right, "tolist") and not isinstance(right, (str, bytes)):
        right = right.tolist()
    if isinstance(left, float) and isinstance(right, float):
        assert (math.isnan(left) and math.isnan(right)) or math.isclose(
            left, right, rel_tol=RTOL, abs_tol=1e-12
        ), f"{where}: {left!r} != {right!r}"
    elif isinstance(left, dict) and isinstance(right, dict):
        assert left.keys() == right.keys(), where
        for key in left:
            assert_values_equal(left[key], right[key], f"{where}.{key}")
    elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        assert len(left) == len(right), f"{where}: {len(left)} != {len(right)} items"
        for index, (a, b) in enumerate(zip(left, right)):
            assert_values_equal(a, b, f"{where}[{index}]")
    else:
        assert left == right or (pd.isna(left) is True and pd.isna(right) is True), (
            f"{where}: {left!r} != {right!r}"
        )


def assert_tables_equal(runs: Runs, table: str, home: Path | None = None) -> None:
    on_cluster = comparable(home or runs.cluster.home, table)
    local = comparable(runs.local_home, table)
    assert list(on_cluster.columns) == list(local.columns), table
    assert len(on_cluster) == len(local) > 0, table
    for column in local.columns:
        for index, (a, b) in enumerate(zip(on_cluster[column], local[column])):
            assert_values_equal(a, b, f"{table}.{column}[row {index}]")


def registry(home: Path) -> MlflowClient:
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion(home: Path, model: str) -> tuple[str, dict[str, str], dict[str, float]]:
    """(version, version tags, run metrics without timings) of a registered champion."""
    client = registry(home)
    version = client.get_model_version_by_alias(model, "champion")
    metrics = client.get_run(version.run_id).data.metrics
    return version.version, version.tags, {k: v for k, v in metrics.items() if not volatile(k)}


@pytest.mark.parametrize("table", ["forecast_models", "forecast_metrics", "forecast_backtest"])
def test_forecasting_outputs_equal_the_local_run(runs: Runs, table: str):
    assert_tables_equal(runs, table)
    if table == "forecast_models":
        models = comparable(runs.cluster.home, table)
        assert sorted(models["store"]) == list(range(1, STORES + 1))
        assert (models["status"] == "ok").all(), models[["store", "status", "status_reason"]]
        on_cluster, local = (
            champion(h, "store_forecaster") for h in (runs.cluster.home, runs.local_home)
        )
        assert on_cluster[0] == local[0]
        assert on_cluster[1]["mlcore.metric.wape"] == local[1]["mlcore.metric.wape"]


def test_classifier_model_and_scores_equal_the_local_run(runs: Runs):
    assert_tables_equal(runs, "bank_scores")
    scores = comparable(runs.cluster.home, "bank_scores")
    assert scores["row_key"].is_unique and len(scores) == 800
    on_cluster, local = (
        champion(h, "bank_classifier") for h in (runs.cluster.home, runs.local_home)
    )
    assert on_cluster[0] == local[0]
    assert on_cluster[1]["mlcore.threshold"] == local[1]["mlcore.threshold"]
    assert_values_equal(on_cluster[2], local[2], "bank_classifier run metrics")


def test_native_delta_on_the_cluster_equals_the_delta_rs_run(runs: Runs):
    """train_classifier and score_classifier submitted with --with-delta run native Delta in the
    cluster's executors: the scores and the champion equal the local delta-rs run's."""
    assert_tables_equal(runs, "bank_scores", home=runs.native_home)
    on_cluster, local = (
        champion(h, "bank_classifier") for h in (runs.native_home, runs.local_home)
    )
    assert on_cluster[0] == local[0]
    assert on_cluster[1]["mlcore.threshold"] == local[1]["mlcore.threshold"]
    assert_values_equal(on_cluster[2], local[2], "bank_classifier run metrics (native)")
    history = DeltaTable(str(runs.native_home / "lake" / "bank_scores")).history(1)[0]
    assert history["operation"] == "WRITE" and "Apache-Spark" in history.get("engineInfo", ""), history
