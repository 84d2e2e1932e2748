"""./spark-submit.sh: the command it builds, and a real local spark-submit run of a job."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest
from deltalake import DeltaTable

from tests.conftest import REPO_ROOT

SCRIPT = str(REPO_ROOT / "spark-submit.sh")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHON": sys.executable}


def test_command_ships_package_and_conf_and_adds_delta_when_asked():
    out = subprocess.run(
        [SCRIPT, "--print-command", "--master", "spark://127.0.0.1:7077", "--deploy-mode", "cluster",
         "--with-delta", "--conf", "spark.executor.cores=1", "ingest_bank", "--env", "emr", "--run-date", "2015-01-01"],
        capture_output=True, text=True, check=True, env=_env(),
    ).stdout
    argv = shlex.split(out)

    def value(flag: str) -> list[str]:
        return [argv[i + 1] for i, token in enumerate(argv) if token == flag]

    assert value("--master") == ["spark://127.0.0.1:7077"]
    assert value("--deploy-mode") == ["cluster"]
    assert value("--py-files") == [f"{REPO_ROOT}/dist/mlcore.zip"]
    assert value("--archives") == [f"{REPO_ROOT}/dist/conf.zip#conf"]
    from mlcore.delta_jars import cached_jars

    jars = cached_jars()  # the cached jars travel with --jars; Ivy's --packages only without them
    if jars is not None:
        assert value("--jars") == [",".join(jars.paths)] and not value("--packages")
    else:
        assert value("--packages")[0].startswith("io.delta:delta-spark_")
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in value("--conf")
    assert "spark.executor.cores=1" in value("--conf")
    assert argv[-5:] == [f"{REPO_ROOT}/jobs/ingest_bank.py", "--env", "emr", "--run-date", "2015-01-01"]
    assert "--conf-dir" not in argv, "cluster-mode drivers read the shipped ./conf"


def test_unknown_job_and_option_are_rejected():
    bad_job = subprocess.run([SCRIPT, "rm_rf"], capture_output=True, text=True, env=_env())
    assert bad_job.returncode == 2 and "unknown job 'rm_rf'" in bad_job.stderr
    bad_option = subprocess.run([SCRIPT, "--bogus", "ingest_bank"], capture_output=True, text=True, env=_env())
    assert bad_option.returncode == 2 and "unknown option --bogus" in bad_option.stderr


@pytest.mark.slow
def test_local_spark_submit_runs_a_job_end_to_end(mlcore_home):
    done = subprocess.run(
        [SCRIPT, "ingest_bank", "--env", "test", "--run-date", "2015-01-01"],
        capture_output=True, text=True, env=_env(), timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "== ingest_bank run_date=2015-01-01 env=test engine=deltars" in done.stdout
    bank = DeltaTable(str(mlcore_home / "lake" / "bank"))
    assert bank.version() == 0
    assert bank.history(1)[0]["mlcore.job"] == "ingest_bank"
    rows = int(bank.history(1)[0]["mlcore.rows"])
    quarantined = int(DeltaTable(str(mlcore_home / "lake" / "bank_quarantine")).history(1)[0]["mlcore.rows"])
    assert rows + quarantined == 800, "synthetic test-env bank file: every input row accounted for"
