"""The job runner: exit codes, one MLflow run per job run (resumed on rerun), tags, params,
metrics and artifacts, and the CLI's job listing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient

from mlcore.job_catalog import JOBS, JobSpec
from mlcore.runner import run_job
from tests.conftest import CONF_DIR, REPO_ROOT

ARGS = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", "2015-06-14"]


@pytest.fixture
def toy_job(monkeypatch, spark):
    monkeypatch.setitem(JOBS, "toy_job", JobSpec("toy_job", "tests.unit.toy_pipeline", "test job"))
    return "toy_job"


def _runs(mlcore_home):
    client = MlflowClient(tracking_uri=f"sqlite:///{mlcore_home / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mlcore/toy_job")
    return client, client.search_runs([experiment.experiment_id]) if experiment else []


def test_job_run_is_tracked_and_rerun_resumes_the_same_run(toy_job, mlcore_home, capsys):
    assert run_job(toy_job, ARGS) == 0
    out = capsys.readouterr().out
    assert "== toy_job run_date=2015-06-14 env=test engine=deltars" in out
    assert "table sales" in out and "v0" in out

    client, runs = _runs(mlcore_home)
    assert len(runs) == 1
    run = runs[0]
    tags = run.data.tags
    assert tags["mlcore.job"] == "toy_job" and tags["mlcore.env"] == "test"
    assert tags["mlcore.run_date"] == "2015-06-14"
    assert tags["mlcore.delta_engine"] == "deltars"
    assert tags["mlcore.version"] and tags["mlcore.status"] == "finished"
    assert tags["mlcore.output.sales.version"] == "0"
    assert run.data.params["storage.delta_engine"] == "deltars"
    assert run.data.metrics["rows_written"] == 5.0
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "notes"} <= artifacts
    table_uri = str(mlcore_home / "lake" / "sales")
    assert DeltaTable(table_uri).version() == 0

    # Same run date again: no new MLflow run, no new table version, same run id in the rows.
    assert run_job(toy_job, ARGS) == 0
    _, runs_after = _runs(mlcore_home)
    assert [r.info.run_id for r in runs_after] == [run.info.run_id]
    assert runs_after[0].data.tags["mlcore.attempts"] == "2"
    assert DeltaTable(table_uri).version() == 0
    assert "already written" in capsys.readouterr().out


def test_failed_gate_exits_1_with_reason_and_marks_run_failed(toy_job, mlcore_home, capsys):
    code = run_job(toy_job, [*ARGS, "--set", "ingest.bad_row_budget=0.0"])
    assert code == 1
    assert "toy_job: FAILED: budget is zero" in capsys.readouterr().err
    _, runs = _runs(mlcore_home)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not (mlcore_home / "lake" / "sales").exists()


def test_bad_arguments_and_config_exit_2(toy_job, capsys):
    assert run_job(toy_job, [*ARGS, "--bogus"]) == 2
    assert run_job(toy_job, ["--run-date", "14/06/2015"]) == 2
    for compact in ("20150614", "2015-W24-7", "2015-06-14T00:00"):  # fromisoformat takes these
        assert run_job(toy_job, ["--run-date", compact]) == 2
        assert f"invalid run date '{compact}': expected YYYY-MM-DD" in capsys.readouterr().err
    assert run_job(toy_job, [*ARGS, "--set", "ingest.nope=1"]) == 2
    assert "unknown key 'ingest.nope'" in capsys.readouterr().err


def test_dry_run_writes_nothing(toy_job, mlcore_home):
    assert run_job(toy_job, [*ARGS, "--dry-run"]) == 0
    assert not (mlcore_home / "lake" / "sales").exists()


def test_mlflow_disabled_uses_a_deterministic_run_id(toy_job, mlcore_home, spark):
    assert run_job(toy_job, [*ARGS, "--set", "mlflow.enabled=false"]) == 0
    assert not (mlcore_home / "mlflow").exists()
    ids = {r["run_id"] for r in spark.read.parquet(str(mlcore_home / "lake" / "sales")).collect()}
    assert len(ids) == 1 and len(ids.pop()) == 32


def test_cli_lists_every_job():
    out = subprocess.run(
        [sys.executable, "-m", "mlcore", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name in JOBS:
        assert name in out
    listed = subprocess.run(
        [sys.executable, "-m", "mlcore", "list"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert {line.split("\t")[0] for line in listed if line} == set(JOBS)
    assert {"ingest_sales", "ingest_bank", "ingest_rides", "train_forecasts", "make_forecasts"} <= set(JOBS)
    assert {p.stem for p in (REPO_ROOT / "jobs").glob("*.py")} == set(JOBS), "one thin job file per job"


def test_a_missing_input_table_is_one_line_naming_the_job_that_writes_it(mlcore_home, capsys):
    """Checked before Spark or MLflow are touched: no traceback, no run, no manifest row; the
    line names the table, its path and the job to run first."""
    lake = mlcore_home / "lake"
    for job, table, writer in (
        ("train_forecasts", "sales", "ingest_sales"),
        ("make_forecasts", "forecast_models", "train_forecasts"),
        ("score_classifier", "bank", "ingest_bank"),
        ("detect_anomalies", "rides", "ingest_rides"),
    ):
        assert run_job(job, ARGS) == 1
        err = capsys.readouterr().err
        assert err.strip() == (
            f"{job}: FAILED: input table '{table}' does not exist at {lake / table}: "
            f"run {writer} first"
        )
    assert not (mlcore_home / "mlflow").exists() and not lake.exists()


def test_every_declared_table_is_a_configured_table_or_config_key(make_config):
    """The declared inputs and outputs resolve under the shipped config (a typo would make the
    pre-start check skip a table silently)."""
    from mlcore.job_catalog import declared_tables

    config = make_config()
    for spec in JOBS.values():
        for table in declared_tables((*spec.requires, *spec.produces), config):
            assert table in config.tables, f"{spec.name}: {table!r} is not in tables"
