"""Concurrent writers through ``DeltaTables`` (threads sharing one Spark session, both reading the
same table version before either commits), on both engines: disjoint partitions both commit;
overlapping ones end with exactly one winner and a loud ConcurrentWriteError for the other, never
a mixed table. The engines differ by design in one thing: delta-rs writes (ours) remove a losing
write's files at once, Delta on Spark leaves them for VACUUM."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest

from mlcore.io import ConcurrentWriteError, DeltaTables, WriteToken
from tests.conftest import DAY_TABLE_SCHEMA
from tests.reliability.conftest import data_files, ever_logged, scan, versions_of

pytestmark = pytest.mark.reliability

SCHEMA = DAY_TABLE_SCHEMA
DAY1, DAY2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)


def rows(day: dt.date, ids: range) -> list[tuple]:
    return [(i, f"s{i % 3}", day, float(i)) for i in ids]


@pytest.fixture
def partitioned(spark, make_config, engine) -> Callable[[], DeltaTables]:
    """A ``sales`` table partitioned by day, holding 10 rows on each of DAY1 and DAY2, written
    and raced on each engine (delta-rs, native Delta)."""
    from mlcore.config.models import TableConfig

    config = make_config()
    config.tables["sales"] = TableConfig(path="sales", partition_by=["day"])

    def new() -> DeltaTables:
        return DeltaTables(
            spark, config, engine=engine, commit_metadata={"mlcore.job": "concurrency_test"}
        )

    new().write(
        spark.createDataFrame(rows(DAY1, range(10)) + rows(DAY2, range(10, 20)), SCHEMA), "sales"
    )
    return new


def race(spark, monkeypatch, writes: list[Callable[[], object]]) -> list[object]:
    """Run the writes in threads; each passes its snapshot read before any Spark job starts."""
    from pyspark import InheritableThread
    from pyspark.sql.readwriter import DataFrameWriter

    barrier = threading.Barrier(len(writes), timeout=120)
    real_save = DataFrameWriter.save

    def save_together(self, *args, **kwargs):
        barrier.wait()  # every writer has read the table version it will commit against
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(DataFrameWriter, "save", save_together)
    outcomes: list[object] = [None] * len(writes)

    def run(index: int) -> None:
        try:
            outcomes[index] = writes[index]()
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test inspects
            outcomes[index] = exc

    threads = [InheritableThread(target=run, args=(i,)) for i in range(len(writes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    monkeypatch.setattr(DataFrameWriter, "save", real_save)
    return outcomes


def test_disjoint_partitions_both_commit(spark, partitioned, monkeypatch):
    a, b = partitioned(), partitioned()
    uri = a.ref("sales").uri
    new1 = spark.createDataFrame(rows(DAY1, range(100, 105)), SCHEMA)
    new2 = spark.createDataFrame(rows(DAY2, range(200, 207)), SCHEMA)
    outcomes = race(
        spark,
        monkeypatch,
        [
            lambda: a.write(new1, "sales", mode="replace_where", replace_where={"day": DAY1},
                            token=WriteToken.for_job("writer_a", DAY1)),
            lambda: b.write(new2, "sales", mode="replace_where", replace_where={"day": DAY2},
                            token=WriteToken.for_job("writer_b", DAY2)),
        ],
    )  # fmt: skip
    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    assert sorted(o.version for o in outcomes) == [1, 2] and all(o.committed for o in outcomes)
    final = scan(uri)
    assert sorted(final.loc[final["day"] == DAY1, "id"]) == list(range(100, 105))
    assert sorted(final.loc[final["day"] == DAY2, "id"]) == list(range(200, 207))
    # The intermediate version holds one new partition and the other old one, both whole.
    middle = scan(uri, 1)
    assert {len(middle[middle["day"] == d]) for d in (DAY1, DAY2)} <= {5, 7, 10}
    assert data_files(uri) == ever_logged(uri), "no orphan files"


@pytest.mark.parametrize("tokens", ["different_jobs", "no_tokens"])
def test_overlapping_partition_one_winner_one_loud_failure(
    spark, partitioned, monkeypatch, tokens, engine
):
    a, b = partitioned(), partitioned()
    uri = a.ref("sales").uri
    ids = {"a": range(100, 105), "b": range(200, 207)}
    frames = {k: spark.createDataFrame(rows(DAY1, v), SCHEMA) for k, v in ids.items()}

    def writer(tables: DeltaTables, key: str):
        token = WriteToken.for_job(f"writer_{key}", DAY1) if tokens == "different_jobs" else None
        return lambda: tables.write(
            frames[key], "sales", mode="replace_where", replace_where={"day": DAY1}, token=token
        )

    outcomes = dict(
        zip("ab", race(spark, monkeypatch, [writer(a, "a"), writer(b, "b")]), strict=True)
    )
    failed = {k: o for k, o in outcomes.items() if isinstance(o, Exception)}
    assert len(failed) == 1, outcomes
    (error,) = failed.values()
    (winner,) = set(outcomes) - set(failed)
    assert isinstance(error, ConcurrentWriteError), repr(error)
    message = str(error)
    assert "concurrent write conflict on table 'sales'" in message
    assert "partition this write replaces (day=2024-01-01)" in message
    assert "this write was not committed" in message and "\n" not in message
    assert outcomes[winner].committed and outcomes[winner].version == 1
    assert versions_of(uri) == [0, 1]
    final = scan(uri)
    assert sorted(final.loc[final["day"] == DAY1, "id"]) == list(ids[winner]), "the winner only"
    assert sorted(final.loc[final["day"] == DAY2, "id"]) == list(range(10, 20)), "untouched"
    left = data_files(uri) - ever_logged(uri)
    if engine == "deltars":
        assert not left, "the loser's files are gone"
    else:
        # By design, Delta on Spark leaves a failed transaction's files for VACUUM (after the
        # table's retention period), as on Databricks: unreferenced, in the loser's partition.
        assert left and all(name.startswith("day=2024-01-01/") for name in left), left


def test_concurrent_appends_both_commit(spark, partitioned, monkeypatch):
    a, b = partitioned(), partitioned()
    uri = a.ref("sales").uri
    new_a = spark.createDataFrame(rows(DAY1, range(100, 103)), SCHEMA)
    new_b = spark.createDataFrame(rows(DAY1, range(200, 204)), SCHEMA)
    outcomes = race(
        spark, monkeypatch, [lambda: a.write(new_a, "sales"), lambda: b.write(new_b, "sales")]
    )
    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    assert sorted(o.rows for o in outcomes) == [3, 4]
    assert versions_of(uri) == [0, 1, 2]
    assert sorted(scan(uri)["id"]) == [*range(20), *range(100, 103), *range(200, 204)]


def test_duplicate_launch_of_the_same_job_run_commits_once(spark, partitioned, monkeypatch, engine):
    """The scheduler starts the same job run twice at once (same idempotency token): one commit,
    the other write is a no-op, never two copies of the partition."""
    a, b = partitioned(), partitioned()
    uri = a.ref("sales").uri
    frame = spark.createDataFrame(rows(DAY1, range(100, 106)), SCHEMA)
    token = WriteToken.for_job("same_job", DAY1)

    def write(tables: DeltaTables):
        return lambda: tables.write(
            frame, "sales", mode="replace_where", replace_where={"day": DAY1}, token=token
        )

    outcomes = race(spark, monkeypatch, [write(a), write(b)])
    committed = [o for o in outcomes if not isinstance(o, Exception) and o.committed]
    assert len(committed) == 1, outcomes
    other = next(o for o in outcomes if o is not committed[0])
    # The other one either saw the token at commit time (a no-op) or lost the commit race
    # loudly; it never adds a second copy.
    assert isinstance(other, ConcurrentWriteError) or not other.committed, other
    assert versions_of(uri) == [0, 1]
    final = scan(uri)
    assert sorted(final.loc[final["day"] == DAY1, "id"]) == list(range(100, 106))
    left = data_files(uri) - ever_logged(uri)
    if engine == "deltars" or not isinstance(other, ConcurrentWriteError):
        assert not left
    else:  # Delta on Spark leaves the losing transaction's files for VACUUM (by design)
        assert all(name.startswith("day=2024-01-01/") for name in left), left
