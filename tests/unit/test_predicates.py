"""Replace-where predicates (mlcore/io/predicates.py): validation, Delta's partition value
strings, SQL for both engines with hostile literals kept literal, and the Spark column."""

from __future__ import annotations

import datetime as dt

import pytest

from mlcore.io.predicates import (
    check_predicate,
    partition_columns_only,
    partition_value_string,
    to_partition_filters,
    to_spark_column,
    to_sql,
)

DAY = dt.date(2015, 6, 14)


@pytest.mark.parametrize(
    ("predicate", "message"),
    [
        ({}, "non-empty mapping"),
        ({"run date": DAY}, "invalid column name"),
        ({"x; DROP TABLE t": 1}, "invalid column name"),
        ({"day": []}, "must not be empty"),
        ({"day": object()}, "unsupported literal"),
        ({"amount": float("nan")}, "non-finite literal"),
        ({"amount": [1.0, float("inf")]}, "non-finite literal"),
    ],
)
def test_bad_predicates_are_refused_before_any_engine(predicate, message):
    with pytest.raises(ValueError, match=message):
        check_predicate(predicate)


def test_good_predicates_pass_unchanged():
    predicate = {"run_date": DAY, "store": [1, 2], "name": None, "flag": True}
    assert check_predicate(predicate) is predicate


def test_partition_values_are_serialised_as_the_delta_protocol_says():
    assert partition_value_string(DAY) == "2015-06-14"
    assert partition_value_string(True) == "true" and partition_value_string(None) is None
    aware = dt.datetime(2015, 6, 14, 2, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert partition_value_string(aware) == "2015-06-14 00:30:00.000000", "stored in UTC"
    assert to_partition_filters({"run_date": DAY, "store": [1, 2]}) == [
        ("run_date", "=", "2015-06-14"),
        ("store", "in", ["1", "2"]),
    ]
    with pytest.raises(ValueError, match="null partition values"):
        to_partition_filters({"run_date": None})


def test_sql_keeps_hostile_strings_one_literal_in_both_dialects():
    hostile = "1' OR '1'='1 \\' --"
    spark = to_sql({"name": hostile, "run_date": DAY}, "spark")
    assert spark == "`name` = '1'' OR ''1''=''1 \\\\'' --' AND `run_date` = DATE '2015-06-14'"
    deltars = to_sql({"name": hostile, "run_date": DAY}, "deltars")
    assert deltars == "\"name\" = '1'' OR ''1''=''1 \\'' --' AND \"run_date\" = '2015-06-14'"
    assert to_sql({"store": [1, 2], "gone": None}, "spark") == "`store` IN (1, 2) AND `gone` IS NULL"
    with pytest.raises(ValueError, match="mix of null and values"):
        to_sql({"store": [1, None]}, "spark")


def test_the_spark_column_selects_exactly_the_predicates_rows(spark):
    rows = [(1, DAY, "a"), (2, DAY, None), (3, DAY + dt.timedelta(days=1), "a"), (None, DAY, "a")]
    frame = spark.createDataFrame(rows, "store int, run_date date, name string")
    inside = frame.filter(to_spark_column({"run_date": DAY, "store": [1, 2]}))
    assert sorted(r["store"] for r in inside.collect()) == [1, 2], "a null store is outside the IN"
    nulls = frame.filter(to_spark_column({"name": None}))
    assert [r["store"] for r in nulls.collect()] == [2]


def test_partition_columns_only():
    assert partition_columns_only({"run_date": DAY}, ["run_date"])
    assert not partition_columns_only({"run_date": DAY, "store": 1}, ["run_date"])
    assert not partition_columns_only({}, ["run_date"])
