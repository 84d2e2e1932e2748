"""The nightly chain over Spark Connect, as on Databricks serverless and standard-access clusters:
the job process is a Connect client (``SPARK_REMOTE``) with no SparkContext or JVM of its own,
against a local Spark Connect server from the installed pyspark (``scripts/connect_server.sh``).
Every output table equals the classic run's, the same champions are registered, and
``score_batch``'s two scorers still overlap without fair-scheduler pools.

Both Delta engines run over Connect: delta-rs (its Python data source is registered from the
client) and native Delta (the server is started ``--with-delta``; the engine speaks Delta SQL, so
no Delta Connect plugin is needed). One server serves both runs; the classic run is the
delta-rs chain in this process.
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

from mlcore.delta_jars import cached_jars
from mlcore.runner import run_job
from tests.conftest import REPO_ROOT
from tests.integration.test_pipeline_chain import FULL_CHAIN, assert_same_chain_outputs

pytestmark = pytest.mark.slow
SCRIPT = REPO_ROOT / "scripts" / "connect_server.sh"
CHAIN = [*FULL_CHAIN, "--set", "storage.delta_engine=deltars"]
NATIVE_CHAIN = [*FULL_CHAIN, "--set", "storage.delta_engine=auto"]  # the server's Delta jars


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
    with_delta = ["--with-delta"] if cached_jars() is not None else []
    try:
        started = subprocess.run([str(SCRIPT), "start", *with_delta], env=env,
                                 capture_output=True, text=True, timeout=240)  # fmt: skip
        assert started.returncode == 0, started.stderr + (home / "connect-server" / "server.log").read_text()[-3000:]
        yield started.stdout.strip()
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def _run_over_connect(server: str, home: Path, chain: list[str]) -> tuple[float, str]:
    """run_pipeline in a client process of its own (no JVM there): its seconds and stdout."""
    home.mkdir()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mlcore", "run", "run_pipeline", *chain],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "MLCORE_HOME": str(home), "SPARK_REMOTE": server},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return time.monotonic() - started, done.stdout


@pytest.fixture(scope="module")
def classic_chain(spark, tmp_path_factory) -> tuple[Path, float]:
    """The delta-rs chain on the tests' classic session: the reference for both Connect runs."""
    home = tmp_path_factory.mktemp("classic")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLCORE_HOME", str(home))
        started = time.monotonic()
        assert run_job("run_pipeline", CHAIN) == 0
    return home, time.monotonic() - started


def test_the_chain_over_spark_connect_equals_the_classic_run(
    connect_server, classic_chain, tmp_path, capsys
):
    seconds, stdout = _run_over_connect(connect_server, tmp_path / "connect", CHAIN)
    # The scorers ran concurrently over Connect (no fair pools there): wall < sum of the two.
    wall, total = next(
        line.split()[-5::3] for line in stdout.splitlines() if "scoring wall / sum" in line
    )
    assert float(wall) < float(total), (wall, total)
    classic_home, classic_seconds = classic_chain
    with capsys.disabled():
        print(f"\nrun_pipeline seconds: classic {classic_seconds:.0f} (in-process session), "
              f"Spark Connect {seconds:.0f} (client process incl. start-up)")  # fmt: skip
    assert_same_chain_outputs(classic_home, tmp_path / "connect")


def test_the_chain_on_native_delta_over_spark_connect_equals_the_classic_run(
    connect_server, classic_chain, tmp_path
):
    """Native Delta through a Connect server with the Delta jars: every table a Delta table
    written by Spark, and the same outputs and champions as the classic delta-rs run."""
    if cached_jars() is None:
        reason = "no Delta jars cached here (python -m mlcore.delta_jars fetch)"
        if os.environ.get("CI"):
            pytest.fail(f"setup_env.sh caches the Delta jars in CI: {reason}")
        pytest.skip(reason)
    home = tmp_path / "native"
    _, stdout = _run_over_connect(connect_server, home, NATIVE_CHAIN)
    manifest = home / "lake" / "run_manifest"
    assert manifest.is_dir()
    from deltalake import DeltaTable

    engines = set(DeltaTable(str(manifest)).to_pandas()["delta_engine"])
    assert engines == {"spark"}, f"every step chose native Delta over Connect: {engines}"
    assert_same_chain_outputs(classic_chain[0], home)
