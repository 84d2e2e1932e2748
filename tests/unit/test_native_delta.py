"""The native Spark Delta engine (``SparkDeltaEngine``) beyond what test_delta_engines.py covers.

Recording stand-ins for Spark's reader, writer and SQL check what the engine asks Spark
for: how cluster envs select it, how it reads, writes into existing tables and merges, and that a
session without the jars fails with a clear error. ``test_native_contract_*`` and the interop
tests write and read real tables through native Delta: the test session loads the Delta jars
that ``scripts/setup_env.sh`` cached from Maven Central (``spark.delta_jars``). They skip where
the jars cannot be had, and fail under ``CI=true`` (``tests.conftest.require_native_delta``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import subprocess
import sys

import pytest
from pyspark.sql.types import StringType, StructField, StructType

from mlcore.io import DeltaIOError, DeltaTables, ReplaceWhereViolation, SchemaMismatchError
from mlcore.io.errors import EngineUnavailableError
from mlcore.io.native_engine import NO_DELTA_JARS, SparkDeltaEngine
from mlcore.io.tables import TableRef, WriteToken
from tests.conftest import (
    CONF_DIR,
    DAY_TABLE_SCHEMA,
    DELTA_EXTENSION,
    REPO_ROOT,
    delta_unavailable_reason,
    require_native_delta,
)
from tests.unit.test_delta_engines import _RecordingWriter

DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"

SCHEMA = DAY_TABLE_SCHEMA
DAY1, DAY2, DAY3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)
PATH_TABLE = TableRef(name="sales", uri="/lake/sales", partition_by=("day",))
CATALOG_TABLE = TableRef(name="sales", uri="/lake/sales", catalog_name="main.mlcore.sales")
TOKEN = WriteToken.for_job("native_test", DAY1)


# ----------------------------------------------------------------------------------------------
# Recording stand-ins for the parts of Spark the native engine calls
# ----------------------------------------------------------------------------------------------
class _Conf(dict):
    def get(self, key, default=None):  # type: ignore[override]
        return super().get(key, default)

    def set(self, key, value):
        self[key] = value

    def unset(self, key):
        self.pop(key, None)


class _Writer(_RecordingWriter):
    """The engine tests' recording writer, plus ``saveAsTable`` (catalog tables)."""

    def saveAsTable(self, name):  # noqa: N802 - Spark's API
        self.log.append(("saveAsTable", name))
        if self.fail_with:
            raise self.fail_with


class _Frame:
    """A DataFrame stand-in: schema, columns, select (recorded, reorders) and write."""

    def __init__(self, schema: StructType, log: list, fail_with: Exception | None = None) -> None:
        self.schema = schema
        self.columns = schema.fieldNames()
        self.log = log
        self.fail_with = fail_with
        self.write = _Writer(log, fail_with)

    def select(self, *cols):
        names = [c.strip("`") for c in cols]
        self.log.append(("select", names))
        return _Frame(StructType([self.schema[n] for n in names]), self.log, self.fail_with)

    def filter(self, condition):
        self.log.append(("filter", str(condition)))
        return self

    def selectExpr(self, *exprs):  # noqa: N802 - Spark's API
        self.log.append(("selectExpr", list(exprs)))
        return self


class _Reader:
    def __init__(self, session: _Session) -> None:
        self.session = session

    def format(self, name):
        self.session.log.append(("read.format", name))
        return self

    def option(self, key, value):
        self.session.log.append(("read.option", key, value))
        return self

    def load(self, path):
        self.session.log.append(("read.load", path))
        return _Frame(self.session.table_schema, self.session.log)

    def table(self, name):
        self.session.log.append(("read.table", name))
        return _Frame(self.session.table_schema, self.session.log)


class _Session:
    """Just enough SparkSession for SparkDeltaEngine.read/write: spark.read and spark.conf."""

    def __init__(self, table_schema: StructType = SCHEMA) -> None:
        self.table_schema = table_schema
        self.log: list = []
        self.conf = _Conf()

    @property
    def read(self):
        return _Reader(self)


def _engine_with_table(session, versions, exists=True) -> SparkDeltaEngine:
    """A native engine over ``session`` whose table exists and reports ``versions`` in turn."""
    engine = SparkDeltaEngine(session)
    sequence = iter(versions)
    engine.exists = lambda table: exists  # type: ignore[method-assign]
    engine.version = lambda table: next(sequence)  # type: ignore[method-assign]
    engine._latest_version = lambda table: next(sequence)  # type: ignore[method-assign]
    engine._recent_commits = lambda table, count: _own_commit(session, versions)  # type: ignore[method-assign]
    return engine


def _own_commit(session, versions) -> list[dict]:
    """The Delta history a stand-in write leaves: its commit carrying the write's metadata, or
    (versions unchanged: Delta skipped the write) the earlier commit."""
    options = [entry[1] for entry in session.log if entry[0] == "options"][-1]
    committed = len(versions) > 1 and versions[-1] != versions[0]
    metadata = options["userMetadata"] if committed else "{}"
    return [{"version": versions[-1], "userMetadata": metadata, "operationMetrics": {}}]


# ----------------------------------------------------------------------------------------------
# Engine selection by config (cluster envs) and on a session without the jars
# ----------------------------------------------------------------------------------------------
class _NoProbeSession:
    """A session whose every use fails: selecting the engine from config must not touch it."""

    def __init__(self, conf: dict | None = None) -> None:
        self.conf = _Conf(conf or {})

    @property
    def read(self):
        raise AssertionError("the engine probe ran, but the config names the engine")


@pytest.mark.parametrize("env", ["databricks", "emr"])
def test_cluster_envs_select_native_delta_without_probing(env):
    from mlcore.config.loader import load_config

    config = load_config(env, conf_dir=CONF_DIR)
    assert config.storage.delta_engine == "spark", f"conf/{env} must pin the native engine"
    tables = DeltaTables(_NoProbeSession(), config)
    assert tables.engine_name == "spark"
    assert isinstance(tables._engine, SparkDeltaEngine)


def test_auto_reuses_the_sessions_recorded_choice_without_probing(make_config):
    config = make_config("storage.delta_engine=auto")
    tables = DeltaTables(_NoProbeSession({"mlcore.delta.engine": "spark"}), config)
    assert tables.engine_name == "spark" and isinstance(tables._engine, SparkDeltaEngine)


def test_native_engine_without_jars_fails_with_a_clear_error(spark, make_config, mlcore_home):
    """conf/databricks and conf/emr pin 'spark': on a cluster without Delta every table call
    must say so (not py4j's "'JavaPackage' object is not callable") and write nothing."""
    if delta_unavailable_reason(spark) is None:
        pytest.skip(
            "this session has the Delta jars; test_native_job_without_jars_fails_with_one_line "
            "runs the no-jars case in a job of its own"
        )
    tables = DeltaTables(spark, make_config(), engine="spark")
    assert isinstance(tables._engine, SparkDeltaEngine)
    df = spark.createDataFrame([(1, "s1", DAY1, 1.0)], SCHEMA)
    with pytest.raises(EngineUnavailableError, match="no Delta data source"):
        tables.read("sales")
    with pytest.raises(EngineUnavailableError, match="no Delta classes on the JVM classpath"):
        tables.version("sales")
    with pytest.raises(EngineUnavailableError) as write_error:
        tables.write(df, "sales", token=TOKEN)
    assert str(write_error.value) == NO_DELTA_JARS
    with pytest.raises(EngineUnavailableError, match="--with-delta"):
        tables.merge(df, "sales", keys=["id"])
    assert not (mlcore_home / "lake" / "sales").exists()
    assert tables.writes == []


def _launcher_argv(cache_dir) -> list[str]:
    out = subprocess.run(
        [str(REPO_ROOT / "spark-submit.sh"), "--print-command", "--with-delta", "ingest_bank",
         "--env", "test"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHON": sys.executable, "MLCORE_CACHE_DIR": str(cache_dir)},
    ).stdout  # fmt: skip
    return shlex.split(out)


def _after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, token in enumerate(argv) if token == flag]


def test_with_delta_launcher_uses_the_cached_jars_else_delta_spark_own_coordinate(tmp_path):
    """./spark-submit.sh --with-delta passes the jars setup_env.sh cached (--jars: no Ivy, no
    download per submit); without a cache it asks Ivy for exactly the artifact delta-spark's pip
    helper would (Spark major.minor + Scala 2.13 + the installed delta-spark version)."""
    pytest.importorskip(
        "importlib_metadata", reason="delta-spark's pip helper needs importlib_metadata"
    )
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    from mlcore.delta_jars import cached_jars

    builder = configure_spark_with_delta_pip(SparkSession.Builder())  # a private builder
    expected_package = builder._options["spark.jars.packages"]
    argv = _launcher_argv(tmp_path / "empty-cache")
    assert _after(argv, "--packages") == [expected_package] and not _after(argv, "--jars")
    confs = _after(argv, "--conf")
    assert f"spark.sql.extensions={DELTA_EXTENSION}" in confs
    assert f"spark.sql.catalog.spark_catalog={DELTA_CATALOG}" in confs

    jars = cached_jars()
    if jars is None:
        if os.environ.get("CI"):
            pytest.fail("setup_env.sh caches the Delta jars in CI")
        pytest.skip("no Delta jars cached here (python -m mlcore.delta_jars fetch)")
    from mlcore.cache import cache_dir

    argv = _launcher_argv(cache_dir())
    assert _after(argv, "--jars") == [",".join(jars.paths)] and not _after(argv, "--packages")
    assert f"spark.sql.extensions={DELTA_EXTENSION}" in _after(argv, "--conf")


# ----------------------------------------------------------------------------------------------
# Native read
# ----------------------------------------------------------------------------------------------
def test_native_read_time_travels_by_path_and_by_catalog_name(spark):
    session = _Session()
    engine = _engine_with_table(session, versions=[])
    df, version = engine.read(PATH_TABLE, version=3, where={"day": DAY1})
    assert version == 3, "an explicit version is returned as is (no extra history call)"
    assert session.log[:3] == [
        ("read.format", "delta"),
        ("read.option", "versionAsOf", 3),
        ("read.load", "/lake/sales"),
    ]
    assert session.log[3][0] == "filter" and "day" in session.log[3][1]

    session = _Session()
    engine = _engine_with_table(session, versions=[7])
    _, version = engine.read(CATALOG_TABLE)
    assert version == 7, "the latest version is looked up when none was asked for"
    assert session.log == [("read.format", "delta"), ("read.table", "main.mlcore.sales")]


# ----------------------------------------------------------------------------------------------
# Native write into an existing table
# ----------------------------------------------------------------------------------------------
def test_native_write_into_existing_table_aligns_columns_and_keeps_partitioning():
    session = _Session()
    engine = _engine_with_table(session, versions=[4, 5])
    data = _Frame(
        StructType([SCHEMA["amount"], SCHEMA["day"], SCHEMA["id"], SCHEMA["store"]]), session.log
    )
    result = engine.write(data, PATH_TABLE, "append", None, TOKEN, False, {"mlcore.job": "t"})
    assert ("select", ["id", "store", "day", "amount"]) in session.log, "table column order"
    assert not any(entry[0] == "partitionBy" for entry in session.log), "existing layout is kept"
    options = dict(e for e in session.log if e[0] == "options")["options"]
    metadata = json.loads(options["userMetadata"])
    assert options["txnAppId"] == TOKEN.app_id and metadata.pop("mlcore.job") == "t"
    assert set(metadata) == {"mlcore.write_id"}, "finds this write's commit among concurrent ones"
    assert ("save", "/lake/sales") in session.log
    assert (result.version, result.committed, result.engine) == (5, True, "spark")


def test_native_replayed_write_is_reported_as_skipped():
    """Delta drops a write whose txnAppId/txnVersion it already holds: no new version."""
    session = _Session()
    engine = _engine_with_table(session, versions=[2, 2])
    data = _Frame(SCHEMA, session.log)
    result = engine.write(data, PATH_TABLE, "append", None, TOKEN, False, {})
    assert (result.version, result.committed, result.skipped) == (2, False, True)


def test_native_schema_checks_run_before_the_writer():
    session = _Session()
    engine = _engine_with_table(session, versions=[1, 1])
    missing = _Frame(StructType(SCHEMA.fields[:3]), session.log)
    with pytest.raises(SchemaMismatchError, match=r"missing columns \['amount'\]"):
        engine.write(missing, PATH_TABLE, "append", None, None, False, {})
    extra = _Frame(StructType([*SCHEMA.fields, StructField("note", StringType())]), session.log)
    with pytest.raises(SchemaMismatchError, match=r"extra columns \['note'\]"):
        engine.write(extra, PATH_TABLE, "append", None, None, False, {})
    assert not any(entry[0] in ("save", "saveAsTable", "options") for entry in session.log)


def test_native_schema_evolution_appends_new_columns_after_the_tables():
    session = _Session()
    engine = _engine_with_table(session, versions=[1, 2])
    evolved = _Frame(StructType([StructField("note", StringType()), *SCHEMA.fields]), session.log)
    engine.write(evolved, CATALOG_TABLE, "append", None, None, True, {})
    assert ("select", ["id", "store", "day", "amount", "note"]) in session.log
    options = dict(e for e in session.log if e[0] == "options")["options"]
    assert options["mergeSchema"] == "true"
    assert ("saveAsTable", "main.mlcore.sales") in session.log
    assert ("read.table", "main.mlcore.sales") in session.log, "schema read from the catalog table"


def test_native_write_failure_names_the_unchanged_version():
    session = _Session()
    engine = _engine_with_table(session, versions=[6])
    data = _Frame(SCHEMA, session.log, fail_with=RuntimeError("executor lost\nstack..."))
    with pytest.raises(DeltaIOError, match="table left at version 6: executor lost$"):
        engine.write(data, PATH_TABLE, "overwrite", None, None, False, {})


# ----------------------------------------------------------------------------------------------
# Native merge
# ----------------------------------------------------------------------------------------------
class _MergeRecorder(_Session):
    """A session that records the Delta SQL it is sent and the session confs each statement
    saw; the engine's MERGE is SQL (it runs the same over Spark Connect)."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        super().__init__()
        self.fail_with = fail_with
        self.statements: list[str] = []
        self.confs_at_execute: dict | None = None

    def sql(self, statement):
        self.statements.append(statement)
        self.confs_at_execute = dict(self.conf)
        if self.fail_with:
            raise self.fail_with


def _merge_engine(spark, monkeypatch, recorder, versions):
    engine = SparkDeltaEngine(spark)
    sequence = iter(versions)
    monkeypatch.setattr(engine, "exists", lambda table: True)
    monkeypatch.setattr(engine, "version", lambda table: next(sequence))
    # Statements go to the recorder; the source DataFrame stays a real one (key checks, view).
    engine.spark = recorder
    return engine


def test_native_merge_is_an_upsert_with_txn_and_metadata_for_that_statement(spark, monkeypatch):
    session = _MergeRecorder()
    session.conf.set("unrelated.conf", "kept")
    engine = _merge_engine(spark, monkeypatch, session, versions=[3, 4])
    source = spark.createDataFrame([(1, "s1", DAY1, 2.0), (2, "s2", DAY1, 3.0)], SCHEMA)
    result = engine.merge(source, PATH_TABLE, ["id", "day"], TOKEN, {"mlcore.job": "m"})
    (statement,) = session.statements
    view = statement.split(" USING ")[1].split(" AS s ")[0]
    assert statement == (
        f"MERGE INTO delta.`/lake/sales` AS t USING {view} AS s "
        "ON t.`id` = s.`id` AND t.`day` = s.`day` "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )
    assert view.startswith("mlcore_merge_source_")
    assert not spark.catalog.tableExists(view), "the source view is dropped after the merge"
    seen = session.confs_at_execute
    assert seen[TXN_APP_ID] == TOKEN.app_id and seen[TXN_VERSION] == "1"
    assert json.loads(seen[USER_METADATA]) == {"mlcore.job": "m"}
    assert dict(session.conf) == {"unrelated.conf": "kept"}, "statement confs are unset after"
    assert (result.version, result.committed) == (4, True)


def test_native_merge_names_a_catalog_table_by_its_catalog_name(spark, monkeypatch):
    session = _MergeRecorder()
    engine = _merge_engine(spark, monkeypatch, session, versions=[1, 2])
    source = spark.createDataFrame([(1, "s1", DAY1, 2.0)], SCHEMA)
    engine.merge(source, CATALOG_TABLE, ["id"], None, {})
    assert session.statements[0].startswith("MERGE INTO main.mlcore.sales AS t USING ")


def test_native_merge_unsets_its_confs_when_the_merge_fails(spark, monkeypatch):
    session = _MergeRecorder(fail_with=RuntimeError("concurrent update"))
    engine = _merge_engine(spark, monkeypatch, session, versions=[3])
    source = spark.createDataFrame([(1, "s1", DAY1, 2.0)], SCHEMA)
    with pytest.raises(RuntimeError, match="concurrent update"):
        engine.merge(source, PATH_TABLE, ["id"], TOKEN, {"mlcore.job": "m"})
    assert dict(session.conf) == {}
    view = session.statements[0].split(" USING ")[1].split(" AS s ")[0]
    assert not spark.catalog.tableExists(view)


def test_native_merge_rejects_bad_sources_before_touching_the_table(spark, monkeypatch):
    session = _MergeRecorder()
    engine = _merge_engine(spark, monkeypatch, session, versions=[3, 3])
    dupes = spark.createDataFrame([(7, "a", DAY1, 1.0), (7, "b", DAY1, 2.0)], SCHEMA)
    with pytest.raises(DeltaIOError, match="duplicate keys"):
        engine.merge(dupes, PATH_TABLE, ["id"], TOKEN, {})
    with pytest.raises(DeltaIOError, match="key column 'nope' not in data"):
        engine.merge(dupes, PATH_TABLE, ["nope"], TOKEN, {})
    assert session.statements == [] and dict(session.conf) == {}


def test_native_merge_into_a_missing_table_is_an_idempotent_append(spark, monkeypatch):
    engine = SparkDeltaEngine(spark)
    monkeypatch.setattr(engine, "exists", lambda table: False)
    calls = []
    monkeypatch.setattr(engine, "write", lambda *args: calls.append(args) or "written")
    source = spark.createDataFrame([(1, "s1", DAY1, 2.0)], SCHEMA)
    assert engine.merge(source, PATH_TABLE, ["id"], TOKEN, {"k": "v"}) == "written"
    ((_, table, mode, replace_where, token, merge_schema, metadata),) = calls
    assert (table, mode, replace_where, token, merge_schema, metadata) == (
        PATH_TABLE,
        "append",
        None,
        TOKEN,
        False,
        {"k": "v"},
    )


# ----------------------------------------------------------------------------------------------
# Contract: real tables through the native engine (only where the Delta jars are loaded)
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def native_tables(spark, make_config):
    require_native_delta(spark)
    from mlcore.config.models import TableConfig

    config = make_config()
    config.tables["sales"] = TableConfig(path="sales", partition_by=["day"])
    return DeltaTables(
        spark, config, engine="spark", commit_metadata={"mlcore.job": "native_contract"}
    )


def _rows(day: dt.date, n: int, offset: int = 0) -> list[tuple]:
    return [(offset + i, f"s{i % 3}", day, float(offset + i)) for i in range(n)]


def test_native_contract_write_replay_read_and_time_travel(spark, native_tables):
    from deltalake import DeltaTable

    tables = native_tables
    uri = tables.ref("sales").uri
    df = spark.createDataFrame(_rows(DAY1, 10) + _rows(DAY2, 10, 100), SCHEMA)
    token = WriteToken.for_job("native_contract", DAY1)
    assert not tables.already_written("sales", token)
    first = tables.write(df, "sales", token=token)
    assert tables.already_written("sales", token), "a replayed job skips its work up front"
    again = tables.write(df, "sales", token=token)
    assert (first.engine, first.version, first.committed) == ("spark", 0, True)
    assert (again.version, again.committed) == (0, False), "Delta skipped the replayed txn"
    back = tables.read("sales").toPandas()
    assert sorted(back["id"]) == list(range(10)) + list(range(100, 110))
    assert tables.read_versions["sales"] == 0
    assert tables.read("sales", where={"day": DAY2}).count() == 10

    tables.write(spark.createDataFrame(_rows(DAY3, 5, 200), SCHEMA), "sales")
    assert tables.read("sales", version=0).count() == 20
    assert tables.read("sales").count() == 25

    # The native table is a plain protocol 1/2 Delta table that delta-rs reads, token included.
    rs = DeltaTable(uri)
    assert rs.version() == 1
    assert (rs.protocol().min_reader_version, rs.protocol().min_writer_version) == (1, 2)
    assert rs.metadata().partition_columns == ["day"]
    assert rs.transaction_version(token.app_id) == 1
    first_commit = rs.history()[-1]
    assert json.loads(first_commit["userMetadata"])["mlcore.job"] == "native_contract"


def test_native_contract_replace_where_and_schema_rules(spark, native_tables):
    tables = native_tables
    tables.write(spark.createDataFrame(_rows(DAY1, 10) + _rows(DAY2, 10, 100), SCHEMA), "sales")
    replaced = tables.write(
        spark.createDataFrame(_rows(DAY2, 4, 900), SCHEMA),
        "sales",
        mode="replace_where",
        replace_where={"day": DAY2},
    )
    assert replaced.version == 1
    back = tables.read("sales").toPandas()
    assert sorted(back.loc[back["day"] == DAY2, "id"]) == [900, 901, 902, 903]
    assert sorted(back.loc[back["day"] == DAY1, "id"]) == list(range(10))

    outside = spark.createDataFrame(_rows(DAY2, 2, 950) + _rows(DAY3, 1, 990), SCHEMA)
    with pytest.raises(ReplaceWhereViolation):
        tables.write(outside, "sales", mode="replace_where", replace_where={"day": DAY2})
    with pytest.raises(SchemaMismatchError, match="missing columns"):
        tables.write(spark.createDataFrame(_rows(DAY3, 2), SCHEMA).drop("amount"), "sales")
    assert tables.version("sales") == 1

    from pyspark.sql import functions as F

    evolved = spark.createDataFrame(_rows(DAY3, 2, 300), SCHEMA).withColumn("note", F.lit("new"))
    assert tables.write(evolved, "sales", merge_schema=True).version == 2
    assert tables.read("sales").filter("note = 'new'").count() == 2


def test_native_contract_merge_upserts_once(spark, native_tables):
    from deltalake import DeltaTable

    tables = native_tables
    tables.write(spark.createDataFrame(_rows(DAY1, 5), SCHEMA), "sales")
    upsert = spark.createDataFrame([(1, "s1", DAY1, -1.0), (50, "s2", DAY2, 50.0)], SCHEMA)
    token = WriteToken.for_job("native_merge", DAY1)
    merged = tables.merge(upsert, "sales", keys=["id"], token=token)
    assert (merged.version, merged.committed) == (1, True)
    assert tables.merge(upsert, "sales", keys=["id"], token=token).skipped
    back = tables.read("sales").toPandas().sort_values("id")
    assert list(back["id"]) == [0, 1, 2, 3, 4, 50]
    assert back.loc[back["id"] == 1, "amount"].item() == -1.0
    merge_commit = DeltaTable(tables.ref("sales").uri).history(1)[0]
    assert json.loads(merge_commit["userMetadata"])["mlcore.job"] == "native_contract"
    assert spark.conf.get(TXN_APP_ID, None) is None and spark.conf.get(USER_METADATA, None) is None


def test_native_job_without_jars_fails_with_one_line(mlcore_home):
    """A job pinned to native Delta in a session started without the jars: exit 1, one line
    that says what is missing, no traceback, nothing written."""
    args = ["--env", "test", "--conf-dir", str(CONF_DIR), "--run-date", "2015-06-14",
            "--set", "storage.delta_engine=spark", "--set", "spark.delta_jars=false"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "jobs" / "ingest_bank.py"), *args],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env={**os.environ, "MLCORE_HOME": str(mlcore_home)},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    failed = [line for line in done.stderr.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "Delta" in failed[0], done.stderr[-2000:]
    assert not (mlcore_home / "lake" / "bank" / "_delta_log").exists()


@pytest.mark.parametrize(("writer", "other"), [("spark", "deltars"), ("deltars", "spark")])
def test_interop_each_engine_reads_appends_merges_and_time_travels_the_others_table(
    writer, other, spark, make_config
):
    """A table written by one engine is read, appended to, merged into and time-travelled by the
    other, with its partition column, dates and UTC timestamps intact and a protocol both can
    still write (1/2: neither engine enables a feature the other lacks)."""
    import pandas as pd
    from deltalake import DeltaTable
    from pyspark.sql.types import (
        DateType,
        DoubleType,
        LongType,
        TimestampType,
    )

    require_native_delta(spark)
    from mlcore.config.models import TableConfig

    config = make_config()
    config.tables["events"] = TableConfig(path="events", partition_by=["day"])
    first = DeltaTables(spark, config, engine=writer)
    second = DeltaTables(spark, config, engine=other)
    schema = StructType([
        StructField("id", LongType()), StructField("store", StringType()),
        StructField("day", DateType()), StructField("at", TimestampType()),
        StructField("amount", DoubleType()),
    ])  # fmt: skip
    at = dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.timezone.utc)  # a DST night in Europe

    def rows(ids, day, amount):
        return [(i, f"s{i % 2}", day, at + dt.timedelta(hours=i), amount + i) for i in ids]

    def frame(version=None, tables=first) -> pd.DataFrame:
        out = tables.read("events", version=version).toPandas().sort_values("id")
        return out.reset_index(drop=True)

    first.write(spark.createDataFrame(rows(range(4), DAY1, 0.0), schema), "events")
    seen = frame(tables=second)
    assert list(seen["id"]) == [0, 1, 2, 3] and set(seen["day"]) == {DAY1}
    assert pd.Timestamp(seen.loc[1, "at"]).tz_localize("UTC") == pd.Timestamp(at + dt.timedelta(hours=1))

    second.write(spark.createDataFrame(rows(range(4, 6), DAY2, 0.0), schema), "events")
    upsert = spark.createDataFrame(rows([1], DAY1, 100.0) + rows([9], DAY3, 0.0), schema)
    merged = second.merge(upsert, "events", keys=["id"])
    assert merged.committed
    now = frame()
    assert list(now["id"]) == [0, 1, 2, 3, 4, 5, 9]
    assert now.loc[now["id"] == 1, "amount"].item() == 101.0
    assert sorted(set(now["day"])) == [DAY1, DAY2, DAY3]
    assert list(frame(version=0)["id"]) == [0, 1, 2, 3], "time travel to the first engine's v0"
    assert list(frame(version=0, tables=second)["amount"]) == [0.0, 1.0, 2.0, 3.0]

    # Still writable by the first engine, and a plain protocol 1/2 table.
    first.write(spark.createDataFrame(rows([20], DAY2, 0.0), schema), "events")
    table = DeltaTable(first.ref("events").uri)
    assert (table.protocol().min_reader_version, table.protocol().min_writer_version) == (1, 2)
    assert table.metadata().partition_columns == ["day"]
    assert table.version() == 3 and len(frame(tables=second)) == 8


def test_string_columns_are_recast_by_name_for_the_table_schema(spark):
    """Over Spark Connect a Python UDF's strings carry an explicit collation that native Delta
    would write into the table schema (unreadable by delta-rs); the write recasts every
    string-bearing column, nested ones included, by its type's SQL name and leaves others be."""
    from pyspark.sql.types import ArrayType, LongType, MapType

    from mlcore.io.schema import with_default_string_types

    schema = StructType([
        StructField("id", LongType()),
        StructField("name", StringType()),
        StructField("tags", ArrayType(StringType())),
        StructField("attrs", MapType(StringType(), LongType())),
        StructField("nested", StructType([StructField("code", StringType())])),
    ])  # fmt: skip
    frame = _Frame(schema, [])
    with_default_string_types(frame)
    assert frame.log == [("selectExpr", [
        "`id`",
        "CAST(`name` AS string) AS `name`",
        "CAST(`tags` AS array<string>) AS `tags`",
        "CAST(`attrs` AS map<string,bigint>) AS `attrs`",
        "CAST(`nested` AS struct<code:string>) AS `nested`",
    ])]  # fmt: skip
    real = spark.createDataFrame([(1, "a", ["x"], {"k": 1}, ("c",))], schema)
    recast = with_default_string_types(real)
    assert recast.schema == real.schema and recast.collect() == real.collect()
    numbers = spark.range(2)
    assert with_default_string_types(numbers) is numbers, "nothing to recast: the same frame"
