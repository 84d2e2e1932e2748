"""Engine selection and the native Spark Delta code path, exercised without the Delta jars:
the probe's error classification, the options a native write sets, and the native engine's
calls against a recording stand-in for DataFrameWriter."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlcore.io.engines import detect_engine, is_data_source_not_found
from mlcore.io.errors import ReplaceWhereViolation
from mlcore.io.native_engine import SparkDeltaEngine, native_merge_condition, native_write_plan
from mlcore.io.predicates import to_partition_filters, to_sql
from mlcore.io.tables import TableRef, WriteToken

TABLE = TableRef(name="sales", uri="/lake/sales", partition_by=("run_date",))
TOKEN = WriteToken.for_job("train_forecasts", dt.date(2015, 6, 14))


class _FakeError(Exception):
    def __init__(self, condition: str | None, text: str = "boom") -> None:
        super().__init__(text)
        self._condition = condition

    def getCondition(self) -> str | None:  # noqa: N802 - mirrors PySparkException
        return self._condition


class _FakeConf(dict):
    def get(self, key, default=None):  # type: ignore[override]
        return super().get(key, default)

    def set(self, key, value):
        self[key] = value

    def unset(self, key):
        self.pop(key, None)


class _ProbeSession:
    """Just enough of SparkSession for detect_engine: read.format(...).load() raises."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.conf = _FakeConf()
        self.loads = 0

    @property
    def read(self):
        return self

    def format(self, name):
        assert name == "delta"
        return self

    def load(self, path):
        self.loads += 1
        assert path.startswith("/nonexistent/")
        if self.error:
            raise self.error


def test_probe_classifies_missing_data_source_as_deltars():
    session = _ProbeSession(_FakeError("DATA_SOURCE_NOT_FOUND"))
    assert detect_engine(session) == "deltars"
    assert detect_engine(session) == "deltars"
    assert session.loads == 1, "probe result is cached per session"


def test_probe_treats_any_other_error_as_native_delta():
    session = _ProbeSession(_FakeError("PATH_NOT_FOUND", "Path does not exist"))
    assert detect_engine(session) == "spark"


def test_explicit_engine_skips_the_probe_and_bad_names_fail():
    session = _ProbeSession(_FakeError("DATA_SOURCE_NOT_FOUND"))
    assert detect_engine(session, "spark") == "spark"
    assert session.loads == 0
    with pytest.raises(ValueError, match="unknown delta engine"):
        detect_engine(session, "duckdb")


def test_error_classification_falls_back_to_message_text():
    assert is_data_source_not_found(RuntimeError("[DATA_SOURCE_NOT_FOUND] Failed to find data source: delta"))
    assert not is_data_source_not_found(RuntimeError("[PATH_NOT_FOUND] /nonexistent"))


def test_real_session_resolves_auto_by_its_delta_jars(spark):
    """``auto`` is native Delta exactly when the session has the Delta data source."""
    from tests.unit.test_native_delta import delta_unavailable_reason

    spark.conf.unset("mlcore.delta.engine")
    expected = "deltars" if delta_unavailable_reason(spark) else "spark"
    assert detect_engine(spark) == expected
    spark.conf.unset("mlcore.delta.engine")


def test_native_plan_for_idempotent_replace_where():
    plan = native_write_plan(
        TABLE,
        "replace_where",
        {"run_date": dt.date(2015, 6, 14), "store": [1, 2]},
        TOKEN,
        merge_schema=False,
        metadata={"mlcore.job": "train_forecasts"},
        table_exists=True,
    )
    assert plan["format"] == "delta" and plan["mode"] == "overwrite"
    assert plan["options"]["txnAppId"] == "mlcore:train_forecasts:2015-06-14"
    assert plan["options"]["txnVersion"] == "1"
    assert plan["options"]["replaceWhere"] == "`run_date` = DATE '2015-06-14' AND `store` IN (1, 2)"
    assert json.loads(plan["options"]["userMetadata"]) == {"mlcore.job": "train_forecasts"}
    assert plan["partition_by"] == [], "existing tables keep their partitioning"
    assert plan["target"] == ("path", "/lake/sales")


def test_native_plan_for_new_table_append_partitions_and_catalog_names():
    table = TableRef(name="sales", uri="/lake/sales", catalog_name="main.ml.sales", partition_by=("day",))
    plan = native_write_plan(table, "append", None, None, True, {}, table_exists=False)
    assert plan["mode"] == "append"
    assert plan["options"]["mergeSchema"] == "true"
    assert "txnAppId" not in plan["options"]
    assert plan["partition_by"] == ["day"]
    assert plan["target"] == ("table", "main.ml.sales")
    with pytest.raises(ValueError, match="needs a replace_where predicate"):
        native_write_plan(table, "replace_where", None, None, False, {}, table_exists=True)


def test_predicate_rendering_quotes_literals_and_rejects_bad_identifiers():
    predicate = {"name": "O'Brien", "day": dt.date(2024, 1, 2)}
    assert to_sql(predicate, "spark") == "`name` = 'O''Brien' AND `day` = DATE '2024-01-02'"
    assert to_sql(predicate, "deltars") == "\"name\" = 'O''Brien' AND \"day\" = '2024-01-02'"
    assert to_sql({"note": None}, "spark") == "`note` IS NULL"
    assert to_partition_filters({"day": dt.date(2024, 1, 2), "s": ["a", "b"]}) == [
        ("day", "=", "2024-01-02"),
        ("s", "in", ["a", "b"]),
    ]
    for bad in ("a; DROP TABLE x", "x`y", "1' OR '1'='1"):
        with pytest.raises(ValueError, match="invalid column name"):
            to_sql({bad: 1}, "spark")
    assert native_merge_condition(["store", "ds"]) == "t.`store` = s.`store` AND t.`ds` = s.`ds`"


class _RecordingWriter:
    def __init__(self, log: list, fail_with: Exception | None = None) -> None:
        self.log = log
        self.fail_with = fail_with

    def format(self, name):
        self.log.append(("format", name))
        return self

    def mode(self, mode):
        self.log.append(("mode", mode))
        return self

    def options(self, **options):
        self.log.append(("options", options))
        return self

    def partitionBy(self, *cols):  # noqa: N802 - Spark's API
        self.log.append(("partitionBy", cols))
        return self

    def save(self, path):
        self.log.append(("save", path))
        if self.fail_with:
            raise self.fail_with


class _RecordingFrame:
    def __init__(self, spark, log, fail_with=None):
        from pyspark.sql.types import IntegerType, StructField, StructType

        self.schema = StructType([StructField("run_date", IntegerType()), StructField("y", IntegerType())])
        self.columns = self.schema.fieldNames()
        self.write = _RecordingWriter(log, fail_with)


def test_native_engine_write_issues_delta_writer_calls(monkeypatch, spark):
    log: list = []
    versions = iter([0])  # only read after the write: the table did not exist before
    engine = SparkDeltaEngine(spark)
    monkeypatch.setattr(engine, "exists", lambda table: False)
    monkeypatch.setattr(engine, "version", lambda table: next(versions))
    monkeypatch.setattr(engine, "_recent_commits", lambda table, count: _own_commit(log, 0))
    result = engine.write(_RecordingFrame(spark, log), TABLE, "append", None, TOKEN, False, {"k": "v"})
    assert ("format", "delta") in log and ("mode", "append") in log
    assert ("partitionBy", ("run_date",)) in log
    assert ("save", "/lake/sales") in log
    options = dict(log)["options"]
    assert options["txnAppId"] == TOKEN.app_id and options["txnVersion"] == "1"
    assert result.committed and result.version == 0 and result.engine == "spark"


def _own_commit(log: list, version: int) -> list[dict]:
    """The Delta history a recorded write leaves: its commit, carrying the write's metadata."""
    options = dict(log)["options"]
    return [{"version": version, "userMetadata": options["userMetadata"], "operationMetrics": {}}]


def test_native_engine_maps_replace_where_mismatch(monkeypatch, spark):
    engine = SparkDeltaEngine(spark)
    monkeypatch.setattr(engine, "exists", lambda table: False)
    monkeypatch.setattr(engine, "version", lambda table: None)
    frame = _RecordingFrame(spark, [], fail_with=RuntimeError("[DELTA_REPLACE_WHERE_MISMATCH] rows"))
    with pytest.raises(ReplaceWhereViolation, match="DELTA_REPLACE_WHERE_MISMATCH"):
        engine.write(frame, TABLE, "replace_where", {"run_date": 1}, None, False, {})


class _UntransformedFrame:
    """A frame whose ``mapInArrow`` yields the recording frame (what the native write gets)."""

    def __init__(self, transformed) -> None:
        self.transformed = transformed
        self.calls: list = []

    def mapInArrow(self, fn, schema):  # noqa: N802 - Spark's API
        self.calls.append((fn, schema))
        return self.transformed


def test_native_engine_runs_a_transform_inside_the_delta_write(monkeypatch, spark):
    """Native Delta keeps its own write path: the transform is a mapInArrow in the written
    plan (no fused write), and the write reports no totals (callers read the table back)."""
    from pyspark.sql.types import IntegerType, StructField, StructType

    from mlcore.io import ArrowTransform

    log: list = []
    engine = SparkDeltaEngine(spark)
    monkeypatch.setattr(engine, "exists", lambda table: False)
    monkeypatch.setattr(engine, "version", lambda table: 0)
    monkeypatch.setattr(engine, "_recent_commits", lambda table, count: _own_commit(log, 0))
    schema = StructType([StructField("run_date", IntegerType()), StructField("y", IntegerType())])
    transform = ArrowTransform(lambda batches: batches, schema)
    frame = _UntransformedFrame(_RecordingFrame(spark, log))
    result = engine.write(
        frame, TABLE, "replace_where", {"run_date": 1}, TOKEN, False, {}, transform=transform, totals=["y"]
    )
    assert frame.calls == [(transform.fn, schema)]
    assert ("format", "delta") in log and dict(log)["options"]["replaceWhere"] == "`run_date` = 1"
    assert result.totals is None and result.rows is None


def test_native_merge_sets_txn_confs_only_for_the_statement(spark):
    engine = SparkDeltaEngine(spark)
    session = _ProbeSession(None)
    engine.spark = session
    with engine._session_txn(TOKEN):
        assert session.conf["spark.databricks.delta.write.txnAppId"] == TOKEN.app_id
        assert session.conf["spark.databricks.delta.write.txnVersion"] == "1"
    assert "spark.databricks.delta.write.txnAppId" not in session.conf


class _FakeDeltaTable:
    """Stands in for deltalake.DeltaTable in the read gates (live DVs can't be made here)."""

    def __init__(self, reader_features=None, configuration=None, dv_rows=0):
        import pyarrow as pa

        self._protocol = type("P", (), {"reader_features": reader_features})()
        self._metadata = type("M", (), {"configuration": configuration or {}})()
        self._dvs = pa.table({"filepath": ["f"] * dv_rows})

    def protocol(self):
        return self._protocol

    def metadata(self):
        return self._metadata

    def deletion_vectors(self):
        return self._dvs


def test_read_gates_refuse_tables_a_parquet_scan_would_misread():
    from mlcore.io.engines import DeltaRsEngine
    from mlcore.io.errors import UnsupportedTableError

    DeltaRsEngine.check_readable(_FakeDeltaTable(), "t")
    DeltaRsEngine.check_readable(_FakeDeltaTable(["deletionVectors", "timestampNtz"]), "t")
    with pytest.raises(UnsupportedTableError, match="live deletion vectors"):
        DeltaRsEngine.check_readable(_FakeDeltaTable(["deletionVectors"], dv_rows=2), "t")
    with pytest.raises(UnsupportedTableError, match="column mapping"):
        DeltaRsEngine.check_readable(_FakeDeltaTable(configuration={"delta.columnMapping.mode": "name"}), "t")
    with pytest.raises(UnsupportedTableError, match="typeWidening"):
        DeltaRsEngine.check_readable(_FakeDeltaTable(["typeWidening"]), "t")
