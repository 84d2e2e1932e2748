"""Kill during a write: the job's whole process group is SIGKILLed at the moment the first data
file of an output exists (nothing committed yet), then the job is rerun. For every writing job
shape (a Spark-task write, a fused transform-and-write, a driver-local write, a delta-rs merge
and an ingest with quarantine) the rerun leaves no duplicate rows and **no orphan files**: the
killed attempt's files, referenced by no version, used to stay in the table folder forever
(14 files on disk for 12 in the log). A further rerun changes nothing.

The kill point is ``MLCORE_FAULT_AT_FIRST_FILE=<table>:hang`` (``mlcore.io.faults``): the writing
process stops right after its first data file is complete and the test kills the job. delta-rs's
own MERGE writes and commits inside Rust, so that case is killed by a tiny LD_PRELOAD library
(built here with gcc) at the commit's rename into ``_delta_log``, after its data files exist.
The same library kills a native Delta write's JVM at its commit (the last test)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mlcore.io.faults import AT_FIRST_FILE_ENV
from mlcore.runner import run_job
from tests.reliability.conftest import (
    ARGS,
    FAST_FORECASTING,
    RUN_DATE,
    ever_logged,
    job_env,
    kill_tree,
    lake_path,
    scan,
    start_job,
    versions_of,
    write_sales,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
LEASES = "_mlcore_writes"
MANIFEST_COLUMNS = ["run_id", "job", "run_date", "status"]  # (its map columns do not convert)


def on_disk(path: Path) -> set[str]:
    """Every file of the table outside ``_delta_log`` and the lease folder."""
    if not path.exists():
        return set()
    return {
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    }


def orphans(path: Path) -> set[str]:
    """Files no version of the table references (and staged commits never linked)."""
    logged = ever_logged(path) if (path / "_delta_log").exists() else set()
    staged = {p.name for p in (path / "_delta_log").glob("*.json#*")}
    return (on_disk(path) - logged) | staged


def kill_at_first_file(job: str, args: list[str], home: Path, table: str, log: Path) -> set[str]:
    """Run ``job`` in a subprocess, SIGKILL its whole session once ``table`` has an uncommitted
    data file; returns the files the kill left behind (asserted to exist)."""
    path = lake_path(home, table)
    versions = versions_of(path) if (path / "_delta_log").exists() else []
    proc = start_job(job, args, job_env(**{AT_FIRST_FILE_ENV: f"{table}:hang"}), log)
    deadline = time.monotonic() + 300
    try:
        while not any(name.endswith(".parquet") for name in orphans(path)):
            assert proc.poll() is None, f"{job} exited ({proc.returncode}) before writing {table}"
            assert time.monotonic() < deadline, f"no uncommitted {table} file within 300 s"
            time.sleep(0.05)
    finally:
        kill_tree(proc)
    left = orphans(path)
    assert left, "the kill left uncommitted data files behind"
    assert (versions_of(path) if (path / "_delta_log").exists() else []) == versions
    return left


def assert_clean(path: Path) -> None:
    assert orphans(path) == set(), f"{path.name}: orphan files after the rerun"
    leases = path / LEASES
    assert not leases.exists() or not any(leases.iterdir()), "dead writers' leases stay"


def test_spark_task_writes_killed_at_the_first_file(spark, tables, mlcore_home, subprocess_log):
    """forecast_models (train_forecasts) and forecasts (make_forecasts): Spark tasks write the
    files through the Data Source; the kill hits before the driver commits them."""
    write_sales(spark, tables, 3)
    args = [*ARGS, *FAST_FORECASTING]
    models, forecasts = lake_path(mlcore_home, "forecast_models"), lake_path(mlcore_home, "forecasts")

    kill_at_first_file("train_forecasts", args, mlcore_home, "forecast_models",
                       subprocess_log("train_killed"))  # fmt: skip
    assert not (models / "_delta_log").exists(), "nothing committed"
    assert run_job("train_forecasts", args) == 0
    assert_clean(models)
    frame = scan(models)
    assert sorted(frame["store"]) == [1, 2, 3] and versions_of(models) == [0]

    kill_at_first_file("make_forecasts", args, mlcore_home, "forecasts",
                       subprocess_log("forecast_killed"))  # fmt: skip
    assert run_job("make_forecasts", args) == 0
    assert_clean(forecasts)
    frame = scan(forecasts)
    assert not frame.duplicated(["run_date", "store", "ds"]).any()
    assert set(frame["store"]) == {1, 2, 3} and versions_of(forecasts) == [0]

    before = {p.name: versions_of(p) for p in (models, forecasts)}
    assert run_job("train_forecasts", args) == 0 and run_job("make_forecasts", args) == 0
    assert {p.name: versions_of(p) for p in (models, forecasts)} == before
    assert_clean(models)
    assert_clean(forecasts)


def test_fused_transform_and_write_killed_at_the_first_file(mlcore_home, subprocess_log):
    """bank_scores (score_classifier): each scoring task writes its own files."""
    assert run_job("ingest_bank", ARGS) == 0
    assert run_job("train_classifier", ARGS) == 0
    scores = lake_path(mlcore_home, "bank_scores")
    kill_at_first_file("score_classifier", ARGS, mlcore_home, "bank_scores",
                       subprocess_log("score_killed"))  # fmt: skip
    assert run_job("score_classifier", ARGS) == 0
    assert_clean(scores)
    assert versions_of(scores) == [0]
    assert len(scan(scores)) == len(scan(lake_path(mlcore_home, "bank")))
    assert run_job("score_classifier", ARGS) == 0
    assert versions_of(scores) == [0]
    assert_clean(scores)


@pytest.mark.parametrize("table", ["validation_results", "run_manifest"])
def test_driver_local_write_killed_at_the_first_file(table, mlcore_home, subprocess_log):
    """validation_results and a first run_manifest row: rows built on the driver, written and
    committed by the driver. The rerun is a replay (the ingest outputs were committed) that
    still records the run, and removes what the killed attempt left."""
    path = lake_path(mlcore_home, table)
    kill_at_first_file("ingest_bank", ARGS, mlcore_home, table, subprocess_log("ingest_killed"))
    assert run_job("ingest_bank", ARGS) == 0
    assert_clean(path)
    if table == "run_manifest":
        (row,) = scan(path, columns=MANIFEST_COLUMNS).to_dict("records")
        assert row["job"] == "ingest_bank" and row["status"] == "succeeded"
    else:  # the killed attempt's results died with it; the replay validated nothing new
        assert not (path / "_delta_log").exists() or not scan(path).duplicated(
            ["run_date", "job", "table", "rule", "column"]
        ).any()
    before = versions_of(path) if (path / "_delta_log").exists() else []
    assert run_job("ingest_bank", ARGS) == 0
    if table == "validation_results":
        assert (versions_of(path) if (path / "_delta_log").exists() else []) == before
    if table == "run_manifest":
        assert len(scan(path, columns=MANIFEST_COLUMNS)) == 1
    assert_clean(path)
    assert not [p for p in path.rglob("*") if p.is_dir() and not any(p.iterdir())], "empty folders"


def test_ingest_with_quarantine_killed_at_the_first_quarantine_file(mlcore_home, tmp_path,
                                                                     subprocess_log):  # fmt: skip
    """ingest_sales: sales committed, the kill hits sales_quarantine's first file."""
    from mlcore.config.models import SyntheticConfig
    from mlcore.ingest import synthetic

    train, store = synthetic.sales_frames(SyntheticConfig(stores=4, start_date="2015-01-01"))
    bad = ['4001,5,2015-07-31,-5,555,1,1,"0","1"', '4002,5,2015-07-31,5263,555,2,1,"0","1"']
    train_path, store_path = tmp_path / "train.csv.gz", tmp_path / "store.csv.gz"
    synthetic.write_text_gz(train_path, synthetic.format_train_csv(train) + "\n".join(bad) + "\n")
    synthetic.write_text_gz(store_path, synthetic.format_store_csv(store))
    args = [*ARGS, "--set", f"sources.sales.train_path={train_path}",
            "--set", f"sources.sales.store_path={store_path}"]  # fmt: skip
    quarantine = lake_path(mlcore_home, "sales_quarantine")
    kill_at_first_file("ingest_sales", args, mlcore_home, "sales_quarantine",
                       subprocess_log("ingest_sales_killed"))  # fmt: skip
    assert run_job("ingest_sales", args) == 0
    for name in ("sales", "sales_quarantine", "stores", "stores_quarantine"):
        assert_clean(lake_path(mlcore_home, name))
    assert sorted(scan(quarantine)["store"]) == ["4001", "4002"]
    assert len(scan(lake_path(mlcore_home, "sales"))) == len(train)
    before = versions_of(quarantine)
    assert run_job("ingest_sales", args) == 0
    assert versions_of(quarantine) == before
    assert_clean(quarantine)


_SHIM = Path(__file__).with_name("kill_at_commit.c")


def _kill_at_commit_library(tmp_path: Path) -> Path:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        if os.environ.get("CI"):
            pytest.fail("gcc is needed to build the kill-at-commit test library")
        pytest.skip("no C compiler to build the kill-at-commit test library")
    library = tmp_path / "kill_at_commit.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(_SHIM), "-ldl"], check=True
    )
    return library


def test_merge_killed_after_its_data_files(mlcore_home, tmp_path, subprocess_log):
    """run_manifest: delta-rs's MERGE writes its files and commits inside one Rust call; the
    driver is killed at the commit (after every data file exists)."""
    assert run_job("ingest_bank", ARGS) == 0  # run_manifest exists: the next job run merges
    manifest = lake_path(mlcore_home, "run_manifest")
    assert versions_of(manifest) == [0]
    next_day = [*ARGS[:-1], (RUN_DATE + dt.timedelta(days=1)).isoformat()]
    env = job_env(LD_PRELOAD=str(_kill_at_commit_library(tmp_path)),
                  MLCORE_KILL_AT_COMMIT="/run_manifest/_delta_log/")  # fmt: skip
    proc = start_job("ingest_bank", next_day, env, subprocess_log("merge_killed"))
    try:
        assert proc.wait(timeout=300) == -9, "the driver died at the run_manifest commit"
    finally:
        kill_tree(proc)
    left = orphans(manifest)
    assert any(name.endswith(".parquet") for name in left), left
    assert versions_of(manifest) == [0], "the merge did not commit"

    assert run_job("ingest_bank", next_day) == 0
    assert_clean(manifest)
    frame = scan(manifest, columns=MANIFEST_COLUMNS)
    assert not frame.duplicated(["run_id"]).any()
    assert set(frame["run_date"]) == {RUN_DATE, RUN_DATE + dt.timedelta(days=1)}
    rows = frame.set_index("run_id")[["job", "run_date", "status"]].sort_index()
    assert run_job("ingest_bank", next_day) == 0  # a replay: nothing new
    again = scan(manifest, columns=MANIFEST_COLUMNS).set_index("run_id")[["job", "run_date", "status"]].sort_index()
    assert again.equals(rows)
    assert_clean(manifest)


def test_native_delta_write_killed_at_its_commit(spark, mlcore_home, tmp_path, subprocess_log):
    """Native Delta (delta-spark's jars): ingest_bank's JVM is killed as it renames the ``bank``
    commit into ``_delta_log`` (every data file written, no commit). The table keeps its
    version, the rerun publishes exactly the source's rows once, and a further rerun adds
    nothing. Unlike our delta-rs writes, Delta on Spark leaves the killed write's files for
    VACUUM (Delta's design, as on Databricks): they are referenced by no version and no read
    sees them."""
    from tests.conftest import require_native_delta

    require_native_delta(spark)
    native = [*ARGS, "--set", "storage.delta_engine=spark"]
    bank = lake_path(mlcore_home, "bank")
    env = job_env(LD_PRELOAD=str(_kill_at_commit_library(tmp_path)),
                  MLCORE_KILL_AT_COMMIT="/bank/_delta_log/")  # fmt: skip
    log = subprocess_log("native_killed")
    proc = start_job("ingest_bank", native, env, log)
    try:
        assert proc.wait(timeout=300) == 1, "the job failed: its JVM died at the bank commit"
    finally:
        kill_tree(proc)
    assert "Connection refused" in log.read_text(), "the driver lost its JVM"
    assert not (bank / "_delta_log").exists() or not any((bank / "_delta_log").glob("*.json"))
    left = on_disk(bank)
    assert any(name.endswith(".parquet") for name in left), "the killed write's files are there"

    assert run_job("ingest_bank", native) == 0
    assert versions_of(bank) == [0]
    frame = scan(bank)
    assert len(frame) == 800 and not frame.duplicated().any()
    assert left.isdisjoint(ever_logged(bank)), "the killed write's files stay unreferenced"
    assert run_job("ingest_bank", native) == 0  # a replay: nothing new
    assert versions_of(bank) == [0] and len(scan(bank)) == 800
