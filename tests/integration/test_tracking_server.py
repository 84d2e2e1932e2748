"""The jobs against a real MLflow tracking server over HTTP, as on Databricks or EMR: `mlflow server`
with a PostgreSQL backend store and served artifacts (``scripts/tracking_server.sh``).

Runs, params, metrics, artifacts, registered versions and aliases land on the server; a rerun
for the same date adds no run and no version; the server's request count per job is printed and
does not grow with the number of stores; a server answering 5xx fails the job within the bound
with one line and nothing published.
"""

from __future__ import annotations

import datetime as dt
import http.server
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlcore.runner import run_job
from tests.conftest import CONF_DIR, REPO_ROOT
from tests.integration.test_anomaly_jobs import RUN_DATE as RIDES_RUN_DATE
from tests.integration.test_anomaly_jobs import ride_frame
from tests.integration.test_forecasting_jobs import rossmann_stores, write_sales

pytestmark = pytest.mark.slow
SCRIPT = REPO_ROOT / "scripts" / "tracking_server.sh"
SALES_RUN_DATE = dt.date(2015, 6, 14)
# One access-log line per request, as uvicorn writes it: "GET /api/2.0/... HTTP/1.1" 200
_REQUEST = re.compile(r'"[A-Z]+ /\S* HTTP/[0-9.]+" \d{3}')
_POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class TrackingServer:
    uri: str
    log: Path

    def requests(self) -> int:
        return len(_REQUEST.findall(self.log.read_text(errors="replace")))


@pytest.fixture(scope="module")
def tracking_server() -> Iterator[TrackingServer]:
    """`mlflow server` on PostgreSQL for this module; stopped (and its data removed) afterwards."""
    if not _POSTGRES_BIN and shutil.which("initdb") is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL must be installed in CI (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    home = Path(tempfile.mkdtemp(prefix="mlcore-tracking-"))
    home.chmod(0o755)  # as root, the cluster runs as the postgres user, who must reach it
    env = {
        **os.environ,
        "MLCORE_HOME": str(home),
        "MLCORE_TRACKING_PORT": str(_free_port()),
        "MLCORE_TRACKING_PG_PORT": str(_free_port()),
    }
    try:
        started = subprocess.run(
            [str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=180
        )
        assert started.returncode == 0, started.stderr
        yield TrackingServer(started.stdout.strip(), home / "tracking-server" / "server.log")
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def _args(server: str, run_date: dt.date, *extra: str) -> list[str]:
    return ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", run_date.isoformat(),
            "--set", f"mlflow.tracking_uri={server}", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def hundred_stores() -> pd.DataFrame:
    return rossmann_stores(100)


def _write_rides(spark, tables) -> None:
    from mlcore.ingest.schemas import RIDES_SCHEMA

    frame = ride_frame()[RIDES_SCHEMA.fieldNames()].astype(
        {"pickup_datetime": "datetime64[us]", "dropoff_datetime": "datetime64[us]"}
    )
    tables.write(spark.createDataFrame(frame, RIDES_SCHEMA), "rides", mode="overwrite")


def _run_counted(server: TrackingServer, counts: dict[str, int], job: str, args: list[str]) -> None:
    before = server.requests()
    assert run_job(job, args) == 0, job
    counts[job] = server.requests() - before


def test_jobs_land_runs_artifacts_and_versions_on_the_server_and_reruns_add_nothing(
    spark, tables, make_config, mlcore_home, tracking_server, hundred_stores, capsys
):
    uri = tracking_server.uri
    write_sales(spark, tables, hundred_stores)
    _write_rides(spark, tables)
    sales_args = _args(uri, SALES_RUN_DATE)
    batch_args = _args(uri, RIDES_RUN_DATE)
    counts: dict[str, int] = {}
    _run_counted(tracking_server, counts, "train_forecasts", sales_args)
    _run_counted(tracking_server, counts, "make_forecasts", sales_args)
    _run_counted(tracking_server, counts, "ingest_bank", batch_args)
    _run_counted(tracking_server, counts, "train_classifier", batch_args)
    _run_counted(tracking_server, counts, "train_anomaly_model", batch_args)
    _run_counted(tracking_server, counts, "score_batch", batch_args)
    with capsys.disabled():
        print("\ntracking-server requests per job:", counts)

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    jobs = [
        "train_forecasts",
        "make_forecasts",
        "train_classifier",
        "train_anomaly_model",
        "score_batch",
    ]
    runs = {}
    for job in jobs:
        found = client.search_runs([experiments[f"mlcore/{job}"]])
        assert len(found) == 1, (job, found)
        runs[job] = found[0]
        assert runs[job].info.status == "FINISHED"
        assert runs[job].data.params, job  # the resolved config
        assert runs[job].data.metrics.get("job_wall_seconds", 0) > 0, job
        assert runs[job].data.tags["mlcore.status"] == "finished"
        # Artifacts went through the server's proxy (mlflow-artifacts:/), not a local path.
        assert runs[job].info.artifact_uri.startswith("mlflow-artifacts:"), runs[
            job
        ].info.artifact_uri
        assert {a.path for a in client.list_artifacts(runs[job].info.run_id)} >= {"config"}, job
    assert runs["train_forecasts"].data.metrics["groups_trained"] == 100
    assert any(
        a.path.endswith(".png")
        for a in client.list_artifacts(runs["train_forecasts"].info.run_id, "plots")
    )
    for model in ("store_forecaster", "bank_classifier", "ride_anomaly_model"):
        assert [v.version for v in client.search_model_versions(f"name = '{model}'")] == ["1"], (
            model
        )
        assert client.get_registered_model(model).aliases.get("champion") == "1", model
    # The classifier's model files are downloadable from the server (the scorer loaded them).
    version = client.get_model_version("bank_classifier", "1")
    assert client.get_run(version.run_id).info.artifact_uri.startswith("mlflow-artifacts:")

    # Reruns for the same dates: no new run, no new version.
    for job, args in [("train_forecasts", sales_args), ("make_forecasts", sales_args),
                      ("train_classifier", batch_args), ("score_batch", batch_args)]:  # fmt: skip
        assert run_job(job, args) == 0, job
    for job in jobs:
        assert len(client.search_runs([experiments[f"mlcore/{job}"]])) == 1, job
    for model in ("store_forecaster", "bank_classifier", "ride_anomaly_model"):
        assert len(client.search_model_versions(f"name = '{model}'")) == 1, model

    # The server's load does not grow with the number of stores: 25 stores, in a lake, experiment
    # and registered model of their own (both runs start from nothing), cost as many requests.
    from mlcore.io import DeltaTables

    small_lake = f"storage.lake_root={mlcore_home / 'lake25'}"
    small_tables = DeltaTables(
        spark, make_config(small_lake), commit_metadata={"mlcore.job": "tests"}
    )
    write_sales(spark, small_tables, hundred_stores[hundred_stores["store"] <= 25])
    small = _args(uri, SALES_RUN_DATE, "--set", small_lake, "--set", "mlflow.experiment_root=mlcore25",
                  "--set", "forecasting.model_name=store_forecaster_25")  # fmt: skip
    before = tracking_server.requests()
    assert run_job("train_forecasts", small) == 0
    small_count = tracking_server.requests() - before
    with capsys.disabled():
        print(
            f"train_forecasts requests: 25 stores {small_count}, 100 stores {counts['train_forecasts']}"
        )
    assert counts["train_forecasts"] <= small_count, (counts["train_forecasts"], small_count)


# ----------------------------------------------------------------------------------------------
# A server that answers, but with errors
# ----------------------------------------------------------------------------------------------
class _Failing(http.server.BaseHTTPRequestHandler):
    status = 503

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # the request, unread
        body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "try later"}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def failing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_server_answering_5xx_fails_the_job_within_the_bound(
    spark, mlcore_home, failing_server, capsys
):
    args = _args(failing_server, RIDES_RUN_DATE, "--set", "mlflow.request_timeout_seconds=15")
    started = time.monotonic()
    assert run_job("ingest_bank", args) == 1
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "FAILED" in err and "unreachable or failing" in err and "Traceback" not in err
    assert elapsed < 20, f"took {elapsed:.0f} s (bound 15 s)"
    lake = mlcore_home / "lake"
    assert not lake.exists() or not any(lake.iterdir()), "nothing is published"


class _FlakyProxy(http.server.BaseHTTPRequestHandler):
    """Forwards the first ``healthy`` requests to the real server, then answers 503 for good."""

    upstream = ""
    healthy = 0
    served = 0

    def _answer(self) -> None:
        import urllib.error
        import urllib.request

        cls = type(self)
        cls.served += 1
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if cls.served > cls.healthy:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        request = urllib.request.Request(cls.upstream + self.path, data=body, method=self.command)
        for name in ("Content-Type", "Accept"):
            if self.headers.get(name):
                request.add_header(name, self.headers[name])
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, payload, kind = (
                    answer.status,
                    answer.read(),
                    answer.headers.get("Content-Type"),
                )
        except urllib.error.HTTPError as error:
            status, payload, kind = error.code, error.read(), error.headers.get("Content-Type")
        self.send_response(status)
        self.send_header("Content-Type", kind or "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


def test_a_server_that_fails_after_the_preflight_fails_the_job_with_one_line(
    spark, mlcore_home, tracking_server, capsys
):
    _FlakyProxy.upstream, _FlakyProxy.healthy, _FlakyProxy.served = tracking_server.uri, 1, 0
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        args = _args(url, RIDES_RUN_DATE, "--set", "mlflow.request_timeout_seconds=15",
                     "--set", "mlflow.experiment_root=flaky")  # fmt: skip
        started = time.monotonic()
        assert run_job("ingest_bank", args) == 1
        elapsed = time.monotonic() - started
    finally:
        proxy.shutdown()
    assert _FlakyProxy.served > 1, "the preflight passed and the job then met the failing server"
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "tracking server failed during the job" in failed[0], err
    assert "nothing was published" in failed[0] and "503" in failed[0], failed[0]
    assert "Traceback" not in err, err
    assert elapsed < 60, f"took {elapsed:.0f} s"
    assert not (mlcore_home / "lake" / "bank").exists(), "nothing is published"
