"""The nightly chain over Spark Connect, as on Databricks serverless and standard-access clusters:
the job process is a Connect client (``SPARK_REMOTE``) with no SparkContext or JVM of its own,
against a local Spark Connect server from the installed pyspark (``scripts/connect_server.sh``).
Every output table equals the classic run's, the same champions are registered, and
``score_batch``'s two scorers still overlap without fair-scheduler pools.

The delta-rs engine runs over Connect (its Python data source is registered from the client).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcore.runner import run_job
from tests.conftest import REPO_ROOT
from tests.integration.test_pipeline_chain import FULL_CHAIN, assert_same_chain_outputs

pytestmark = pytest.mark.slow
SCRIPT = REPO_ROOT / "scripts" / "connect_server.sh"
CHAIN = [*FULL_CHAIN, "--set", "storage.delta_engine=deltars"]


def _connect_client_missing() -> str | None:
    try:
        import grpc  # noqa: F401
        import zstandard  # noqa: F401
    except ImportError as exc:
        return f"Spark Connect client dependencies missing ({exc.name}): pip install -e '.[dev]'"
    return None


@pytest.fixture(scope="module")
def connect_server() -> Iterator[str]:
    missing = _connect_client_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    home = Path(tempfile.mkdtemp(prefix="mlcore-connect-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MLCORE_HOME": str(home), "MLCORE_CONNECT_PORT": str(port)}
    try:
        started = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True,
                                 timeout=240)  # fmt: skip
        assert started.returncode == 0, started.stderr + (home / "connect-server" / "server.log").read_text()[-3000:]
        yield started.stdout.strip()
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def test_the_chain_over_spark_connect_equals_the_classic_run(
    spark, connect_server, tmp_path, monkeypatch, capsys
):
    homes = {"classic": tmp_path / "classic", "connect": tmp_path / "connect"}
    for home in homes.values():
        home.mkdir()
    seconds = {}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mlcore", "run", "run_pipeline", *CHAIN],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "MLCORE_HOME": str(homes["connect"]), "SPARK_REMOTE": connect_server},
    )  # fmt: skip
    seconds["connect"] = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    # The scorers ran concurrently over Connect (no fair pools there): wall < sum of the two.
    wall, total = next(
        line.split()[-5::3] for line in done.stdout.splitlines() if "scoring wall / sum" in line
    )
    assert float(wall) < float(total), (wall, total)

    monkeypatch.setenv("MLCORE_HOME", str(homes["classic"]))
    started = time.monotonic()
    assert run_job("run_pipeline", CHAIN) == 0
    seconds["classic"] = time.monotonic() - started
    with capsys.disabled():
        print(f"\nrun_pipeline seconds: classic {seconds['classic']:.0f} (in-process session), "
              f"Spark Connect {seconds['connect']:.0f} (client process incl. start-up)")  # fmt: skip

    assert_same_chain_outputs(homes["classic"], homes["connect"])
