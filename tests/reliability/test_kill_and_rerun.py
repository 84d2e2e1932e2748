"""Kill and rerun: a training job killed part-way (SIGKILL of its whole process group) and one
killed just after its first commit are rerun; every output then holds exactly one row per natural
key, MLflow holds one finished run for the job and run date and one model version, and every
Delta version readers could ever have seen is complete (the old table or the whole new one)."""

from __future__ import annotations

import pytest

from mlcore.io.faults import AFTER_COMMIT_ENV
from mlcore.runner import run_job
from tests.reliability.conftest import (
    ARGS,
    FAST_FORECASTING,
    FORECAST_OUTPUTS,
    RUN_DATE,
    assert_every_version_complete,
    data_files,
    free_port,
    job_env,
    job_runs,
    kill_tree,
    lake_path,
    logged_files,
    registry,
    scan,
    start_job,
    versions_of,
    wait_for_partial_stage,
    write_sales,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
STORES = 3  # one training task per store; 3 tasks != the 4 shuffle partitions of other stages


def test_killed_training_job_reruns_to_exactly_one_result(
    spark, tables, mlcore_home, subprocess_log
):
    write_sales(spark, tables, STORES)
    args = [*ARGS, *FAST_FORECASTING, "--set", f"forecasting.group_partitions={STORES}"]
    lake = {name: lake_path(mlcore_home, name) for name in FORECAST_OUTPUTS}

    # 1. SIGKILL while groups are training (full Prophet settings, so a group takes seconds):
    #    at least one task has trained its groups, another is still training; none published.
    port = free_port()
    ui = ["--set", "spark.conf.spark.ui.enabled=true", "--set", f"spark.conf.spark.ui.port={port}"]
    slow = [*ARGS, "--set", f"forecasting.group_partitions={STORES}", *ui]
    # Each group task first waits 15 s, so the window exists however fast the machine fits.
    env = job_env(MLCORE_FAULT_GROUP_DELAY_SECONDS="15")
    proc = start_job("train_forecasts", slow, env, subprocess_log("killed_mid_training"))
    try:
        # the per-group stage (results.persist().count()): one task per group partition
        finished, running = wait_for_partial_stage(port, proc, tasks=STORES, name="count at")
    finally:
        kill_tree(proc)
    assert finished >= 1 and running >= 1, "killed part-way through the per-group stage"
    assert not any((path / "_delta_log").exists() for path in lake.values()), "nothing published"

    # 2. SIGKILL right after the forecast_models commit, before the other outputs.
    proc = start_job(
        "train_forecasts",
        args,
        job_env(**{AFTER_COMMIT_ENV: "forecast_models:kill"}),
        subprocess_log("killed_after_commit"),
    )
    assert proc.wait(timeout=600) == -9, "the driver died by SIGKILL at the injection point"
    kill_tree(proc)  # its JVM and Python workers too
    assert versions_of(lake["forecast_models"]) == [0]
    assert not lake["forecast_metrics"].exists() and not lake["forecast_backtest"].exists()
    client = registry(mlcore_home)
    assert client.search_registered_models() == [], "nothing registered before the kill"

    # 3. Rerun (in-process): completes what is missing, adds nothing twice.
    assert run_job("train_forecasts", args) == 0
    (run,) = job_runs(client, "train_forecasts")
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlcore.attempts"] == "3", "both killed attempts resumed the same run"
    expected = {RUN_DATE: set(range(1, STORES + 1))}
    for name, keys in FORECAST_OUTPUTS.items():
        frame = scan(lake[name])
        assert not frame.duplicated(["run_date", *keys]).any(), f"{name}: duplicate natural keys"
        assert set(frame["store"]) == expected[RUN_DATE]
        assert set(frame["run_id"]) == {run.info.run_id}
        assert assert_every_version_complete(lake[name], keys, expected) == versions_of(lake[name])
        assert data_files(lake[name]) == logged_files(lake[name]), f"{name}: orphan data files"
    assert len(scan(lake["forecast_models"])) == STORES
    assert versions_of(lake["forecast_models"]) == [0], "the committed output was not rewritten"
    (version,) = client.search_model_versions("name = 'store_forecaster'")
    assert version.run_id == run.info.run_id
    assert (
        client.get_model_version_by_alias("store_forecaster", "champion").version == version.version
    )

    # 4. And once more: a no-op everywhere.
    tables_before = {name: versions_of(path) for name, path in lake.items()}
    assert run_job("train_forecasts", args) == 0
    assert {name: versions_of(path) for name, path in lake.items()} == tables_before
    assert len(client.search_model_versions("name = 'store_forecaster'")) == 1
    assert len(job_runs(client, "train_forecasts")) == 1


def test_driver_lost_between_registration_and_promotion(spark, tables, mlcore_home, monkeypatch):
    import mlcore.tracking.registry as registry_module
    from mlcore.io.faults import InjectedFault

    write_sales(spark, tables, 2)
    args = [*ARGS, *FAST_FORECASTING]
    real_gate = registry_module.decide_and_promote

    def lost(*_args, **_kwargs):
        raise InjectedFault("driver lost after registering, before moving aliases")

    monkeypatch.setattr(registry_module, "decide_and_promote", lost)
    assert run_job("train_forecasts", args) == 1
    client = registry(mlcore_home)
    (version,) = client.search_model_versions("name = 'store_forecaster'")
    monkeypatch.setattr(registry_module, "decide_and_promote", real_gate)

    assert run_job("train_forecasts", args) == 0
    assert len(client.search_model_versions("name = 'store_forecaster'")) == 1
    aliases = client.get_registered_model("store_forecaster").aliases
    assert aliases == {"champion": version.version, "challenger": version.version}
