"""Secrets: a job run with canary credentials in the environment (MLflow, AWS, Azure, Databricks)
and in Spark/Hadoop storage settings (``--set spark.conf.spark.hadoop...``, the way object-store
credentials reach Spark; the delta-rs engine reads its storage credentials from the same
environment variables) leaves no trace of them: not in stdout/stderr (DEBUG logging), not in
MLflow params, tags, metrics or artifacts, not in Delta commit info or data files, not in the
Spark event log, and not in error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcore.runner import run_job
from tests.conftest import CONF_DIR
from tests.reliability.conftest import job_env, start_job

pytestmark = pytest.mark.reliability

ENV_CANARIES = {
    "MLFLOW_TRACKING_TOKEN": "canary-mlflow-token-9f2c1",
    "MLFLOW_TRACKING_PASSWORD": "canary-mlflow-password-77ab",
    "AWS_SECRET_ACCESS_KEY": "canary-aws-secret-key-a81d",
    "AWS_SESSION_TOKEN": "canary-aws-session-token-03e4",
    "AZURE_STORAGE_KEY": "canary-azure-storage-key-c0ff",
    "AZURE_STORAGE_ACCOUNT_KEY": "canary-azure-account-key-51b7",
    "DATABRICKS_TOKEN": "canary-databricks-token-d4d4",
}
CONF_CANARIES = {
    "spark.hadoop.fs.s3a.secret.key": "canary-s3a-secret-key-e19b",
    "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net": "canary-abfs-account-key-6a0e",
    "spark.hadoop.fs.azure.sas.box.acct.blob.core.windows.net": "canary-azure-sas-token-2f88",
}
CANARIES = [*ENV_CANARIES.values(), *CONF_CANARIES.values()]
ARGS = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", "2015-06-14"]


def leaks_in(root: Path) -> dict[str, list[str]]:
    """Canary -> files under ``root`` whose bytes contain it (sqlite, artifacts, Delta logs...)."""
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for canary in CANARIES:
                if canary.encode() in data:
                    found.setdefault(canary, []).append(str(path.relative_to(root)))
    return found


@pytest.mark.slow
def test_canaries_never_leave_the_process(mlcore_home, tmp_path, subprocess_log):
    events = tmp_path / "spark-events"
    events.mkdir()
    conf = [
        arg
        for key, value in {
            **CONF_CANARIES,
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": events.as_uri(),
            "spark.logConf": "true",
        }.items()
        for arg in ("--set", f"spark.conf.{key}={value}")
    ]
    log = subprocess_log("ingest_bank_with_canaries")
    proc = start_job(
        "ingest_bank", [*ARGS, *conf, "--log-level", "DEBUG"], job_env(**ENV_CANARIES), log
    )
    assert proc.wait(timeout=600) == 0
    output = log.read_text(errors="replace")
    assert "== ingest_bank run_date=2015-06-14" in output, "the job did run"
    assert [c for c in CANARIES if c in output] == [], "canary in stdout/stderr"
    assert any(events.iterdir()), "the Spark event log was written"
    assert leaks_in(events) == {}, "canary in the Spark event log"
    assert leaks_in(mlcore_home) == {}, "canary in MLflow (db, artifacts) or the lake"

    # The run is tracked with its config as params, without the credential keys.
    from tests.reliability.conftest import job_runs, registry

    (run,) = job_runs(registry(mlcore_home), "ingest_bank")
    assert run.data.params["storage.delta_engine"] == "deltars"
    assert not [k for k in run.data.params if "secret" in k or "account.key" in k or ".sas." in k]


def test_error_messages_redact_credentials(spark, mlcore_home, monkeypatch, capsys):
    for name, value in ENV_CANARIES.items():
        monkeypatch.setenv(name, value)
    s3_key = CONF_CANARIES["spark.hadoop.fs.s3a.secret.key"]
    cases = [
        # credentials embedded in a tracking URI: refused, shown redacted
        [
            "--set",
            f"mlflow.tracking_uri=https://bob:{ENV_CANARIES['MLFLOW_TRACKING_PASSWORD']}@mlflow.example.com",
        ],
        # a secret given the wrong type: the error names the key, not the value
        ["--set", f"spark.conf.spark.hadoop.fs.s3a.secret.key=[{s3_key}, x]"],
        # an unrelated config error while secrets are set
        [
            "--set",
            f"spark.conf.spark.hadoop.fs.s3a.secret.key={s3_key}",
            "--set",
            "storage.commit_retries=many",
        ],
    ]
    for extra in cases:
        assert run_job("ingest_bank", [*ARGS, *extra]) == 2
        captured = capsys.readouterr()
        text = captured.out + captured.err
        assert "config error" in text
        assert [c for c in CANARIES if c in text] == [], text
    # A job failing at run time with the secrets in its config and environment.
    args = [*ARGS, "--set", f"spark.conf.spark.hadoop.fs.s3a.secret.key={s3_key}"]
    assert run_job("score_classifier", args) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.err
    assert [c for c in CANARIES if c in captured.out + captured.err] == []
    assert leaks_in(mlcore_home) == {}
