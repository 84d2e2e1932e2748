"""Ingest rules on small hand-made inputs: each bad-row kind lands in quarantine with its rule
code and a readable reason, good rows come out typed, good + bad == input, duplicates keep
exactly the first row, and the rides period is inferred robustly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pytest
from pyspark.sql.types import LongType, StringType, StructField, StructType

from mlcore.ingest import rules
from mlcore.ingest.schemas import BANK, RIDES, SALES, STORES, TableContract

GOOD_SALE = {
    "Store": "1", "DayOfWeek": "5", "Date": "2015-07-31", "Sales": "5263", "Customers": "555",
    "Open": "1", "Promo": "1", "StateHoliday": "0", "SchoolHoliday": "1",
}  # fmt: skip
GOOD_STORE = {
    "Store": "1", "StoreType": "c", "Assortment": "a", "CompetitionDistance": "1270",
    "CompetitionOpenSinceMonth": "9", "CompetitionOpenSinceYear": "2008", "Promo2": "0",
    "Promo2SinceWeek": "", "Promo2SinceYear": "", "PromoInterval": "",
}  # fmt: skip
GOOD_CLIENT = {
    "age": "58", "job": "management", "marital": "married", "education": "tertiary",
    "default": "no", "balance": "2143", "housing": "yes", "loan": "no", "contact": "unknown",
    "day": "5", "month": "may", "duration": "261", "campaign": "1", "pdays": "-1",
    "previous": "0", "poutcome": "unknown", "y": "no",
}  # fmt: skip
GOOD_RIDE = {
    "vendor_id": "2", "pickup_datetime": "2019-08-11 18:24:44",
    "dropoff_datetime": "2019-08-11 18:35:02", "passenger_count": "1", "trip_distance": "1.65",
    "rate_code_id": "1", "store_and_fwd_flag": "N", "pickup_location_id": "230",
    "dropoff_location_id": "237", "payment_type": "1", "fare_amount": "8.5", "extra": "1.0",
    "mta_tax": "0.5", "tip_amount": "2.06", "tolls_amount": "0.0",
    "improvement_surcharge": "0.3", "total_amount": "12.36", "congestion_surcharge": "2.5",
}  # fmt: skip
AUGUST_2019 = rules.Period(dt.date(2019, 8, 1), dt.date(2019, 9, 1))


def raw_frame(spark, contract: TableContract, rows: list[Mapping[str, str | None]], corrupt=None):
    """Raw rows as the CSV reader yields them: snake_case string columns, line order given."""
    schema = StructType(
        [StructField(c, StringType()) for c in contract.columns]
        + [
            StructField(rules.CORRUPT_COLUMN, StringType()),
            StructField(rules.LINE_COLUMN, LongType()),
        ]
    )
    corrupt = corrupt or {}
    data = [
        tuple(row.get(h) for h in contract.header) + (corrupt.get(i), i)
        for i, row in enumerate(rows)
    ]
    return spark.createDataFrame(data, schema)


def with_(base: Mapping[str, str], **changes: str | None) -> dict[str, str | None]:
    return {**base, **changes}


def outcome(good, bad, key: str) -> tuple[dict, dict]:
    """(good rows by key, bad rows by raw key) as dicts."""
    return (
        {str(r[key]): r.asDict() for r in good.collect()},
        {r[key]: r.asDict() for r in bad.collect()},
    )


def test_sales_good_row_is_typed(spark) -> None:
    good, bad = rules.validate_sales(raw_frame(spark, SALES, [GOOD_SALE]))
    assert bad.count() == 0
    (row,) = good.collect()
    assert row.asDict() == {
        "store": 1, "day_of_week": 5, "date": dt.date(2015, 7, 31), "sales": 5263,
        "customers": 555, "open": 1, "promo": 1, "state_holiday": "0", "school_holiday": 1,
    }  # fmt: skip
    expected = {
        f.name: f.dataType for f in SALES.schema.fields if f.name not in ("run_id", "run_date")
    }
    assert {f.name: f.dataType for f in good.schema.fields} == expected


SALES_CASES = [
    # (store id used as row id, changes, rule, exact reason)
    ("101", {"Sales": "-5"}, "negative_value", "sales: negative value -5"),
    ("102", {"Customers": "-1"}, "negative_value", "customers: negative value -1"),
    ("103", {"Open": "2"}, "out_of_domain", "open: value '2' not in {0, 1}"),
    ("104", {"StateHoliday": "d"}, "out_of_domain", "state_holiday: value 'd' not in {0, a, b, c}"),
    ("105", {"Sales": "abc"}, "unparseable", "sales: not an integer 'abc'"),
    ("106", {"Date": "2015-02-30"}, "unparseable", "date: not a date (yyyy-MM-dd) '2015-02-30'"),
    ("107", {"Date": "31.07.2015"}, "unparseable", "date: not a date (yyyy-MM-dd) '31.07.2015'"),
    ("108", {"Promo": ""}, "missing_value", "promo: missing value"),
    ("109", {"DayOfWeek": "9"}, "out_of_range", "day_of_week: value 9 outside [1, 7]"),
    (
        "110",
        {"DayOfWeek": "4"},
        "day_of_week_mismatch",
        "day_of_week: 4 but 2015-07-31 is weekday 5",
    ),
    ("111", {"SchoolHoliday": "1.0"}, "unparseable", "school_holiday: not an integer '1.0'"),
    ("0", {}, "out_of_range", "store: value 0 outside [1, inf]"),
]


def test_sales_each_bad_kind_is_quarantined_with_rule_and_reason(spark) -> None:
    rows = [with_(GOOD_SALE, Store="1")]
    rows += [with_(GOOD_SALE, Store=store, **changes) for store, changes, _, _ in SALES_CASES]
    rows.append(with_(GOOD_SALE, Store="120", Sales="-7", Open="5"))  # two rules at once
    rows.append({"Store": "121", "DayOfWeek": "5"})  # malformed: short line
    raw = raw_frame(spark, SALES, rows, corrupt={len(rows) - 1: "121,5"})
    good, bad = rules.validate_sales(raw)
    good_rows, bad_rows = outcome(good, bad, "store")

    assert set(good_rows) == {"1"}
    for store, _, rule, reason in SALES_CASES:
        assert bad_rows[store]["rule"] == rule, store
        assert bad_rows[store]["reason"] == reason, store
    # Raw fields are kept as strings, exactly as read.
    assert bad_rows["101"]["sales"] == "-5" and bad_rows["107"]["date"] == "31.07.2015"
    # First broken rule is the code; the reason lists every broken rule.
    assert bad_rows["120"]["rule"] == "negative_value"
    assert bad_rows["120"]["reason"] == "sales: negative value -7; open: value '5' not in {0, 1}"
    assert bad_rows["121"]["rule"] == "malformed_line"
    assert bad_rows["121"]["raw_line"] == "121,5"
    assert bad_rows["121"]["reason"].startswith("malformed line: expected 9 fields")
    assert len(good_rows) + len(bad_rows) == len(rows) == good.count() + bad.count()
    assert bad.columns == [*SALES.columns, "raw_line", "rule", "reason"]


def test_duplicates_keep_exactly_the_first_row_in_file_order(spark) -> None:
    rows = [
        with_(GOOD_SALE, Sales="-1"),  # line 0: same key but broken: must not win the key
        with_(GOOD_SALE, Sales="100"),  # line 1: first good row -> kept
        with_(GOOD_SALE, Sales="200"),  # line 2: duplicate
        with_(GOOD_SALE, Store="2", Sales="300"),
        with_(GOOD_SALE, Sales="100"),  # line 4: exact duplicate
    ]
    good, bad = rules.validate_sales(raw_frame(spark, SALES, rows))
    kept = [(r["store"], r["sales"]) for r in good.orderBy("store").collect()]
    assert kept == [(1, 100), (2, 300)]
    quarantined = sorted((r["sales"], r["rule"]) for r in bad.collect())
    assert quarantined == [
        ("-1", "negative_value"),
        ("100", "duplicate_key"),
        ("200", "duplicate_key"),
    ]
    reasons = {r["reason"] for r in bad.where("rule = 'duplicate_key'").collect()}
    assert reasons == {
        "duplicate key (store=1, date=2015-07-31): the first row in file order was kept"
    }


def test_duplicate_choice_does_not_depend_on_partitioning(spark) -> None:
    rows = [with_(GOOD_SALE, Sales=str(100 + i)) for i in range(20)]
    raw = raw_frame(spark, SALES, rows)
    for frame in (raw.coalesce(1), raw.repartition(7)):
        good, bad = rules.validate_sales(frame)
        assert [r["sales"] for r in good.collect()] == [100]
        assert bad.count() == 19


def test_stores_optional_fields_become_null_and_domains_hold(spark) -> None:
    rows = [
        GOOD_STORE,
        with_(GOOD_STORE, Store="2", CompetitionDistance="", CompetitionOpenSinceMonth=""),
        with_(GOOD_STORE, Store="3", StoreType="e"),
        with_(GOOD_STORE, Store="4", CompetitionOpenSinceMonth="13"),
        with_(GOOD_STORE, Store="5", PromoInterval="Jan,Feb"),
        with_(GOOD_STORE, Store="6", CompetitionDistance="-10"),
        with_(GOOD_STORE, Store="7", CompetitionDistance="NaN"),
        with_(GOOD_STORE, Store="8", Promo2="1", Promo2SinceWeek="14", Promo2SinceYear="2011",
              PromoInterval="Jan,Apr,Jul,Oct"),
        with_(GOOD_STORE, Store="1"),  # duplicate store
    ]  # fmt: skip
    good, bad = rules.validate_stores(raw_frame(spark, STORES, rows))
    good_rows, bad_rows = outcome(good, bad, "store")
    assert set(good_rows) == {"1", "2", "8"}
    assert good_rows["1"]["competition_distance"] == 1270.0
    assert good_rows["1"]["promo_interval"] is None  # quoted "" in the file
    assert good_rows["2"]["competition_distance"] is None
    assert good_rows["8"]["promo_interval"] == "Jan,Apr,Jul,Oct"
    assert {k: v["rule"] for k, v in bad_rows.items()} == {
        "3": "out_of_domain",
        "4": "out_of_range",
        "5": "out_of_domain",
        "6": "negative_value",
        "7": "unparseable",
        "1": "duplicate_key",
    }


def test_bank_rules(spark) -> None:
    rows = [
        GOOD_CLIENT,
        with_(GOOD_CLIENT, age="31", y="maybe"),
        with_(GOOD_CLIENT, age="32", month="mai"),
        with_(GOOD_CLIENT, age="33", pdays="-2"),
        with_(GOOD_CLIENT, age="34", duration="-1"),
        with_(GOOD_CLIENT, age="35", job=""),
        with_(GOOD_CLIENT, age="36", balance="-8019"),  # negative balances are real
        with_(GOOD_CLIENT, age="37", job="astronaut"),  # unseen category: kept
        GOOD_CLIENT,  # identical row: no natural key, so kept
    ]
    good, bad = rules.validate_bank(raw_frame(spark, BANK, rows))
    assert sorted(r["age"] for r in good.collect()) == [36, 37, 58, 58]
    _, bad_rows = outcome(good, bad, "age")
    assert {k: v["rule"] for k, v in bad_rows.items()} == {
        "31": "out_of_domain",
        "32": "out_of_domain",
        "33": "out_of_range",
        "34": "negative_value",
        "35": "missing_value",
    }
    assert bad_rows["31"]["reason"] == "y: value 'maybe' not in {yes, no}"
    assert bad_rows["33"]["reason"] == "pdays: value -2 outside [-1, inf]"


def test_rides_rules(spark) -> None:
    def ride(pickup: str, dropoff: str, **changes: str) -> dict[str, str | None]:
        return with_(GOOD_RIDE, pickup_datetime=pickup, dropoff_datetime=dropoff, **changes)

    rows = {
        "good": ride("2019-08-11 18:24:44", "2019-08-11 18:35:02"),
        "zero_distance": ride("2019-08-11 19:00:00", "2019-08-11 19:00:00", trip_distance="0.0"),
        "optional_empty": ride(
            "2019-08-12 07:02:00", "2019-08-12 07:42:00", vendor_id="", passenger_count="",
            rate_code_id="", store_and_fwd_flag="", payment_type="", congestion_surcharge="",
        ),
        "near_edge": ride("2019-07-28 23:50:00", "2019-07-29 00:10:00"),
        "negative_distance": ride("2019-08-13 10:00:00", "2019-08-13 10:10:00", trip_distance="-3.19"),
        "negative_fare": ride("2019-08-13 11:00:00", "2019-08-13 11:10:00", fare_amount="-52.0"),
        "backwards": ride("2019-08-14 13:09:22", "2019-08-14 13:09:10"),
        "too_long": ride("2019-08-15 02:00:00", "2019-08-17 09:12:00"),
        "far_past": ride("2008-12-31 23:49:36", "2009-01-01 00:03:52"),
        "far_dropoff": ride("2019-09-07 23:30:00", "2019-09-08 00:10:00"),
        "bad_time": ride("2019-08-16 25:00:00", "2019-08-16 10:00:00"),
        "bad_flag": ride("2019-08-16 11:00:00", "2019-08-16 11:10:00", store_and_fwd_flag="X"),
        "no_location": ride("2019-08-16 12:00:00", "2019-08-16 12:10:00", pickup_location_id=""),
    }  # fmt: skip
    rows["duplicate"] = dict(rows["good"])
    names = list(rows)
    raw = raw_frame(spark, RIDES, list(rows.values()))
    classified = rules.classify_rides(rules.parse_rides(raw), AUGUST_2019, 24.0, 7)
    good, bad = rules.split(classified, RIDES)
    assert good.count() + bad.count() == len(rows)

    by_pickup = {r["pickup_datetime"]: r for r in good.collect()}
    assert len(by_pickup) == 4  # good, zero_distance, optional_empty, near_edge
    empty = by_pickup[dt.datetime(2019, 8, 12, 7, 2)]
    assert empty["vendor_id"] is None and empty["payment_type"] is None
    assert empty["congestion_surcharge"] is None and empty["trip_distance"] == 1.65
    zero = by_pickup[dt.datetime(2019, 8, 11, 19, 0)]
    assert zero["trip_distance"] == 0.0
    assert zero["pickup_date"] == dt.date(2019, 8, 11)
    assert by_pickup[dt.datetime(2019, 7, 28, 23, 50)]["pickup_date"] == dt.date(2019, 7, 28)

    rules_by_row = {
        names[r[rules.LINE_COLUMN]]: (r["rule"], r["reason"])
        for r in classified.where("rule IS NOT NULL").collect()
    }
    expected = {
        "negative_distance": ("negative_value", "trip_distance: negative value -3.19"),
        "negative_fare": ("negative_value", "fare_amount: negative value -52.0"),
        "backwards": (
            "dropoff_before_pickup",
            "dropoff_datetime 2019-08-14 13:09:10 is before pickup_datetime 2019-08-14 13:09:22",
        ),
        "too_long": ("ride_too_long", "duration 55.2 h exceeds ingest.max_ride_hours 24"),
        "far_past": (
            "outside_period",
            "pickup_datetime 2008-12-31 23:49:36 is more than 7 days outside the file's period "
            "2019-08-01..2019-08-31",
        ),
        "far_dropoff": (
            "outside_period",
            "dropoff_datetime 2019-09-08 00:10:00 is more than 7 days outside the file's period "
            "2019-08-01..2019-08-31",
        ),
        "bad_time": (
            "unparseable",
            "pickup_datetime: not a timestamp (yyyy-MM-dd HH:mm:ss) '2019-08-16 25:00:00'",
        ),
        "bad_flag": ("out_of_domain", "store_and_fwd_flag: value 'X' not in {Y, N}"),
        "no_location": ("missing_value", "pickup_location_id: missing value"),
        "duplicate": (
            "duplicate_key",
            "duplicate record identical to an earlier row: the first row in file order was kept",
        ),
    }
    assert rules_by_row == expected


def test_infer_period_ignores_stray_months(spark) -> None:
    august = [f"2019-08-{1 + i % 31:02d} 10:00:00" for i in range(400)]
    strays = ["2008-12-31 23:49:36", "2019-07-31 23:55:00", "2019-07-31 23:58:00", "", "garbage"]
    raw_rows = [with_(GOOD_RIDE, pickup_datetime=p) for p in august + strays]
    parsed = rules.parse_rides(raw_frame(spark, RIDES, raw_rows))
    assert rules.infer_period(parsed) == AUGUST_2019
    assert str(AUGUST_2019) == "2019-08-01..2019-08-31" and AUGUST_2019.days == 31

    # A file spanning several months: first to last month, a December end rolls the year.
    spans = [with_(GOOD_RIDE, pickup_datetime=f"2018-{m:02d}-15 10:00:00") for m in range(10, 13)]
    parsed = rules.parse_rides(raw_frame(spark, RIDES, spans * 5))
    assert rules.infer_period(parsed) == rules.Period(dt.date(2018, 10, 1), dt.date(2019, 1, 1))


def test_infer_period_none_without_timestamps(spark) -> None:
    parsed = rules.parse_rides(raw_frame(spark, RIDES, [with_(GOOD_RIDE, pickup_datetime="x")]))
    assert rules.infer_period(parsed) is None


def test_good_plus_bad_equals_input_on_random_rows(spark) -> None:
    import random

    rnd = random.Random(7)
    values = ["1", "0", "-3", "", "x", "2", "7", "a", "2015-07-31"]
    rows = [{h: rnd.choice(values) for h in SALES.header} for _ in range(300)]
    good, bad = rules.validate_sales(raw_frame(spark, SALES, rows))
    assert good.count() + bad.count() == 300
    assert bad.where("rule IS NULL OR reason IS NULL").count() == 0


def test_value_rules_must_name_known_columns() -> None:
    with pytest.raises(ValueError, match="unknown columns"):
        rules.column_checks(SALES, [rules.ValueRule("revenue", minimum=0)])
