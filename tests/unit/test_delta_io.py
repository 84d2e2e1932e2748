"""Delta IO on the delta-rs engine: every write mode, read-back equality through Spark and
through deltalake, idempotency, atomicity on task failure, schema enforcement, replace-where."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    LongType,
    StructField,
    StructType,
    TimestampType,
)

from mlcore.io import (
    DeltaIOError,
    ReplaceWhereViolation,
    SchemaMismatchError,
    WriteToken,
)
from tests.conftest import DAY_TABLE_SCHEMA

SCHEMA = DAY_TABLE_SCHEMA
DAY1, DAY2, DAY3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)


def rows_for(day: dt.date, n: int, offset: int = 0) -> list[tuple]:
    return [(offset + i, f"s{i % 3}", day, float(offset + i) * 1.5) for i in range(n)]


def deltalake_frame(path: str | Path) -> pd.DataFrame:
    """Read through delta-rs's own engine (scan), independent of our Spark read path."""
    table = pa.table(DeltaTable(str(path)).scan())
    casts = [
        pa.field(f.name, pa.string()) if pa.types.is_string_view(f.type) else f for f in table.schema
    ]
    return table.cast(pa.schema(casts)).to_pandas()


def sorted_frame(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame.sort_values(by).reset_index(drop=True)


def data_files(path: str | Path) -> set[str]:
    root = Path(path)
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}


@pytest.fixture
def sales_uri(tables) -> str:
    return tables.ref("sales").uri


def test_the_suite_runs_on_the_engine_its_config_pins(tables, spark):
    assert tables.config.storage.delta_engine == "deltars"  # conf/test
    assert tables.engine_name == "deltars"


def test_append_then_read_back_identical_in_spark_and_deltalake(spark, tables, sales_uri):
    first = tables.write(spark.createDataFrame(rows_for(DAY1, 50), SCHEMA), "sales")
    second = tables.write(spark.createDataFrame(rows_for(DAY2, 30, 100), SCHEMA), "sales")
    assert (first.version, second.version) == (0, 1)
    assert first.committed and second.committed
    assert (first.rows, second.rows) == (50, 30)

    via_spark = sorted_frame(tables.read("sales").toPandas(), ["id"])
    via_deltalake = sorted_frame(deltalake_frame(sales_uri), ["id"])
    expected = sorted_frame(pd.DataFrame(rows_for(DAY1, 50) + rows_for(DAY2, 30, 100), columns=SCHEMA.fieldNames()), ["id"])
    assert len(via_spark) == 80
    pd.testing.assert_frame_equal(via_spark, via_deltalake, check_dtype=False)
    pd.testing.assert_frame_equal(via_spark, expected, check_dtype=False)
    assert tables.read_versions["sales"] == 1
    protocol = DeltaTable(sales_uri).protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)


def test_overwrite_replaces_everything_in_one_version(spark, tables, sales_uri):
    tables.write(spark.createDataFrame(rows_for(DAY1, 40), SCHEMA), "sales")
    result = tables.write(spark.createDataFrame(rows_for(DAY3, 7, 500), SCHEMA), "sales", mode="overwrite")
    assert result.version == 1
    back = tables.read("sales").toPandas()
    assert sorted(back["id"]) == list(range(500, 507))
    assert set(back["day"]) == {DAY3}
    # time travel still sees the old snapshot
    assert tables.read("sales", version=0).count() == 40


def test_rerun_with_same_token_adds_no_version_and_bumped_revision_does(spark, tables, sales_uri):
    df = spark.createDataFrame(rows_for(DAY1, 20), SCHEMA)
    token = WriteToken.for_job("ingest_sales", DAY1)
    first = tables.write(df, "sales", token=token)
    files_after_first = data_files(sales_uri)
    again = tables.write(df, "sales", token=token)
    assert first.committed and not again.committed
    assert again.version == first.version == 0
    assert DeltaTable(sales_uri).version() == 0
    assert data_files(sales_uri) == files_after_first
    assert tables.read("sales").count() == 20
    assert tables.already_written("sales", token)

    # A different run date is a different app id; a higher revision republishes.
    other_day = tables.write(df, "sales", token=WriteToken.for_job("ingest_sales", DAY2))
    republish = tables.write(df, "sales", token=WriteToken.for_job("ingest_sales", DAY1, revision=2))
    assert (other_day.version, republish.version) == (1, 2)
    assert DeltaTable(sales_uri).transaction_version("mlcore:ingest_sales:2024-01-01") == 2


def test_task_failure_mid_write_leaves_table_and_files_unchanged(spark, tables, sales_uri):
    tables.write(spark.createDataFrame(rows_for(DAY1, 10), SCHEMA), "sales")
    before_files = data_files(sales_uri)

    @F.udf(DoubleType())
    def explode_on_last(amount: float, ident: int) -> float:
        if ident == 399:
            raise RuntimeError("injected failure")
        return amount

    bad = spark.createDataFrame(rows_for(DAY2, 400, 0), SCHEMA).repartition(2)
    bad = bad.withColumn("amount", explode_on_last("amount", "id"))
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16")
    try:
        with pytest.raises(DeltaIOError, match="table left at version 0"):
            tables.write(bad, "sales")
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
    assert DeltaTable(sales_uri).version() == 0
    assert data_files(sales_uri) == before_files
    assert tables.read("sales").count() == 10


def test_retried_task_commits_once_and_leaves_only_committed_files(spark, tables, sales_uri):
    """local[2,2] retries a failed task: the output is exact and the failed attempt's file goes."""
    from pyspark import TaskContext

    @F.udf(DoubleType())
    def fail_first_attempt(amount: float, ident: int) -> float:
        context = TaskContext.get()
        if ident == 299 and context.attemptNumber() == 0:
            raise RuntimeError("injected failure on attempt 0")
        return amount

    df = spark.createDataFrame(rows_for(DAY1, 300), SCHEMA).repartition(2, "id")
    df = df.withColumn("amount", fail_first_attempt("amount", "id"))
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16")
    try:
        result = tables.write(df, "sales", token=WriteToken.for_job("retry", DAY1))
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
    assert result.committed and result.rows == 300
    back = tables.read("sales").toPandas()
    assert sorted(back["id"]) == list(range(300)), "no row lost or duplicated by the retry"
    logged = {a["path"] for a in pa.table(DeltaTable(sales_uri).get_add_actions(flatten=True)).to_pylist()}
    assert data_files(sales_uri) == logged


def test_schema_enforcement(spark, tables, sales_uri):
    tables.write(spark.createDataFrame(rows_for(DAY1, 5), SCHEMA), "sales")
    base = spark.createDataFrame(rows_for(DAY2, 5), SCHEMA)

    with pytest.raises(SchemaMismatchError, match=r"extra columns \['note'\]"):
        tables.write(base.withColumn("note", F.lit("x")), "sales")
    with pytest.raises(SchemaMismatchError, match=r"missing columns \['amount'\]"):
        tables.write(base.drop("amount"), "sales")
    with pytest.raises(SchemaMismatchError, match="amount: table double vs data string"):
        tables.write(base.withColumn("amount", F.col("amount").cast("string")), "sales")
    with pytest.raises(SchemaMismatchError, match="differing only in case"):
        tables.write(base.drop("amount").withColumn("AMOUNT", F.lit(1.0)), "sales")
    assert DeltaTable(sales_uri).version() == 0

    # Column order does not matter; schema evolution only when asked for.
    reordered = base.select("amount", "day", "store", "id")
    assert tables.write(reordered, "sales").version == 1
    evolved = tables.write(base.withColumn("note", F.lit("new")), "sales", merge_schema=True)
    assert evolved.committed
    back = tables.read("sales").toPandas()
    assert back["note"].isna().sum() == 10 and (back["note"] == "new").sum() == 5
    assert "note" in deltalake_frame(sales_uri).columns


def test_replace_where_on_partition_column_replaces_only_that_partition(spark, make_config):
    from mlcore.config.models import TableConfig
    from mlcore.io import DeltaTables

    config = make_config()
    config.tables["sales"] = TableConfig(path="sales", partition_by=["day"])
    tables = DeltaTables(spark, config)
    uri = tables.ref("sales").uri
    tables.write(spark.createDataFrame(rows_for(DAY1, 10) + rows_for(DAY2, 10, 100), SCHEMA), "sales")

    result = tables.write(
        spark.createDataFrame(rows_for(DAY2, 4, 900), SCHEMA),
        "sales",
        mode="replace_where",
        replace_where={"day": DAY2},
    )
    assert result.version == 1
    back = tables.read("sales").toPandas()
    assert sorted(back.loc[back["day"] == DAY2, "id"]) == [900, 901, 902, 903]
    assert sorted(back.loc[back["day"] == DAY1, "id"]) == list(range(10))
    assert DeltaTable(uri).metadata().partition_columns == ["day"]

    files_before = data_files(uri)
    outside = spark.createDataFrame(rows_for(DAY2, 3, 950) + rows_for(DAY3, 1, 990), SCHEMA)
    with pytest.raises(ReplaceWhereViolation, match="outside the replace-where predicate"):
        tables.write(outside, "sales", mode="replace_where", replace_where={"day": DAY2})
    assert DeltaTable(uri).version() == 1
    assert data_files(uri) == files_before

    # Partition pruning on read returns exactly the partition.
    assert tables.read("sales", where={"day": DAY1}).count() == 10


def test_replace_where_on_data_column(spark, tables, sales_uri):
    tables.write(spark.createDataFrame(rows_for(DAY1, 9), SCHEMA), "sales")
    replacement = spark.createDataFrame([(1000, "s1", DAY1, 1.0), (1001, "s1", DAY2, 2.0)], SCHEMA)
    result = tables.write(replacement, "sales", mode="replace_where", replace_where={"store": "s1"})
    assert result.version == 1
    back = tables.read("sales").toPandas()
    assert sorted(back.loc[back["store"] == "s1", "id"]) == [1000, 1001]
    assert len(back) == 6 + 2

    wrong = spark.createDataFrame([(2000, "s2", DAY1, 1.0)], SCHEMA)
    with pytest.raises(ReplaceWhereViolation, match="s2"):
        tables.write(wrong, "sales", mode="replace_where", replace_where={"store": "s1"})
    assert DeltaTable(sales_uri).version() == 1


def test_merge_updates_and_inserts_on_keys(spark, tables, sales_uri):
    tables.write(spark.createDataFrame(rows_for(DAY1, 5), SCHEMA), "sales")
    upsert = spark.createDataFrame([(1, "s1", DAY1, -1.0), (50, "s2", DAY2, 50.0)], SCHEMA)
    token = WriteToken.for_job("merge_test", DAY1)
    result = tables.merge(upsert, "sales", keys=["id"], token=token)
    assert result.committed and result.version == 1
    back = sorted_frame(tables.read("sales").toPandas(), ["id"])
    assert list(back["id"]) == [0, 1, 2, 3, 4, 50]
    assert back.loc[back["id"] == 1, "amount"].item() == -1.0
    assert tables.merge(upsert, "sales", keys=["id"], token=token).skipped
    assert DeltaTable(sales_uri).version() == 1

    dupes = spark.createDataFrame([(7, "a", DAY1, 1.0), (7, "b", DAY1, 2.0)], SCHEMA)
    with pytest.raises(DeltaIOError, match="duplicate keys"):
        tables.merge(dupes, "sales", keys=["id"])
    nulls = spark.createDataFrame([(None, "a", DAY1, 1.0)], SCHEMA)
    with pytest.raises(DeltaIOError, match="null keys"):
        tables.merge(nulls, "sales", keys=["id"])
    assert DeltaTable(sales_uri).version() == 1


PARTITION_VALUES = ["plain", "a b", "100%", "x=y", "é=1", "slash/and:colon", "日本", None]


def test_partition_values_with_special_characters_round_trip(spark, make_config):
    from mlcore.config.models import TableConfig
    from mlcore.io import DeltaTables

    config = make_config()
    config.tables["stores"] = TableConfig(path="stores", partition_by=["store"])
    tables = DeltaTables(spark, config)
    rows = [(i, value, DAY1, float(i)) for i, value in enumerate(PARTITION_VALUES * 3)]
    tables.write(spark.createDataFrame(rows, SCHEMA), "stores")
    uri = tables.ref("stores").uri

    via_spark = sorted_frame(tables.read("stores").toPandas(), ["id"])
    via_deltalake = sorted_frame(deltalake_frame(uri), ["id"])[via_spark.columns]
    pd.testing.assert_frame_equal(via_spark, via_deltalake, check_dtype=False)
    assert list(via_spark["store"].iloc[: len(PARTITION_VALUES)]) == PARTITION_VALUES
    assert tables.read("stores", where={"store": "100%"}).count() == 3
    assert tables.read("stores", where={"store": None}).count() == 3
    # Hive-escaped directories on disk, as Spark itself writes them.
    dirs = {p.name for p in Path(uri).iterdir() if p.is_dir() and p.name != "_delta_log"}
    assert "store=100%25" in dirs and "store=x%3Dy" in dirs and "store=__HIVE_DEFAULT_PARTITION__" in dirs


def test_timestamps_and_longs_round_trip_in_utc(spark, tables, sales_uri):
    schema = StructType([StructField("key", LongType()), StructField("at", TimestampType())])
    moment = dt.datetime(2024, 3, 31, 1, 30, 15, 123456, tzinfo=dt.timezone.utc)
    tables.write(spark.createDataFrame([(2**40, moment), (1, None)], schema), "sales")
    back = tables.read("sales").orderBy("key").collect()
    assert back[1]["key"] == 2**40
    assert back[1]["at"].replace(tzinfo=None) == moment.replace(tzinfo=None)
    raw = pa.table(DeltaTable(sales_uri).scan())
    assert raw.schema.field("at").type == pa.timestamp("us", tz="UTC")


def test_empty_dataframe_creates_table_with_schema(spark, tables, sales_uri):
    result = tables.write(spark.createDataFrame([], SCHEMA), "sales")
    assert result.version == 0 and result.rows == 0
    back = tables.read("sales")
    assert back.count() == 0
    assert back.schema.fieldNames() == SCHEMA.fieldNames()


def test_reading_missing_table_is_a_clear_error(tables):
    with pytest.raises(DeltaIOError, match="does not exist"):
        tables.read("bank")
    assert tables.version("bank") is None


def test_unknown_logical_table_is_rejected(tables, spark):
    with pytest.raises(KeyError, match="unknown logical table 'nope'"):
        tables.write(spark.createDataFrame([], SCHEMA), "nope")


def test_write_stats_are_recorded_for_data_skipping(spark, tables, sales_uri):
    tables.write(spark.createDataFrame(rows_for(DAY1, 12), SCHEMA).coalesce(1), "sales")
    actions = pa.table(DeltaTable(sales_uri).get_add_actions(flatten=True)).to_pylist()
    assert len(actions) == 1
    assert actions[0]["num_records"] == 12
    assert actions[0]["min.id"] == 0 and actions[0]["max.id"] == 11
    assert actions[0]["null_count.amount"] == 0


def test_write_from_a_thread_that_never_used_the_session(spark, tables):
    """Scorer threads (score_batch) have no active JVM session; writes must still find the source."""
    from pyspark import InheritableThread

    errors: list[BaseException] = []

    def work() -> None:
        try:
            tables.write(spark.range(3).withColumnRenamed("id", "n"), "sales_quarantine", mode="overwrite")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    thread = InheritableThread(target=work)
    thread.start()
    thread.join()
    assert errors == [] and tables.version("sales_quarantine") == 0
