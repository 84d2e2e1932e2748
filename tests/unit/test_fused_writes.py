"""Fused transform-and-write (``DeltaTables.write(..., transform=...)``) on the delta-rs engine:
the table holds exactly what ``transform.apply(df)`` would produce, in one commit, with the
counts the write reports; replace-where, idempotency, task failures and retries, and schema
checks behave as on the Data Source write path; the scoring transform's Arrow feature frame
equals the pandas one."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from mlcore.io import (
    ArrowTransform,
    DeltaIOError,
    ReplaceWhereViolation,
    SchemaMismatchError,
    WriteToken,
)
from mlcore.io.deltars_writer import TOTALS_KEY, _split_by_partition

DAY1, DAY2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
INPUT = StructType([StructField("id", LongType()), StructField("x", DoubleType())])
OUTPUT = StructType(
    [
        StructField("id", LongType()),
        StructField("score", DoubleType()),
        StructField("flag", IntegerType()),
    ]
)


def double_it(batches):
    """id, score = 2x, flag = score > 50 (a stand-in for model scoring)."""
    import pyarrow.compute as pc

    for batch in batches:
        score = pc.multiply(batch.column("x"), 2.0)
        flag = pc.cast(pc.greater(score, 50.0), pa.int32())
        yield pa.RecordBatch.from_arrays([batch.column("id"), score, flag], names=["id", "score", "flag"])


def run_constants(day: dt.date) -> dict:
    return {"run_id": ("r1", StringType()), "run_date": (day, DateType())}


TRANSFORM = ArrowTransform(double_it, OUTPUT)


def source(spark, n: int = 100, partitions: int = 2):
    return spark.createDataFrame([(i, float(i)) for i in range(n)], INPUT).repartition(partitions)


def data_files(path: str | Path) -> set[str]:
    root = Path(path)
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}


def logged_files(path: str) -> set[str]:
    return {a["path"] for a in pa.table(DeltaTable(path).get_add_actions(flatten=True)).to_pylist()}


def plain_scan(path: str) -> pa.Table:
    """The table through delta-rs's own scan (string views as plain strings)."""
    table = pa.table(DeltaTable(path).scan())
    fields = [pa.field(f.name, pa.string()) if pa.types.is_string_view(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def scan(path: str) -> pd.DataFrame:
    return plain_scan(path).to_pandas().sort_values("id").reset_index(drop=True)


@pytest.fixture
def scores(spark, make_config):
    """DeltaTables with ``bank_scores`` (partitioned by run_date) on a fresh lake."""
    from mlcore.io import DeltaTables

    tables = DeltaTables(spark, make_config(), commit_metadata={"mlcore.job": "tests"})
    return tables, tables.ref("bank_scores").uri


def test_fused_write_stores_what_the_transform_produces_with_counts(spark, scores):
    tables, uri = scores
    transform = TRANSFORM.with_constants(run_constants(DAY1))
    df = source(spark)
    result = tables.write(
        df, "bank_scores", mode="replace_where", replace_where={"run_date": DAY1},
        transform=transform, totals=["flag", "score"],
    )  # fmt: skip
    assert result.committed and result.version == 0
    assert result.rows == 100
    assert result.totals == {"flag": 74, "score": float(sum(2 * i for i in range(100)))}

    expected = transform.apply(df).toPandas().sort_values("id").reset_index(drop=True)
    back = scan(uri)
    assert list(back.columns) == [*OUTPUT.fieldNames(), "run_id", "run_date"]
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    assert tables.read("bank_scores").count() == 100
    # one file per task, every file on disk is in the log, the totals are in the commit info
    assert data_files(uri) == logged_files(uri) and len(logged_files(uri)) == 2
    info = DeltaTable(uri).history(1)[0]
    assert json.loads(info[TOTALS_KEY]) == result.totals and info["mlcore.rows"] == "100"
    assert DeltaTable(uri).metadata().partition_columns == ["run_date"]


def test_fused_replace_where_replaces_only_its_partition_and_rejects_rows_outside(spark, scores):
    tables, uri = scores
    for day in (DAY1, DAY2):
        tables.write(
            source(spark, 10), "bank_scores", mode="replace_where", replace_where={"run_date": day},
            transform=TRANSFORM.with_constants(run_constants(day)),
        )  # fmt: skip
    again = tables.write(
        source(spark, 4), "bank_scores", mode="replace_where", replace_where={"run_date": DAY2},
        transform=TRANSFORM.with_constants(run_constants(DAY2)),
    )  # fmt: skip
    assert again.version == 2 and again.rows == 4
    back = scan(uri)
    assert back.groupby("run_date").size().to_dict() == {DAY1: 10, DAY2: 4}

    files = data_files(uri)
    with pytest.raises(ReplaceWhereViolation, match="outside the replace-where predicate"):
        tables.write(
            source(spark, 4), "bank_scores", mode="replace_where", replace_where={"run_date": DAY1},
            transform=TRANSFORM.with_constants(run_constants(DAY2)),
        )  # fmt: skip
    assert DeltaTable(uri).version() == 2 and data_files(uri) == files


def test_fused_write_is_idempotent_per_token(spark, scores):
    tables, uri = scores
    token = WriteToken.for_job("score_classifier", DAY1)
    kwargs = dict(
        mode="replace_where", replace_where={"run_date": DAY1}, token=token,
        transform=TRANSFORM.with_constants(run_constants(DAY1)), totals=["flag"],
    )  # fmt: skip
    first = tables.write(source(spark), "bank_scores", **kwargs)
    files = data_files(uri)
    again = tables.write(source(spark), "bank_scores", **kwargs)
    assert first.committed and not again.committed and again.version == 0
    assert again.rows is None and again.totals is None  # nothing written, nothing counted
    assert DeltaTable(uri).version() == 0 and data_files(uri) == files


def test_failure_inside_the_transform_commits_nothing_and_leaves_no_files(spark, scores):
    tables, uri = scores
    tables.write(source(spark, 10), "bank_scores", transform=TRANSFORM.with_constants(run_constants(DAY1)))
    files = data_files(uri)

    def explode(batches):
        for batch in double_it(batches):
            if 199 in batch.column("id").to_pylist():
                raise RuntimeError("injected scoring failure")
            yield batch

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16")
    try:
        with pytest.raises(DeltaIOError, match="table left at version 0"):
            tables.write(
                source(spark, 200), "bank_scores",
                transform=ArrowTransform(explode, OUTPUT).with_constants(run_constants(DAY2)),
            )  # fmt: skip
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
    assert DeltaTable(uri).version() == 0 and data_files(uri) == files


def test_retried_task_commits_once_with_only_the_committed_files(spark, scores):
    """local[2,2] retries a failed task: exact output, the failed attempt's file is gone."""
    tables, uri = scores

    def fail_first_attempt(batches):
        from pyspark import TaskContext

        for batch in double_it(batches):
            if 299 in batch.column("id").to_pylist() and TaskContext.get().attemptNumber() == 0:
                raise RuntimeError("injected failure on attempt 0")
            yield batch

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16")
    try:
        result = tables.write(
            source(spark, 300), "bank_scores", token=WriteToken.for_job("retry", DAY1),
            transform=ArrowTransform(fail_first_attempt, OUTPUT).with_constants(run_constants(DAY1)),
            totals=["flag"],
        )  # fmt: skip
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
    assert result.committed and result.rows == 300 and result.totals == {"flag": 300 - 26}
    assert list(scan(uri)["id"]) == list(range(300)), "no row lost or duplicated by the retry"
    assert data_files(uri) == logged_files(uri)


def test_schema_checks_apply_to_the_transform_output(spark, scores):
    tables, uri = scores
    tables.write(source(spark, 5), "bank_scores", transform=TRANSFORM.with_constants(run_constants(DAY1)))
    as_string = StructType([*OUTPUT.fields[:2], StructField("flag", StringType())])
    with pytest.raises(SchemaMismatchError, match="flag: table int vs data string"):
        tables.write(source(spark, 5), "bank_scores", transform=ArrowTransform(double_it, as_string)
                     .with_constants(run_constants(DAY2)))  # fmt: skip
    with pytest.raises(ValueError, match="totals need numeric output columns"):
        tables.write(source(spark, 5), "bank_scores", totals=["run_id"],
                     transform=TRANSFORM.with_constants(run_constants(DAY2)))  # fmt: skip

    def wrong_type(batches):  # yields int64 flags while declaring int
        for batch in double_it(batches):
            yield batch.set_column(2, "flag", pa.array(batch.column("flag").to_numpy().astype("int64")))

    files = data_files(uri)
    with pytest.raises(DeltaIOError, match="transform output types differ from its schema"):
        tables.write(source(spark, 5), "bank_scores",
                     transform=ArrowTransform(wrong_type, OUTPUT).with_constants(run_constants(DAY2)))  # fmt: skip
    assert DeltaTable(uri).version() == 0 and data_files(uri) == files


def test_transform_with_data_column_replace_where_goes_through_the_driver(spark, tables):
    """replace_where on a non-partition column: delta-rs replaces it on the driver (unfused)."""
    uri = tables.ref("sales").uri
    tables.write(source(spark, 10), "sales", transform=TRANSFORM)
    result = tables.write(
        source(spark, 3), "sales", mode="replace_where", replace_where={"flag": 0}, transform=TRANSFORM
    )
    assert result.committed and result.rows == 3
    back = scan(uri)
    assert len(back) == 3 and set(back["flag"]) == {0}


def test_totals_on_the_data_source_write_path(spark, tables):
    result = tables.write(TRANSFORM.apply(source(spark, 40)), "sales", totals=["flag"])
    assert result.rows == 40 and result.totals == {"flag": 14}


def test_constants_and_timestamps_pass_sparks_own_map_in_arrow_checks(spark):
    at = dt.datetime(2024, 3, 31, 1, 30, 15, tzinfo=dt.timezone.utc)
    transform = TRANSFORM.with_constants(
        {"run_date": (DAY1, DateType()), "at": (at, TimestampType()), "version": (7, IntegerType())}
    )
    rows = transform.apply(source(spark, 3)).orderBy("id").collect()
    assert [r["score"] for r in rows] == [0.0, 2.0, 4.0]
    assert {(r["run_date"], r["at"].replace(tzinfo=None), r["version"]) for r in rows} == {
        (DAY1, at.replace(tzinfo=None), 7)
    }
    with pytest.raises(ValueError, match="already produced"):
        TRANSFORM.with_constants({"flag": (1, IntegerType())})


def test_partition_split_groups_rows_in_order_including_nulls():
    table = pa.table(
        {
            "day": pa.array([DAY1, DAY2, None, DAY1, DAY2, None], pa.date32()),
            "k": pa.array(["a", "a", "a", "b", "a", "a"]),
            "v": pa.array(range(6), pa.int64()),
        }
    )
    parts = {key: part.column("v").to_pylist() for key, part in _split_by_partition(table, ["day", "k"])}
    assert parts == {
        ("2024-01-01", "a"): [0],
        ("2024-01-02", "a"): [1, 4],
        (None, "a"): [2, 5],
        ("2024-01-01", "b"): [3],
    }
    single = list(_split_by_partition(table.slice(1, 1), ["day"]))
    assert [(key, part.num_rows) for key, part in single] == [(("2024-01-02",), 1)]
    assert list(_split_by_partition(table.slice(0, 0), ["day"])) == []


def test_arrow_feature_frame_equals_the_pandas_feature_frame():
    from mlcore.classification.features import FeatureSpec, feature_frame
    from mlcore.classification.scoring import arrow_feature_frame

    spec = FeatureSpec(("job", "month"), ("age", "balance"), "y", "yes")
    batch = pa.record_batch(
        {
            "job": pa.array(["admin.", None, "admin.", "blue-collar", "é"]),
            "month": pa.array([None, None, None, None, None], pa.string()),
            "age": pa.array([30, None, 41, 52, 18], pa.int32()),
            "balance": pa.array([1.5, 2.5, None, np.nan, -3.0]),
            "extra": pa.array([1, 2, 3, 4, 5]),
        }
    )
    expected = feature_frame(batch.to_pandas(), spec)
    got = arrow_feature_frame(batch, spec)
    pd.testing.assert_frame_equal(got, expected)
    assert got["job"].tolist() == ["admin.", None, "admin.", "blue-collar", "é"]
    assert got["job"].iloc[0] is got["job"].iloc[2], "one shared object per distinct value"


def test_commit_that_raises_after_landing_is_a_landed_write(spark, scores, monkeypatch):
    """The driver commits a fused write: a response lost after the commit landed is recognised
    (by write id), its files stay, and the retry with the same token is a no-op."""
    from mlcore.io.deltars_writer import DeltaRsArrowWriter

    tables, uri = scores
    real_commit = DeltaRsArrowWriter.commit

    def commit_then_lose_the_response(self, messages):
        real_commit(self, messages)
        raise TimeoutError("object store: response timed out")

    token = WriteToken.for_job("lost_fused", DAY1)
    kwargs = dict(
        mode="replace_where", replace_where={"run_date": DAY1}, token=token,
        transform=TRANSFORM.with_constants(run_constants(DAY1)), totals=["flag"],
    )  # fmt: skip
    with monkeypatch.context() as patched:
        patched.setattr(DeltaRsArrowWriter, "commit", commit_then_lose_the_response)
        landed = tables.write(source(spark, 30), "bank_scores", **kwargs)
    assert (landed.version, landed.committed, landed.rows, landed.totals) == (0, True, 30, {"flag": 4})
    assert data_files(uri) == logged_files(uri) and len(scan(uri)) == 30
    assert not tables.write(source(spark, 30), "bank_scores", **kwargs).committed


def test_concurrent_commit_to_the_same_partition_fails_loudly_and_cleans_up(spark, scores, monkeypatch):
    """Another writer replaces the partition while the tasks run: this write does not commit
    over it, says so (ConcurrentWriteError), and leaves none of its files behind."""
    from deltalake import write_deltalake

    from mlcore.io import ConcurrentWriteError
    from mlcore.io.deltars_writer import DeltaRsArrowWriter

    tables, uri = scores
    tables.write(source(spark, 10), "bank_scores", mode="replace_where", replace_where={"run_date": DAY1},
                 transform=TRANSFORM.with_constants(run_constants(DAY1)))  # fmt: skip
    real_commit = DeltaRsArrowWriter.commit

    def someone_else_commits_first(self, messages):
        one_row = plain_scan(uri).slice(0, 1)
        write_deltalake(uri, one_row, mode="overwrite", predicate="run_date = '2024-01-01'")
        return real_commit(self, messages)

    monkeypatch.setattr(DeltaRsArrowWriter, "commit", someone_else_commits_first)
    with pytest.raises(ConcurrentWriteError, match="changed data in the partition this write replaces"):
        tables.write(source(spark, 20), "bank_scores", mode="replace_where", replace_where={"run_date": DAY1},
                     transform=TRANSFORM.with_constants(run_constants(DAY1)))  # fmt: skip
    assert DeltaTable(uri).version() == 1 and len(scan(uri)) == 1
    # On disk: the other writer's file and version 0's (removed from the log, not vacuumed).
    first = {a["path"] for a in pa.table(DeltaTable(uri, version=0).get_add_actions(flatten=True)).to_pylist()}
    assert data_files(uri) == logged_files(uri) | first, "none of the failed write's files remain"


def test_native_delta_runs_the_transform_inside_its_own_write(spark, make_config, engine):
    """The same transform-and-write calls on both engines. By design the native engine has no
    fused writer: the transform is a ``mapInArrow`` in Delta's own write plan, and it counts no
    totals (``totals`` stays None: read the table back); rows come from the commit's metrics.
    Table contents, replace-where, idempotency and failure behaviour are the same."""
    from mlcore.io import DeltaTables

    tables = DeltaTables(spark, make_config(), engine=engine, commit_metadata={"mlcore.job": "tests"})
    uri = tables.ref("bank_scores").uri
    transform = TRANSFORM.with_constants(run_constants(DAY1))
    token = WriteToken.for_job("score_classifier", DAY1)
    kwargs = dict(mode="replace_where", replace_where={"run_date": DAY1}, token=token,
                  transform=transform, totals=["flag"])  # fmt: skip
    first = tables.write(source(spark), "bank_scores", **kwargs)
    assert first.committed and first.version == 0 and first.rows == 100
    assert first.totals == ({"flag": 74} if engine == "deltars" else None)
    expected = transform.apply(source(spark)).toPandas().sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(scan(uri), expected, check_dtype=False)

    again = tables.write(source(spark), "bank_scores", **kwargs)
    assert not again.committed and DeltaTable(uri).version() == 0, "same token: no new version"

    with pytest.raises(ReplaceWhereViolation):  # rows outside the predicate are refused
        tables.write(source(spark, 4), "bank_scores", mode="replace_where",
                     replace_where={"run_date": DAY1},
                     transform=TRANSFORM.with_constants(run_constants(DAY2)))  # fmt: skip

    def explode(batches):
        for batch in double_it(batches):
            if 199 in batch.column("id").to_pylist():
                raise RuntimeError("injected scoring failure")
            yield batch

    with pytest.raises(DeltaIOError, match="table left at version 0"):
        tables.write(source(spark, 200), "bank_scores", mode="replace_where",
                     replace_where={"run_date": DAY2},
                     transform=ArrowTransform(explode, OUTPUT).with_constants(run_constants(DAY2)))  # fmt: skip
    assert DeltaTable(uri).version() == 0 and len(scan(uri)) == 100

    # The direct scan (workers read the Parquet files themselves) is a delta-rs path: native
    # Delta answers None, and callers fall back to the Spark read.
    direct = tables.scan("bank_scores", ["id", "score"])
    if engine == "deltars":
        assert direct is not None and direct.version == 0
    else:
        assert direct is None
        assert tables.read("bank_scores").count() == 100
