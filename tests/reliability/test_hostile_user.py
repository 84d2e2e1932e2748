"""Defects found by using the jobs as a hostile user would (issue 17), one test per defect:
redaction racing with threads that change the environment, credentials in URIs without a
password part, a tracking server that is down or hangs, integers that do not fit 64 bits, and a
damaged Delta log. Each failed on the code before the fix."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from mlcore.runner import run_job
from tests.conftest import CONF_DIR

pytestmark = pytest.mark.reliability
ARGS = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", "2015-06-14"]
SECRET = "hostile-canary-token-5e1f"


# ----------------------------------------------------------------------------------------------
# 1. redact() beside a thread that sets and pops environment variables
# ----------------------------------------------------------------------------------------------
def test_redaction_never_raises_while_another_thread_changes_the_environment(monkeypatch):
    from mlcore.logging_setup import redact

    monkeypatch.setenv("MLCORE_HOSTILE_TOKEN", SECRET)
    stop = threading.Event()

    def mutate() -> None:  # what MLflow's telemetry thread does with its session id
        i = 0
        while not stop.is_set():
            os.environ[f"_MLCORE_CHURN_{i % 7}"] = "x" * 8
            os.environ.pop(f"_MLCORE_CHURN_{(i + 3) % 7}", None)
            i += 1

    churn = threading.Thread(target=mutate, daemon=True)
    churn.start()
    errors: list[BaseException] = []
    leaked = 0
    try:
        for _ in range(20_000):
            try:
                if SECRET in redact(f"token={SECRET} in a log line"):
                    leaked += 1
            except Exception as exc:  # noqa: BLE001 - the defect: KeyError/RuntimeError escaped
                errors.append(exc)
    finally:
        stop.set()
        churn.join()
        for i in range(7):
            os.environ.pop(f"_MLCORE_CHURN_{i}", None)
    assert errors == [], f"redact raised {len(errors)} times, e.g. {errors[0]!r}"
    assert leaked == 0


def test_a_secret_set_before_the_job_started_stays_redacted_after_it_is_unset(monkeypatch):
    from mlcore.logging_setup import redact, setup_logging

    monkeypatch.setenv("MLCORE_HOSTILE_PASSWORD", SECRET + "-start")
    setup_logging("INFO")  # job start
    monkeypatch.delenv("MLCORE_HOSTILE_PASSWORD")
    assert SECRET + "-start" not in redact(f"late log line with {SECRET}-start")


def test_mlflow_telemetry_is_off_unless_asked_for(make_config):
    from mlcore.tracking.runs import apply_client_settings

    env: dict[str, str] = {}
    apply_client_settings(make_config(), env)
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert int(env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 3
    env = {}
    apply_client_settings(make_config("mlflow.telemetry=true"), env)
    assert "MLFLOW_DISABLE_TELEMETRY" not in env
    env = {"MLFLOW_DISABLE_TELEMETRY": "false", "MLFLOW_HTTP_REQUEST_TIMEOUT": "7"}
    apply_client_settings(make_config(), env)
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "false", "the user's own setting wins"
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"


# ----------------------------------------------------------------------------------------------
# 5. Credentials in URIs without a password part; a tracking server that is down or hangs
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "uri",
    [
        f"http://{SECRET}@127.0.0.1:5999",  # token only
        f"https://{SECRET}:@mlflow.example.com",  # empty password
        f"http://{SECRET}%40corp@127.0.0.1:5999/api",  # user only, percent-encoded
        f"http://%68{SECRET[1:]}@127.0.0.1:5999",  # token, percent-encoded
    ],
)
def test_tracking_uri_with_any_user_info_is_refused_and_never_printed(uri, capsys):
    assert run_job("ingest_bank", [*ARGS, "--set", f"mlflow.tracking_uri={uri}"]) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "embeds credentials" in text
    assert SECRET[1:] not in text, text


@pytest.mark.parametrize(
    "setting",
    [
        f"storage.lake_root=s3a://{SECRET}@bucket/lake",
        f"sources.bank.path=https://{SECRET}@files.example.com/bank.csv",
    ],
)
def test_any_configured_location_with_user_info_is_refused(setting, capsys):
    assert run_job("ingest_bank", [*ARGS, "--set", setting]) == 2
    captured = capsys.readouterr()
    assert "embeds credentials" in captured.err and SECRET not in captured.out + captured.err


def test_redact_hides_user_info_of_any_uri():
    from mlcore.logging_setup import redact

    for uri in (
        f"http://{SECRET}@host:5000/x",
        f"s3a://{SECRET}@bucket/path",
        f"https://user:{SECRET}@host",
        f"http://%68{SECRET[1:]}@host",
    ):
        out = redact(f"could not reach {uri}: connection refused")
        assert SECRET[1:] not in out and "<redacted>@" in out, out
    assert redact("mail bob@example.com") == "mail bob@example.com"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_tracking_server_fails_fast_with_one_line(mlcore_home, capsys):
    port = _closed_port()
    args = [*ARGS, "--set", f"mlflow.tracking_uri=http://127.0.0.1:{port}",
            "--set", "mlflow.request_timeout_seconds=20"]  # fmt: skip
    started = time.monotonic()
    assert run_job("ingest_bank", args) == 1
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "unreachable" in failed[0], err
    assert len(err.strip().splitlines()) == 1, f"one line, not a retry log: {err}"
    assert "Traceback" not in err
    assert elapsed < 25, f"took {elapsed:.0f} s (bound 20 s)"
    assert not (mlcore_home / "lake").exists() or not any((mlcore_home / "lake").iterdir())


def test_hanging_tracking_server_is_cut_off_at_the_bound(mlcore_home, capsys):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts connections, never answers
    port = listener.getsockname()[1]
    try:
        args = [*ARGS, "--set", f"mlflow.tracking_uri=http://127.0.0.1:{port}",
                "--set", "mlflow.request_timeout_seconds=5"]  # fmt: skip
        started = time.monotonic()
        assert run_job("ingest_bank", args) == 1
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    err = capsys.readouterr().err
    assert "did not answer within 5 s" in err or "unreachable" in err, err
    assert elapsed < 12, f"took {elapsed:.0f} s (bound 5 s)"


# ----------------------------------------------------------------------------------------------
# 6. Smaller ones
# ----------------------------------------------------------------------------------------------
def test_an_integer_beyond_64_bits_is_a_config_error(capsys):
    assert run_job("ingest_bank", [*ARGS, "--set", "run.revision=99999999999999999999"]) == 2
    err = capsys.readouterr().err
    assert "run.revision" in err and "64 bits" in err


def test_a_truncated_delta_log_names_the_table_and_its_path(spark, tables, mlcore_home):
    from mlcore.io import DeltaIOError

    frame = spark.createDataFrame([(1, "a"), (2, "b")], "id int, v string")
    tables.write(frame, "stores", mode="overwrite")
    tables.write(frame, "stores", mode="append")
    log_dir = mlcore_home / "lake" / "stores" / "_delta_log"
    last = sorted(log_dir.glob("*.json"))[-1]
    text = last.read_text()
    last.write_text(text[: len(text) // 2])
    with pytest.raises(DeltaIOError) as caught:
        tables.read("stores")
    message = str(caught.value)
    assert "'stores'" in message and str(mlcore_home / "lake" / "stores") in message
    assert "Truncated" in message or "Json" in message
