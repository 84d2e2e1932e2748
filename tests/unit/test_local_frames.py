"""Driver-local frames (``local_frame``) and the delta-rs engine's driver write of them: same
values as ``createDataFrame``, no writer tasks, the same Delta table as the task path, and the
merge source checks on the collected rows."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from deltalake import DeltaTable

from mlcore.io import DeltaIOError, WriteToken
from mlcore.io.frames import is_driver_local, local_frame
from tests.conftest import DAY_TABLE_SCHEMA

DAY1, DAY2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
RICH_DDL = "a int, b string, d date, t timestamp, m map<string,string>, x double, l array<string>"


def rows_for(day: dt.date, n: int, offset: int = 0) -> list[tuple]:
    return [(offset + i, f"s{i % 3}", day, float(offset + i) * 1.5) for i in range(n)]


@pytest.fixture
def tables(spark, make_config):
    """DeltaTables with ``sales`` and ``sales_task`` partitioned by ``day``."""
    from mlcore.config.models import TableConfig
    from mlcore.io import DeltaTables

    config = make_config()
    config.tables["sales"] = TableConfig(path="sales", partition_by=["day"])
    config.tables["sales_task"] = TableConfig(path="sales_task", partition_by=["day"])
    return DeltaTables(spark, config)


def jobs_run_by(spark, action) -> list[int]:
    """Spark job ids started while ``action()`` ran (tagged with a fresh job group)."""
    group = f"probe-{uuid.uuid4().hex}"
    sc = spark.sparkContext
    sc.setJobGroup(group, "probe")
    try:
        action()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    return list(sc.statusTracker().getJobIdsForGroup(group))


def test_local_frame_has_create_dataframe_values_and_is_local(spark):
    rows = [
        (1, "x", DAY1, dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), {"k": "v"}, None, ["p"]),
        (None, None, None, dt.datetime(2021, 5, 6, 7, 8, 9), None, 2.5, None),  # naive = local time
    ]
    local = local_frame(spark, rows, RICH_DDL)
    parallel = spark.createDataFrame(rows, RICH_DDL)
    assert local.schema == parallel.schema
    assert local.collect() == parallel.collect()
    assert is_driver_local(local) and is_driver_local(local.select("b", "a"))
    assert not is_driver_local(parallel)
    by_name = local_frame(spark, [{"b": "y", "a": 2}], "a int, b string")
    assert [tuple(r) for r in by_name.collect()] == [(2, "y")]
    with pytest.raises(ValueError, match="not in the schema"):
        local_frame(spark, [{"a": 1, "zz": 2}], "a int")
    with pytest.raises((TypeError, ValueError)):  # Arrow refuses, never a silent null
        local_frame(spark, [("not a number",)], "a int")


def test_driver_write_is_used_for_local_rows_and_matches_the_task_path(
    spark, tables, monkeypatch
):
    from mlcore.io.engines import DeltaRsEngine

    driver_writes: list[str] = []
    original = DeltaRsEngine._driver_write

    def spy(self, df, target, options):
        driver_writes.append(options.table_uri)
        return original(self, df, target, options)

    monkeypatch.setattr(DeltaRsEngine, "_driver_write", spy)
    local = local_frame(spark, rows_for(DAY1, 6) + rows_for(DAY2, 2, 50), DAY_TABLE_SCHEMA)
    jobs = jobs_run_by(spark, lambda: tables.write(local, "sales", mode="append"))
    assert driver_writes == [tables.ref("sales").uri]
    assert len(jobs) <= 1  # at most the JVM-only collection of the local rows: no writer tasks
    # the same rows through the Spark task path (Python writer tasks) into another table
    parallel = spark.createDataFrame(rows_for(DAY1, 6) + rows_for(DAY2, 2, 50), DAY_TABLE_SCHEMA)
    assert jobs_run_by(spark, lambda: tables.write(parallel, "sales_task", mode="append"))
    assert driver_writes == [tables.ref("sales").uri]
    ours, theirs = DeltaTable(tables.ref("sales").uri), DeltaTable(tables.ref("sales_task").uri)
    assert ours.schema().to_arrow() == theirs.schema().to_arrow()
    assert ours.metadata().partition_columns == theirs.metadata().partition_columns
    key = ["id"]
    assert (
        ours.to_pandas().sort_values(key).reset_index(drop=True)
        .equals(theirs.to_pandas().sort_values(key).reset_index(drop=True))
    )
    assert ours.metadata().partition_columns == ["day"]
    assert ours.history(1)[0]["mlcore.rows"] == "8"


def test_driver_write_keeps_replace_where_token_and_violation_checks(spark, tables):
    token = WriteToken.for_job("local_write", DAY2)
    tables.write(local_frame(spark, rows_for(DAY1, 3), DAY_TABLE_SCHEMA), "sales")
    day2 = local_frame(spark, rows_for(DAY2, 4, offset=10), DAY_TABLE_SCHEMA)
    first = tables.write(day2, "sales", mode="replace_where", replace_where={"day": DAY2}, token=token)
    assert first.committed and first.rows == 4
    again = tables.write(day2, "sales", mode="replace_where", replace_where={"day": DAY2}, token=token)
    assert not again.committed  # idempotent: the token is in the table
    version = DeltaTable(tables.ref("sales").uri).version()
    wrong_day = local_frame(spark, rows_for(DAY1, 1, offset=99), DAY_TABLE_SCHEMA)
    with pytest.raises(DeltaIOError, match="outside the replace-where"):
        tables.write(wrong_day, "sales", mode="replace_where", replace_where={"day": DAY2})
    uri = tables.ref("sales").uri
    assert DeltaTable(uri).version() == version  # nothing committed, no stray files in the log
    assert sorted(DeltaTable(uri).to_pandas()["id"]) == [0, 1, 2, 10, 11, 12, 13]


def test_empty_local_frame_replaces_a_partition_with_no_rows(spark, tables):
    tables.write(local_frame(spark, rows_for(DAY1, 3), DAY_TABLE_SCHEMA), "sales")
    empty = local_frame(spark, [], DAY_TABLE_SCHEMA)
    result = tables.write(empty, "sales", mode="replace_where", replace_where={"day": DAY1})
    assert result.committed
    assert DeltaTable(tables.ref("sales").uri).to_pandas().empty


def test_merge_checks_keys_on_the_collected_source(spark, tables):
    tables.write(local_frame(spark, rows_for(DAY1, 3), DAY_TABLE_SCHEMA), "sales")
    upsert = local_frame(spark, [(1, "s9", DAY1, -1.0), (7, "s2", DAY2, 7.0)], DAY_TABLE_SCHEMA)
    jobs = jobs_run_by(spark, lambda: tables.merge(upsert, "sales", keys=["id"]))
    assert len(jobs) <= 1  # the collection only: the null and duplicate checks run in Arrow
    back = DeltaTable(tables.ref("sales").uri).to_pandas().sort_values("id")
    assert list(back["id"]) == [0, 1, 2, 7] and back.loc[back["id"] == 1, "amount"].item() == -1.0
    dupes = local_frame(spark, [(7, "a", DAY1, 1.0), (7, "b", DAY1, 2.0)], DAY_TABLE_SCHEMA)
    with pytest.raises(DeltaIOError, match=r"duplicate keys, e.g. \{'id': 7, 'count': 2\}"):
        tables.merge(dupes, "sales", keys=["id"])
    nulls = local_frame(spark, [(None, "a", DAY1, 1.0)], DAY_TABLE_SCHEMA)
    with pytest.raises(DeltaIOError, match="null keys"):
        tables.merge(nulls, "sales", keys=["id"])
    with pytest.raises(DeltaIOError, match="key column 'nope' not in data"):
        tables.merge(upsert, "sales", keys=["nope"])
