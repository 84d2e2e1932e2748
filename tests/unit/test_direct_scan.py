"""The direct Arrow scan of delta-rs tables (mlcore.io.scan) and the numpy port of Spark's xxhash64
(mlcore.io.hashing): bit-identical hashes, exactly the table's rows and Arrow types, balanced
slices, and None wherever the scan would not be faithful."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pyarrow as pa
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlcore.io.hashing import spark_xxhash64, supports_spark_type
from mlcore.io.scan import FileSlice, balance

HASH_SCHEMA = T.StructType(
    [
        T.StructField("b", T.BooleanType()),
        T.StructField("i8", T.ByteType()),
        T.StructField("i16", T.ShortType()),
        T.StructField("i32", T.IntegerType()),
        T.StructField("i64", T.LongType()),
        T.StructField("d", T.DateType()),
        T.StructField("ts", T.TimestampType()),
        T.StructField("ntz", T.TimestampNTZType()),
    ]
)


def hash_rows(n: int, seed: int = 7) -> list[tuple]:
    rng = np.random.default_rng(seed)
    epoch = dt.datetime(1970, 1, 1)
    utc = dt.timezone.utc
    extremes = [
        (True, -128, -32768, -(2**31), -(2**63), dt.date(1, 1, 1), dt.datetime(1, 1, 1, tzinfo=utc), dt.datetime(1, 1, 1)),
        (False, 127, 32767, 2**31 - 1, 2**63 - 1, dt.date(9999, 12, 31), dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=utc), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
        (False, 0, 0, 0, 0, dt.date(1970, 1, 1), dt.datetime(1970, 1, 1, tzinfo=utc), epoch),
        (None,) * 8,
    ]  # fmt: skip
    rows = list(extremes)
    for _ in range(n):
        micros = int(rng.integers(-(2**55), 2**55))
        row = [
            bool(rng.integers(0, 2)),
            int(rng.integers(-128, 128)),
            int(rng.integers(-32768, 32768)),
            int(rng.integers(-(2**31), 2**31)),
            int(rng.integers(-(2**63), 2**63 - 1)),
            dt.date(1970, 1, 1) + dt.timedelta(days=int(rng.integers(-700_000, 2_900_000))),
            dt.datetime(1970, 1, 1, tzinfo=utc) + dt.timedelta(microseconds=micros),
            epoch + dt.timedelta(microseconds=micros),
        ]
        for i in range(len(row)):  # about 10% nulls per column, independently
            if rng.random() < 0.1:
                row[i] = None
        rows.append(tuple(row))
    return rows


def test_xxhash64_equals_sparks_for_every_supported_type_and_combination(spark):
    df = spark.createDataFrame(hash_rows(3000), HASH_SCHEMA)
    names = HASH_SCHEMA.fieldNames()
    combos = [[n] for n in names] + [names, ["i64", "b", "d"], ["ts", "i8", "ntz", "i32"], ["i32", "i32"]]
    hashed = df.select(
        *[F.col(n) for n in names],
        *[F.xxhash64(*[F.col(c) for c in combo]).alias(f"h{i}") for i, combo in enumerate(combos)],
    ).toArrow()
    assert hashed.num_rows == 3004
    assert all(supports_spark_type(f.dataType) for f in HASH_SCHEMA.fields)
    for i, combo in enumerate(combos):
        ours = spark_xxhash64([hashed.column(c) for c in combo])
        assert ours.type == pa.int64() and ours.null_count == 0
        assert ours.equals(hashed.column(f"h{i}").combine_chunks()), combo


def test_xxhash64_refuses_what_it_cannot_reproduce():
    for kind in (T.StringType(), T.DoubleType(), T.FloatType(), T.DecimalType(10, 2), T.BinaryType()):
        assert not supports_spark_type(kind)
    with pytest.raises(ValueError, match="does not support"):
        spark_xxhash64([pa.array(["a"])])


# ----------------------------------------------------------------------------------------------
# the scan
# ----------------------------------------------------------------------------------------------
SCAN_SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType()),
        T.StructField("store", T.StringType()),
        T.StructField("flag", T.BooleanType()),
        T.StructField("amount", T.DoubleType()),
        T.StructField("price", T.DecimalType(12, 3)),
        T.StructField("seen", T.TimestampType()),
        T.StructField("day", T.DateType()),
    ]
)


def scan_rows(n: int, start: int = 0) -> list[tuple]:
    base = dt.datetime(2024, 3, 1, 12, tzinfo=dt.timezone.utc)
    return [
        (
            i,
            None if i % 11 == 0 else f"s{i % 5}",
            None if i % 13 == 0 else i % 2 == 0,
            i * 0.5,
            decimal.Decimal(i) / 8,
            base + dt.timedelta(minutes=i),
            None if i % 17 == 0 else dt.date(2024, 1, 1 + i % 3),
        )
        for i in range(start, start + n)
    ]


def tables_for(spark, make_config, *overrides: str):
    from mlcore.io import DeltaTables

    return DeltaTables(spark, make_config("storage.rows_per_row_group=70", *overrides))


def write(spark, tables, df, name: str, **kwargs):
    """Write with 70-row Arrow batches, so files get several 70-row row groups."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    previous = spark.conf.get(key)
    spark.conf.set(key, "70")
    try:
        return tables.write(df, name, **kwargs)
    finally:
        spark.conf.set(key, previous)


def same_rows(scan, read) -> None:
    columns = scan.schema.fieldNames()
    got = sorted(scan.frame().collect(), key=lambda r: r["id"])
    want = sorted(read.select(*columns).collect(), key=lambda r: r["id"])
    assert got == want


@pytest.mark.parametrize("partitioned", [False, True])
def test_scan_returns_exactly_the_tables_rows_with_the_reads_arrow_types(spark, make_config, partitioned):
    from pyspark.sql.pandas.types import to_arrow_schema

    extra = ["tables.scan_t.path=scan_t"] + (["tables.scan_t.partition_by=[day]"] if partitioned else [])
    tables = tables_for(spark, make_config, *extra)
    df = spark.createDataFrame(scan_rows(1000), SCAN_SCHEMA).repartition(3)
    write(spark, tables, df, "scan_t", mode="overwrite")
    read = tables.read("scan_t")

    columns = ["id", "day", "store", "price", "seen", "flag", "amount"]
    scan = tables.scan("scan_t", columns, partitions=3)
    assert scan is not None and scan.rows == 1000 and tables.read_versions["scan_t"] == 0
    same_rows(scan, read)
    # Batches typed exactly as mapInArrow hands the Spark read's rows to Python.
    timezone = spark.conf.get("spark.sql.session.timeZone")
    expected = to_arrow_schema(read.select(*columns).schema, timezone=timezone)
    batches = list(scan.reader(iter(scan.slices.toArrow().to_batches())))
    assert batches and all(b.schema == expected for b in batches)
    assert sum(b.num_rows for b in batches) == 1000

    # Balanced: several files and row groups (70 rows each) split into slices over 3 partitions.
    loads = [sum(s.rows for s in group) for group in scan.plan]
    assert sum(loads) == 1000 and max(loads) - min(loads) <= 70
    per_partition = scan.slices.rdd.glom().map(lambda rows: sorted(r["path"] for r in rows)).collect()
    assert per_partition == [sorted(s.path for s in group) for group in scan.plan]
    # Deterministic: the same table plans the same slices.
    assert tables.scan("scan_t", columns, partitions=3).plan == scan.plan
    # A subset of columns, and partition columns only.
    same_rows(tables.scan("scan_t", ["id", "seen"], partitions=2), read)
    only_day = tables.scan("scan_t", ["day"], partitions=2)
    assert sorted(only_day.frame().collect(), key=str) == sorted(read.select("day").collect(), key=str)


def test_scan_of_an_earlier_version_and_of_a_file_splits_by_row_groups(spark, make_config):
    tables = tables_for(spark, make_config, "tables.scan_v.path=scan_v")
    write(spark, tables, spark.createDataFrame(scan_rows(500), SCAN_SCHEMA).coalesce(1), "scan_v", mode="overwrite")
    write(spark, tables, spark.createDataFrame(scan_rows(300, start=500), SCAN_SCHEMA).coalesce(1), "scan_v")

    old = tables.scan("scan_v", ["id", "amount"], partitions=4, version=0)
    assert old.version == 0 and old.rows == 500 and tables.read_versions["scan_v"] == 0
    same_rows(old, tables.read("scan_v", version=0))
    # One file of 8 row groups (7 x 70 + 10 rows) over 4 partitions (<= 125 rows a slice):
    # consecutive row groups up to 125 rows per slice, spread largest first.
    assert len({s.path for g in old.plan for s in g}) == 1
    ranges = sorted((s.first, s.stop) for g in old.plan for s in g)
    assert ranges == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 8)]
    assert [sum(s.rows for s in g) for g in old.plan] == [80, 140, 140, 140]
    new = tables.scan("scan_v", ["id", "amount"], partitions=4)
    assert new.version == 1 and new.rows == 800
    same_rows(new, tables.read("scan_v"))


def test_scan_fills_columns_older_files_lack_with_nulls_like_spark(spark, make_config):
    tables = tables_for(spark, make_config, "tables.scan_m.path=scan_m")
    tables.write(spark.createDataFrame(scan_rows(100), SCAN_SCHEMA).coalesce(1), "scan_m", mode="overwrite")
    later = spark.createDataFrame(scan_rows(50, start=100), SCAN_SCHEMA).withColumn("extra", F.col("id") * 3)
    tables.write(later, "scan_m", merge_schema=True)
    scan = tables.scan("scan_m", ["id", "extra", "day"])
    same_rows(scan, tables.read("scan_m"))
    assert scan.frame().where(F.col("extra").isNull()).count() == 100


def test_scan_composes_with_a_transform_into_a_fused_write(spark, make_config):
    from mlcore.io import ArrowTransform

    tables = tables_for(spark, make_config, "tables.scan_src.path=scan_src", "tables.scan_out.path=scan_out")
    tables.write(spark.createDataFrame(scan_rows(400), SCAN_SCHEMA).repartition(2), "scan_src", mode="overwrite")
    scan = tables.scan("scan_src", ["id", "amount"])
    out_schema = T.StructType([T.StructField("id", T.LongType()), T.StructField("double", T.DoubleType())])

    def double(batches):
        import pyarrow.compute as pc

        for b in batches:
            yield pa.RecordBatch.from_arrays([b.column("id"), pc.multiply(b.column("amount"), 2.0)], names=["id", "double"])

    result = tables.write(scan.slices, "scan_out", mode="overwrite", transform=scan.then(ArrowTransform(double, out_schema)))
    assert result.committed and result.rows == 400
    got = {r["id"]: r["double"] for r in tables.read("scan_out").collect()}
    assert got == {i: i * 1.0 for i in range(400)}


def test_scan_is_none_where_it_would_not_be_faithful(spark, make_config, monkeypatch):
    from mlcore.io.engines import DeltaRsEngine
    from mlcore.io.errors import UnsupportedTableError

    tables = tables_for(spark, make_config, "tables.scan_n.path=scan_n")
    df = spark.createDataFrame(scan_rows(50), SCAN_SCHEMA).withColumn("tags", F.array(F.col("store")))
    tables.write(df, "scan_n", mode="overwrite")
    assert tables.scan("scan_n", ["id", "tags"]) is None  # nested column
    assert tables.scan("scan_n", ["id"]) is not None

    def refuse(dt, name):
        raise UnsupportedTableError("live deletion vectors")

    with monkeypatch.context() as patched:
        patched.setattr(DeltaRsEngine, "check_readable", staticmethod(refuse))
        tables.read_versions.clear()
        assert tables.scan("scan_n", ["id"]) is None and "scan_n" not in tables.read_versions
    monkeypatch.setattr(tables, "engine_name", "spark")  # native Delta: Spark's own scan
    assert tables.scan("scan_n", ["id"]) is None


def test_empty_table_scans_to_no_rows(spark, make_config):
    tables = tables_for(spark, make_config, "tables.scan_e.path=scan_e")
    tables.write(spark.createDataFrame([], SCAN_SCHEMA), "scan_e", mode="overwrite")
    scan = tables.scan("scan_e", ["id", "day"])
    assert scan is not None and scan.rows == 0 and scan.frame().count() == 0


def test_balance_is_deterministic_and_spreads_rows():
    slices = [FileSlice(f"f{i}", 0, -1, rows, ()) for i, rows in enumerate([50, 10, 40, 30, 20, 20])]
    groups = balance(slices, 3)
    assert [sum(s.rows for s in g) for g in groups] == [60, 60, 50]
    assert groups == balance(list(slices), 3)
    assert [s.path for s in groups[0]] == ["f0", "f1"]
    assert balance(slices, 8)[6:] == [[], []]
