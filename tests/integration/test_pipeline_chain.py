"""run_pipeline on synthetic data: a failed gate stops the chain with the reason, a rerun resumes
without re-running finished steps, and run_manifest answers "which data and code produced this
forecast?" with one query."""

from __future__ import annotations

import json
import re

import pytest
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient

from mlcore.pipelines._manifest import LINEAGE_SQL
from mlcore.pipelines.run_pipeline import plan_step
from mlcore.runner import run_job
from tests.conftest import CONF_DIR

RUN_DATE = "2015-07-01"
STEPS = "pipeline.steps=[ingest_sales,ingest_bank,validate_inputs,train_forecasts,make_forecasts]"
ARGS = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", RUN_DATE, "--set", STEPS]
pytestmark = pytest.mark.slow


def manifest(home):
    return DeltaTable(str(home / "lake" / "run_manifest")).to_pandas()


def test_a_failed_gate_holds_back_what_needs_its_table_and_a_rerun_resumes(
    spark, make_config, mlcore_home, capsys
):
    # rides is in validation.input_tables by default but not ingested by these steps: the
    # validate_inputs gate fails for rides, after both ingest steps succeeded. The forecasting
    # workload needs no rides: it still runs (the chain is a DAG of independent workloads), and
    # the chain says it failed.
    assert run_job("run_pipeline", ARGS) == 1
    captured = capsys.readouterr()
    assert "step validate_inputs failed" in captured.err and "resume" in captured.err
    # The chain's table of step outcomes is printed even though it failed.
    assert re.search(r"validate_inputs +FAILED \(exit 1\): .*rides: table does not exist", captured.out)
    assert re.search(r"make_forecasts +succeeded", captured.out)
    first = manifest(mlcore_home).set_index("job")
    assert first.loc["ingest_sales", "status"] == "succeeded"
    assert first.loc["ingest_bank", "status"] == "succeeded"
    assert first.loc["validate_inputs", "status"] == "failed"
    assert "rides: table does not exist" in first.loc["validate_inputs", "message"]
    assert first.loc["run_pipeline", "status"] == "failed"
    assert json.loads(first.loc["run_pipeline", "gates"])["step:validate_inputs"] == "failed (exit 1)"
    for step in ("train_forecasts", "make_forecasts"):  # they need sales, which passed the gate
        assert first.loc[step, "status"] == "succeeded", f"{step} was held back by rides"
    pipeline_run = first.loc["run_pipeline", "run_id"]
    assert set(first["pipeline_run_id"]) == {pipeline_run}
    results = DeltaTable(str(mlcore_home / "lake" / "validation_results")).to_pandas()
    failed = results[(results["job"] == "validate_inputs") & (results["status"] == "failed")]
    assert set(failed["table"]) == {"rides"}
    sales_version = DeltaTable(str(mlcore_home / "lake" / "sales")).version()

    # Fixed config: the chain resumes at validate_inputs; the steps that succeeded are not run
    # again.
    fixed = [*ARGS, "--set", "validation.input_tables=[sales,stores,bank]"]
    assert run_job("run_pipeline", fixed) == 0
    out = capsys.readouterr().out
    assert out.count("already succeeded for this run date: not rerun (resume)") == 4
    second = manifest(mlcore_home).set_index("job")
    assert len(second) == len(second.index.unique()), "one manifest row per step run"
    for step in ("ingest_sales", "ingest_bank", "train_forecasts", "make_forecasts"):
        assert second.loc[step, "finished_at"] == first.loc[step, "finished_at"], f"{step} ran again"
    assert second.loc["validate_inputs", "finished_at"] > first.loc["validate_inputs", "finished_at"]
    assert DeltaTable(str(mlcore_home / "lake" / "sales")).version() == sales_version
    assert set(second["status"]) == {"succeeded"}
    uri = f"sqlite:///{mlcore_home / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    ingest_run = client.get_run(second.loc["ingest_sales", "run_id"])
    assert ingest_run.data.tags["mlcore.attempts"] == "1"
    gates = json.loads(second.loc["train_forecasts", "gates"])
    assert gates["validation"] == "passed" and gates["promotion:store_forecaster"].startswith("promoted")
    assert json.loads(second.loc["train_forecasts", "inputs"])["sales"] == sales_version

    # A third run of the same date does nothing at all.
    assert run_job("run_pipeline", fixed) == 0
    assert capsys.readouterr().out.count("not rerun (resume)") == 5

    # Lineage: every forecast row -> its run -> the training run, inputs, code and config.
    from mlcore.io import DeltaTables

    tables = DeltaTables(spark, make_config())
    for name in ("forecasts", "run_manifest"):
        tables.read(name).createOrReplaceTempView(name)
    lineage = spark.sql(LINEAGE_SQL).toPandas()
    assert len(lineage) == tables.read("forecasts").count() > 0
    train_row = second.loc["train_forecasts"]
    assert set(lineage["training_run_id"]) == {train_row["run_id"]}
    assert set(lineage["training_config_hash"]) == {train_row["config_hash"]}
    assert {json.loads(t)["sales"] for t in lineage["training_inputs"]} == {sales_version}
    assert lineage["git_sha"].notna().all() or lineage["code_version"].notna().all()


def test_retrain_policy_for_gated_models(make_config, monkeypatch):
    from mlcore.pipelines import run_pipeline as rp

    class Ctx:
        config = make_config("pipeline.max_model_age_days=30")

    monkeypatch.setattr(rp, "champion_age_days", lambda ctx, name: (None, f"{name} has no champion"))
    assert plan_step(Ctx, "train_classifier").run
    monkeypatch.setattr(rp, "champion_age_days", lambda ctx, name: (45, f"{name} v3"))
    plan = plan_step(Ctx, "train_anomaly_model")
    assert plan.run and "45 d old > max_model_age_days 30" in plan.reason
    monkeypatch.setattr(rp, "champion_age_days", lambda ctx, name: (3, f"{name} v3"))
    monkeypatch.setattr(rp, "drift_flags", lambda ctx, monitors: None)
    plan = plan_step(Ctx, "train_classifier")
    assert not plan.run and "no drift flagged" in plan.reason
    plan = plan_step(Ctx, "train_forecasts")
    assert plan.run and "forecasting.only_needed=true" in plan.overrides


BASE = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", RUN_DATE]


def test_schema_change_stops_training_listing_every_issue(spark, make_config, mlcore_home, capsys):
    from pyspark.sql import functions as F

    from mlcore.io import DeltaTables

    assert run_job("ingest_bank", BASE) == 0
    bank = DeltaTables(spark, make_config()).read("bank")
    # Upstream renamed a column and changed a type: a copy of bank in a new location.
    drifted = bank.withColumnRenamed("balance", "balance_eur").withColumn("age", F.col("age").cast("string"))
    DeltaTables(spark, make_config("tables.bank.path=bank_v2")).write(drifted, "bank", mode="overwrite")
    capsys.readouterr()

    code = run_job("train_classifier", [*BASE, "--set", "tables.bank.path=bank_v2"])
    assert code == 1
    err = capsys.readouterr().err
    assert "input validation failed" in err and "nothing written" in err
    assert "bank.balance: schema: column missing (expected int)" in err
    assert "bank.age: schema: type string, expected int" in err
    results = DeltaTable(str(mlcore_home / "lake" / "validation_results")).to_pandas()
    failed = results[(results["job"] == "train_classifier") & (results["status"] == "failed")]
    assert {("schema", "balance"), ("schema", "age")} <= set(zip(failed["rule"], failed["column"], strict=True))
    uri = f"sqlite:///{mlcore_home / 'mlflow' / 'mlflow.db'}"
    assert MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions("name = 'bank_classifier'") == []
    row = manifest(mlcore_home).set_index("job").loc["train_classifier"]
    assert row["status"] == "failed" and row["validation"] == "failed"


def test_switching_validation_off_is_recorded(spark, mlcore_home):
    assert run_job("ingest_bank", BASE) == 0
    args = [*BASE, "--set", "validation.enabled=false", "--set", "validation.input_tables=[bank]"]
    assert run_job("validate_inputs", args) == 0
    results = DeltaTable(str(mlcore_home / "lake" / "validation_results")).to_pandas()
    mine = results[results["job"] == "validate_inputs"]
    assert list(zip(mine["table"], mine["rule"], mine["status"], strict=True)) == [
        ("bank", "validation_disabled", "skipped")
    ]
    assert manifest(mlcore_home).set_index("job").loc["validate_inputs", "validation"] == "skipped"


# The whole default chain, rides included (their synthetic days end the day before the run).
FULL_CHAIN = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", RUN_DATE,
              "--set", "synthetic.rides_start_date=2015-06-14", "--set", "synthetic.rides_days=17"]  # fmt: skip
# Columns that differ between two runs of the same chain by nature: MLflow run ids (random),
# wall-clock times and durations, and in run_manifest the engine itself (and so the config hash).
RUN_IDENTITY = {"run_id", "pipeline_run_id", "upstream_run_ids", "models"}
ENGINE_SPECIFIC = {"delta_engine", "config_hash"}


def _comparable(home, table: str):
    frame = DeltaTable(str(home / "lake" / table)).to_pandas()
    drop = [c for c in frame.columns
            if c in RUN_IDENTITY | ENGINE_SPECIFIC or c.endswith(("_at", "_seconds")) or c == "seconds"]  # fmt: skip
    frame = frame.drop(columns=drop)
    if "row_counts" in frame:  # run_manifest's job metrics: counts compare, rates do not
        frame["row_counts"] = frame["row_counts"].map(
            lambda text: {k: v for k, v in json.loads(text).items() if not k.endswith("_per_second")}
        ).map(lambda counts: json.dumps(counts, sort_keys=True))
    keys = [c for c in frame.columns if all(isinstance(v, (str, int, bool)) for v in frame[c])]
    return frame.sort_values(keys, ignore_index=True) if keys else frame


def champions(home) -> dict:
    """Registered model -> (versions, aliases, the champion's metric tags) in a home's registry."""
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return {
        model.name: (
            sorted(v.version for v in client.search_model_versions(f"name = '{model.name}'")),
            model.aliases,
            {k: v for k, v in client.get_model_version_by_alias(model.name, "champion").tags.items()
             if k.startswith("mlcore.metric")},
        )
        for model in client.search_registered_models()
    }  # fmt: skip


def assert_same_chain_outputs(left, right) -> None:
    """Two homes after the same chain: the same tables with equal rows (floats within 1e-9;
    run ids, times and engine aside) and the same registered champions."""
    import pandas as pd

    tables = sorted(p.name for p in (left / "lake").iterdir())
    assert tables == sorted(p.name for p in (right / "lake").iterdir())
    assert {"forecasts", "bank_scores", "ride_anomaly_scores", "drift_metrics"} <= set(tables)
    for table in tables:
        pd.testing.assert_frame_equal(
            _comparable(left, table), _comparable(right, table), check_exact=False, rtol=1e-9, obj=table
        )
    expected = champions(left)
    assert set(expected) == {"store_forecaster", "bank_classifier", "ride_anomaly_model"}
    assert champions(right) == expected


def test_the_nightly_chain_on_native_delta_equals_the_delta_rs_run(spark, tmp_path, monkeypatch, capsys):
    """run_pipeline, every step, once on delta-rs and once on native Delta (delta-spark's jars):
    every output table holds the same rows (floats within 1e-9), the same champions are
    registered and the manifest records each run's engine."""

    from tests.conftest import require_native_delta

    require_native_delta(spark)
    homes = {}
    for engine in ("deltars", "spark"):
        homes[engine] = tmp_path / engine
        homes[engine].mkdir()
        monkeypatch.setenv("MLCORE_HOME", str(homes[engine]))
        assert run_job("run_pipeline", [*FULL_CHAIN, "--set", f"storage.delta_engine={engine}"]) == 0
        assert f"engine={engine}" in capsys.readouterr().out

    assert_same_chain_outputs(homes["deltars"], homes["spark"])
    for engine, home in homes.items():
        manifest_rows = DeltaTable(str(home / "lake" / "run_manifest")).to_pandas().set_index("job")
        assert set(manifest_rows["delta_engine"]) == {engine}
        # Lineage names what a job read, not the outputs it counted after writing them.
        assert set(json.loads(manifest_rows.loc["score_batch", "inputs"])) == {"bank", "rides"}
