"""Lost responses: a write whose commit landed but whose caller saw an exception (the driver's
call into Spark or delta-rs raised after the commit) is retried. The retry adds no table version
and no row, and the failed call never deletes the files its own commit references."""

from __future__ import annotations

import datetime as dt

import pytest
from deltalake import DeltaTable

from mlcore.io import WriteToken
from mlcore.io.faults import AFTER_COMMIT_ENV, InjectedFault
from mlcore.runner import run_job
from tests.conftest import DAY_TABLE_SCHEMA
from tests.reliability.conftest import (
    ARGS,
    data_files,
    job_runs,
    lake_path,
    logged_files,
    registry,
    scan,
    versions_of,
)

pytestmark = pytest.mark.reliability

SCHEMA = DAY_TABLE_SCHEMA
DAY = dt.date(2024, 1, 1)


def rows(n: int, offset: int = 0) -> list[tuple]:
    return [(offset + i, f"s{i % 3}", DAY, float(i)) for i in range(n)]


def test_spark_write_that_raises_after_its_commit(spark, engine_tables, monkeypatch, engine):
    """On both engines: the engine finds its own commit (by write id) instead of failing or
    "cleaning up" the files the landed commit references."""
    from pyspark.sql.readwriter import DataFrameWriter

    tables = engine_tables
    uri = tables.ref("sales").uri
    tables.write(spark.createDataFrame(rows(10), SCHEMA), "sales")
    real_save = DataFrameWriter.save

    def save_then_lose_the_response(self, *args, **kwargs):
        real_save(self, *args, **kwargs)  # the commit lands ...
        raise ConnectionResetError("py4j: answer from the JVM lost")  # ... the answer does not

    token = WriteToken.for_job("lost_response", DAY)
    df = spark.createDataFrame(rows(25, 100), SCHEMA)
    with monkeypatch.context() as patched:
        patched.setattr(DataFrameWriter, "save", save_then_lose_the_response)
        result = tables.write(df, "sales", token=token)
    assert (result.version, result.committed, result.rows) == (1, True, 25)
    assert data_files(uri) == logged_files(uri), "every file of the landed commit is still there"
    assert len(scan(uri)) == 35

    retry = tables.write(df, "sales", token=token)
    assert (retry.version, retry.committed) == (1, False)
    assert versions_of(uri) == [0, 1] and len(scan(uri)) == 35


def test_injected_lost_response_then_retry(spark, engine_tables, monkeypatch):
    tables = engine_tables
    uri = tables.ref("sales").uri
    token = WriteToken.for_job("lost_response", DAY)
    df = spark.createDataFrame(rows(40), SCHEMA)
    monkeypatch.setenv(AFTER_COMMIT_ENV, "sales:raise")
    with pytest.raises(InjectedFault):
        tables.write(df, "sales", token=token)
    assert versions_of(uri) == [0] and len(scan(uri)) == 40  # it did commit
    retry = tables.write(df, "sales", token=token)  # the retry is a no-op, so no fault fires
    assert not retry.committed and versions_of(uri) == [0] and len(scan(uri)) == 40


def test_driver_side_commits_that_raise_after_landing(spark, tables, monkeypatch):
    """replace-where on a data column (write_deltalake) and merge (TableMerger) commit on the
    driver; an exception after their commit is recognised as a landed write."""
    import deltalake
    from deltalake.table import TableMerger

    uri = tables.ref("sales").uri
    tables.write(spark.createDataFrame(rows(9), SCHEMA), "sales")
    real_write, real_execute = deltalake.write_deltalake, TableMerger.execute

    def write_then_raise(*args, **kwargs):
        real_write(*args, **kwargs)
        raise TimeoutError("object store: response timed out")

    def execute_then_raise(self):
        real_execute(self)
        raise TimeoutError("object store: response timed out")

    replace_token = WriteToken.for_job("lost_replace", DAY)
    replacement = spark.createDataFrame([(500, "s1", DAY, 5.0)], SCHEMA)
    monkeypatch.setattr(deltalake, "write_deltalake", write_then_raise)
    landed = tables.write(
        replacement,
        "sales",
        mode="replace_where",
        replace_where={"store": "s1"},
        token=replace_token,
    )
    assert (landed.version, landed.committed) == (1, True)
    monkeypatch.setattr(deltalake, "write_deltalake", real_write)
    assert not tables.write(
        replacement,
        "sales",
        mode="replace_where",
        replace_where={"store": "s1"},
        token=replace_token,
    ).committed

    merge_token = WriteToken.for_job("lost_merge", DAY)
    upsert = spark.createDataFrame([(0, "s0", DAY, -1.0), (900, "s2", DAY, 9.0)], SCHEMA)
    monkeypatch.setattr(TableMerger, "execute", execute_then_raise)
    merged = tables.merge(upsert, "sales", keys=["id"], token=merge_token)
    assert (merged.version, merged.committed) == (2, True)
    monkeypatch.setattr(TableMerger, "execute", real_execute)
    assert not tables.merge(upsert, "sales", keys=["id"], token=merge_token).committed

    assert versions_of(uri) == [0, 1, 2]
    final = scan(uri).sort_values("id")
    assert final["id"].tolist() == [0, 2, 3, 5, 6, 8, 500, 900]
    assert final.loc[final["id"] == 0, "amount"].item() == -1.0
    assert DeltaTable(uri).history(1)[0]["operation"] == "MERGE"


def test_job_whose_commit_response_is_lost_is_rerun(spark, mlcore_home, monkeypatch, capsys):
    """ingest_bank: 'bank' commits, then the job sees an error (exit 1). The rerun skips the
    committed table, publishes the rest, and the rows still add up to the source exactly."""
    monkeypatch.setenv(AFTER_COMMIT_ENV, "bank:raise")
    assert run_job("ingest_bank", ARGS) == 1
    assert "lost response after the commit to bank" in capsys.readouterr().err
    bank, quarantine = lake_path(mlcore_home, "bank"), lake_path(mlcore_home, "bank_quarantine")
    assert versions_of(bank) == [0] and not quarantine.exists()

    monkeypatch.delenv(AFTER_COMMIT_ENV)
    assert run_job("ingest_bank", ARGS) == 0
    assert versions_of(bank) == [0], "the committed table was not written again"
    assert versions_of(quarantine) == [0]
    assert len(scan(bank)) + len(scan(quarantine)) == 800  # the test env's synthetic bank file
    assert not scan(bank).duplicated().any()
    (run,) = job_runs(registry(mlcore_home), "ingest_bank")
    assert run.info.status == "FINISHED" and run.data.tags["mlcore.attempts"] == "2"
