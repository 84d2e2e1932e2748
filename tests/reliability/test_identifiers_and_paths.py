"""Identifiers, paths and predicates from config or the command line: traversal, absolute paths
outside the lake root, other buckets, quotes, ';', '--', backticks, newlines and
``1' OR '1'='1`` are rejected before any Spark session, Delta table or MLflow store is touched
(exit code 2 for config); valid values pass. Predicate values are bound as literals, so an
injection string cannot widen a replace-where."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlcore.config.loader import ConfigError, load_config
from mlcore.runner import run_job
from tests.conftest import CONF_DIR

pytestmark = pytest.mark.reliability
ARGS = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", "2015-06-14"]

BAD_SETTINGS = {
    "relative traversal": "tables.sales.path=../x",
    "deep traversal": "tables.sales.path=a/../../x",
    "absolute path outside the lake": "tables.sales.path=/etc/passwd",
    "file URI outside the lake": "tables.sales.path=file:///tmp/elsewhere",
    "another bucket": "tables.sales.path=s3://other-bucket/lake/sales",
    "percent-encoded traversal": "tables.sales.path='%2e%2e%2fx'",
    "unquoted percent sign (invalid YAML)": "tables.sales.path=%2e%2e%2fx",
    "backslash traversal": "tables.sales.path=..\\x",
    "newline in a path": 'tables.sales.path="sales\\nx"',
    "catalog name with a statement": "tables.sales.catalog_name=main.mlcore.sales; DROP TABLE x",
    "catalog name with a backtick": "tables.sales.catalog_name=main.`mlcore`.sales",
    "partition column with a quote": "tables.sales.partition_by=[run_date']",
    "group key with SQL": "forecasting.group_keys=[1' OR '1'='1]",
    "group key with a comment": "forecasting.group_keys=[store--]",
    "date column with a semicolon": "forecasting.date_column=date;drop",
    "key column with a backtick": "classification.key_columns=[id`]",
    "model name with a quote": "forecasting.model_name=m' OR name LIKE '%",
    "alias with a space": "classification.score_alias=champion OR 1",
    "input table that is no identifier": "classification.score_table=bank;x",
    "source path with traversal": "sources.bank.path=../../etc/passwd",
    "source path with a newline": 'sources.bank.path="/tmp/a\\nb.csv"',
    "lake root with traversal": "storage.lake_root=/tmp/lake/../../etc",
    "tracking URI with a password": "mlflow.tracking_uri=https://user:hunter22@mlflow.example.com",
    "experiment root with a quote": "mlflow.experiment_root=mlcore' OR '1'='1",
}


@pytest.fixture
def spies(monkeypatch):
    """Record (and block) every Spark session request and Delta/MLflow entry point."""
    import mlflow

    import mlcore.io.delta
    import mlcore.spark

    calls: list[str] = []

    def spy(name):
        def _blocked(*_args, **_kwargs):
            calls.append(name)
            raise RuntimeError(f"{name} reached")

        return _blocked

    monkeypatch.setattr(mlcore.spark, "get_spark", spy("get_spark"))
    monkeypatch.setattr(mlcore.io.delta.DeltaTables, "__init__", spy("DeltaTables"))
    monkeypatch.setattr(mlflow, "set_tracking_uri", spy("mlflow"))
    return calls


@pytest.mark.parametrize("setting", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_bad_names_and_paths_are_rejected_before_spark_delta_or_mlflow(setting, spies, capsys):
    assert run_job("train_forecasts", [*ARGS, "--set", setting]) == 2
    err = capsys.readouterr().err
    assert "config error" in err and err.count("\n") == 1, err
    assert spies == [], "nothing reached Spark, Delta or MLflow"
    assert "hunter22" not in err


def test_bad_cli_values_are_rejected_before_spark(spies, capsys):
    assert run_job("train_forecasts", ["--env", "../x", "--conf-dir", str(CONF_DIR)]) == 2
    assert run_job("train_forecasts", [*ARGS[:-1], "2015-06-14; rm -rf /"]) == 2
    assert run_job("train_forecasts", [*ARGS, "--set", "a.b"]) == 2
    assert spies == []
    err = capsys.readouterr().err
    assert "invalid env name '../x'" in err and "invalid run date" in err


VALID_SETTINGS = [
    "tables.sales.path=sales_v2",
    "tables.sales.path=nested/sales",
    "tables.sales.catalog_name=main.mlcore.sales",
    "tables.sales.partition_by=[run_date]",
    "forecasting.group_keys=[store, state_holiday]",
    "forecasting.model_name=store_forecaster.v2-eu",
    "classification.key_columns=[age, job]",
    "mlflow.tracking_uri=https://mlflow.example.com",
    "sources.bank.path=/data/raw/bank-full.csv.gz",
    "sources.bank.path=s3://raw-bucket/bank/bank-full.csv.gz",
]


@pytest.mark.parametrize("setting", VALID_SETTINGS)
def test_valid_names_and_paths_pass(setting, spies, capsys, mlcore_home):
    # The config is accepted; the run then stops at the first runtime check: the declared input
    # ``sales`` (not ingested here) at the path the setting resolved to, before Spark; for a
    # catalog table (checked by the engine) the (blocked) Spark session; with a remote tracking
    # server (unreachable here), the server check that precedes both.
    if setting.startswith("mlflow.tracking_uri=https://"):  # past the input check, to the server's
        (mlcore_home / "lake" / "sales" / "_delta_log").mkdir(parents=True)
    assert run_job("train_forecasts", [*ARGS, "--set", setting]) == 1
    err = capsys.readouterr().err
    assert "config error" not in err
    if setting.startswith("mlflow.tracking_uri=https://"):
        assert spies == [] and "MLflow tracking server" in err and "unreachable" in err, err
    elif setting.startswith("tables.sales.catalog_name="):
        assert spies == ["get_spark"], err
    else:
        assert spies == [] and "FAILED: input table 'sales' does not exist at " in err, err
        if setting.startswith("tables.sales.path="):
            path = setting.split("=", 1)[1]
            assert f"/lake/{path}: run ingest_sales first" in err, err


def test_absolute_table_paths_inside_the_lake_pass(mlcore_home):
    config = load_config(
        "test", conf_dir=CONF_DIR, overrides=[f"tables.sales.path={mlcore_home}/lake/abs_sales"]
    )
    from mlcore.io.tables import resolve_table

    assert resolve_table(config, "sales").uri == str(mlcore_home / "lake" / "abs_sales")
    with pytest.raises(ConfigError, match="outside storage.lake_root"):
        load_config(
            "test", conf_dir=CONF_DIR, overrides=[f"tables.sales.path={mlcore_home}/elsewhere"]
        )


def test_symlink_out_of_the_lake_is_refused(spark, make_config, mlcore_home, tmp_path):
    from pyspark.sql.types import IntegerType, StructField, StructType

    from mlcore.io import DeltaTables

    outside = tmp_path / "outside"
    outside.mkdir()
    (mlcore_home / "lake").mkdir()
    os.symlink(outside, mlcore_home / "lake" / "escape")
    tables = DeltaTables(spark, make_config("tables.sales.path=escape"))
    df = spark.createDataFrame([(1,)], StructType([StructField("n", IntegerType())]))
    with pytest.raises(ValueError, match="outside the lake root"):
        tables.write(df, "sales")
    assert list(outside.iterdir()) == [], "nothing was written through the symlink"


def test_injection_string_in_a_predicate_cannot_widen_a_replace_where(spark, tables, monkeypatch):
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType

    schema = StructType([StructField("store", StringType()), StructField("n", IntegerType())])
    uri = tables.ref("sales").uri
    tables.write(spark.createDataFrame([("1", 1), ("2", 2), ("3", 3)], schema), "sales")
    evil = "1' OR '1'='1"
    # Rows outside the literal predicate are refused ...
    from mlcore.io import ReplaceWhereViolation

    with pytest.raises(ReplaceWhereViolation):
        tables.write(
            spark.createDataFrame([("2", 20)], schema),
            "sales",
            mode="replace_where",
            replace_where={"store": evil},
        )
    # ... and a write inside it replaces exactly the rows equal to that string: none here.
    tables.write(
        spark.createDataFrame([(evil, 99)], schema),
        "sales",
        mode="replace_where",
        replace_where={"store": evil},
    )
    from tests.reliability.conftest import scan

    assert sorted(scan(uri)["store"]) == ["1", "1' OR '1'='1", "2", "3"]
    assert tables.read("sales", where={"store": evil}).count() == 1

    # Bad predicate keys or values fail before the engine (Spark/Delta) is called.
    def engine_called(*_args, **_kwargs):
        raise AssertionError("the engine was called")

    monkeypatch.setattr(tables._engine, "write", engine_called)
    monkeypatch.setattr(tables._engine, "read", engine_called)
    for bad in ({"store; DROP TABLE sales": "1"}, {"store`": "1"}, {"store\n": "1"}, {"store": object()},
                {"store": []}, {"store": float("nan")}):  # fmt: skip
        reason = (
            r"invalid column name|unsupported literal|IN-list must not be empty|non-finite literal"
        )
        with pytest.raises(ValueError, match=reason):
            tables.write(
                spark.createDataFrame([("1", 1)], schema),
                "sales",
                mode="replace_where",
                replace_where=bad,
            )
        with pytest.raises(ValueError, match=reason):
            tables.read("sales", where=bad)


def test_no_file_is_created_outside_the_lake_by_rejected_config(mlcore_home, spies, tmp_path):
    target = tmp_path / "elsewhere"
    assert run_job("ingest_bank", [*ARGS, "--set", f"tables.bank.path={target}"]) == 2
    assert not target.exists() and not Path("/etc/passwd_mlcore").exists()
