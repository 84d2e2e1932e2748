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
    spec = JobSpec(
        "toy_job", "tests.unit.toy_pipeline", "test job", produces=("sales",), write_mode="snapshot"
    )
    monkeypatch.setitem(JOBS, "toy_job", spec)
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
    # A resumed run lasts as long as its attempts worked, not from the first start to the
    # last end; each attempt's seconds are tagged.
    resumed = runs_after[0]
    work = float(resumed.data.tags["mlcore.work_seconds"])
    attempts = [float(resumed.data.tags[f"mlcore.attempt.{n}.seconds"]) for n in (1, 2)]
    assert work == pytest.approx(sum(attempts), abs=0.2)
    assert (resumed.info.end_time - resumed.info.start_time) / 1000 == pytest.approx(work, abs=0.2)
    assert resumed.info.run_name == "toy_job-2015-06-14"

    # Another revision is another run, and its name says so.
    assert run_job(toy_job, [*ARGS, "--set", "run.revision=2"]) == 0
    _, runs_after = _runs(mlcore_home)
    assert sorted(r.info.run_name for r in runs_after) == ["toy_job-2015-06-14", "toy_job-2015-06-14-r2"]


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


def test_the_runner_publishes_what_the_stage_returns_stamped_and_counted(toy_job, mlcore_home, spark):
    """The toy stage returns a frame without run columns: the rows carry the run's id and date
    (set by the runner), the rows_line comes from the write, and the dry run counts the same."""
    assert run_job(toy_job, [*ARGS, "--set", "mlflow.enabled=false"]) == 0
    rows = spark.read.parquet(str(mlcore_home / "lake" / "sales")).collect()
    assert len(rows) == 5 and {str(r["run_date"]) for r in rows} == {"2015-06-14"}
    assert sorted(r["id"] for r in rows) == [0, 1, 2, 3, 4]


def test_a_stage_returning_an_undeclared_table_writes_nothing(toy_job, mlcore_home, monkeypatch, capsys):
    """Declared IO is the contract: a table the job's spec does not declare is refused (a bug in
    the stage: exit 1 with the table named) before anything is written."""
    spec = JOBS[toy_job]
    monkeypatch.setitem(JOBS, toy_job, JobSpec(spec.name, spec.module, spec.summary, produces=("bank",)))
    assert run_job(toy_job, ARGS) == 1
    assert "returned tables it does not declare: sales" in capsys.readouterr().err
    assert not (mlcore_home / "lake" / "sales").exists()
    assert not (mlcore_home / "lake" / "bank").exists()


def test_stages_never_write_tables_or_touch_the_registry():
    """Only the runner's publication (_publish) and bookkeeping (_validation's results,
    _manifest) write tables, and only _models.register_candidates registers or moves an alias;
    mypy also rejects ``ctx.tables.write`` (the stage's tables are a read-only TableReader)."""
    import re

    pipelines = REPO_ROOT / "mlcore" / "pipelines"
    writers = {"_publish.py", "_validation.py", "_manifest.py"}
    for path in sorted(pipelines.glob("*.py")):
        text = path.read_text()
        if path.name not in writers:
            assert not re.search(r"tables\.(write|merge)\(", text), f"{path.name} writes a table"
        if path.name != "_models.py":
            assert not re.search(r"\.(register|decide_and_promote)\(", text), (
                f"{path.name} registers or promotes a model itself"
            )


def test_help_shows_each_jobs_declared_outputs_and_write_mode(capsys):
    from mlcore.runner import build_parser

    text = build_parser("ingest_sales").format_help()
    assert "writes (whole table replaced by the source's snapshot" in text
    assert "sales, sales_quarantine, stores, stores_quarantine" in text
    assert "writes when configured: forecast_calendar" in text
    assert "writes (this run date's rows replaced" in build_parser("make_forecasts").format_help()


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
        captured = capsys.readouterr()
        first = captured.out.strip().splitlines()[0]
        assert first == f"{job}: run date 2015-06-14, env test, MLCORE_HOME {mlcore_home}"
        assert captured.err.strip() == (
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
        for table in declared_tables((*spec.requires, *spec.produces, *spec.may_produce), config):
            assert table in config.tables, f"{spec.name}: {table!r} is not in tables"


def test_an_artifact_file_is_logged_under_its_own_path_not_a_folder_named_like_it():
    from mlcore.runner import artifact_folder

    assert artifact_folder("plots/roc_curve.png", "/tmp/x/roc_curve.png") == "plots"
    assert artifact_folder("report.html", "/tmp/report.html") is None
    with pytest.raises(ValueError, match="must end with its file's name"):
        artifact_folder("plots", "/tmp/x/roc_curve.png")


def test_a_rerun_with_another_config_stops_and_says_what_differs(toy_job, mlcore_home, capsys):
    """Published run date, same revision, different config: exit 2 with the differing keys and
    the flag that republishes, before anything runs; the same config stays a quiet no-op."""
    assert run_job(toy_job, ARGS) == 0
    capsys.readouterr()
    changed = [*ARGS, "--set", "ingest.bad_row_budget=0.5"]
    assert run_job(toy_job, changed) == 2
    err = capsys.readouterr().err
    assert "toy_job: config error: run date 2015-06-14 (revision 1) was already published with " \
           "another config: ingest.bad_row_budget: " in err  # fmt: skip
    assert "-> 0.5; to republish with this config add --set run.revision=2" in err
    _, runs = _runs(mlcore_home)
    assert [r.data.tags["mlcore.attempts"] for r in runs] == ["1"], "the published run untouched"
    assert run_job(toy_job, [*changed, "--set", "run.revision=2"]) == 0
    assert run_job(toy_job, ARGS) == 0, "the first config again: nothing differs"
    assert run_job(toy_job, [*changed, "--dry-run"]) == 0, "a dry run publishes nothing"


def test_stage_progress_never_goes_backwards_and_waits_for_a_rate(caplog):
    """A restarted stage (retry, re-plan) resets Spark's task counter: the reported count keeps
    its best. No ETA before the first unit is done (not 'ETA nan s'); a closing line at the end."""
    import logging

    from mlcore.pipelines._progress import StageReporter

    reporter = StageReporter(None, "training", 1115, "groups")
    assert reporter.line(5.0) == "training: 0/1115 groups, 5 s elapsed, ETA after the first groups"
    reporter.observe(6, 16)
    assert reporter.best == 418
    reporter.observe(0, 16)  # the stage restarted
    reporter.observe(3, 16)
    assert reporter.best == 418
    assert reporter.line(20.0) == "training: 418/1115 groups, 20.9 groups/s, ETA 33 s"
    with caplog.at_level(logging.INFO, logger="mlcore.progress"):
        with StageReporter(None, "final fit", 1, "model", interval=0.05):
            import time

            time.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records if r.name == "mlcore.progress"]
    assert len(lines) >= 3 and lines[0].startswith("final fit: 0/1 model, 0 s elapsed")
    assert lines[-1].startswith("final fit: 1/1 model in ")


def test_stage_progress_in_tasks_and_in_driver_counted_units():
    """A stage without a known total counts the Spark stage's own tasks (scoring, writes); the
    drift monitors are counted by the job. Neither goes backwards."""
    from mlcore.pipelines._progress import StageReporter

    scoring = StageReporter(None, "scoring and writing")
    assert scoring.line(3.0) == "scoring and writing: 3 s elapsed, starting"
    scoring.observe(4, 16)
    scoring.observe(2, 8)  # a second, smaller stage (the commit's): the best count stays
    assert scoring.line(8.0) == "scoring and writing: 4/16 tasks, 0.5 tasks/s, ETA 24 s"
    monitors = StageReporter(None, "drift monitors", 5, "monitors")
    monitors.reached(2)
    monitors.reached(1)
    assert monitors.best == 2 and monitors.line(10.0).startswith("drift monitors: 2/5 monitors")


def test_outputs_published_reads_the_jobs_tokens_from_the_delta_log(spark, tables, make_config):
    """A rerun is a no-op (and so checked against the published config) only when every table
    the job declares holds its token for the run date and revision; a new output table, a new
    revision or a missing table means the job will publish."""
    import datetime as dt

    from mlcore.io.tables import WriteToken
    from mlcore.job_catalog import outputs_published

    day = dt.date(2015, 6, 14)
    config = make_config()
    assert outputs_published("make_forecasts", config, day) is False, "no table yet"
    frame = spark.createDataFrame([(1, day)], "x int, run_date date")
    tables.write(frame, "forecasts", mode="append", token=WriteToken.for_job("make_forecasts", day, 1, "forecasts"))
    assert outputs_published("make_forecasts", config, day) is False, "forecast_status missing"
    tables.write(frame, "forecast_status", mode="append",
                 token=WriteToken.for_job("make_forecasts", day, 1, "forecast_status"))  # fmt: skip
    assert outputs_published("make_forecasts", config, day) is True
    assert outputs_published("make_forecasts", make_config("run.revision=2"), day) is False
    assert outputs_published("make_forecasts", config, day + dt.timedelta(days=1)) is False
    assert outputs_published("train_classifier", config, day) is None, "registry-only outputs"
