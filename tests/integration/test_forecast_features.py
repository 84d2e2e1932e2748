"""The shared forecasting features: each definition on a hand-made calendar, and the same day's
features computed by training (as history) and by make_forecasts (as horizon) being equal."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from mlcore.config.models import ForecastingConfig, SyntheticConfig
from mlcore.forecasting.features import FEATURE_COLUMNS, add_features, calendar_columns
from mlcore.ingest.schemas import SALES, SALES_SCHEMA, STORES, STORES_SCHEMA
from mlcore.ingest.synthetic import sales_frames
from mlcore.io import DeltaTables
from mlcore.pipelines.context import JobContext

CONFIG = ForecastingConfig()
WINDOW = CONFIG.features.event_window_days


def _calendar() -> pd.DataFrame:
    """Store 7, 2015-03-23 (a Monday) .. 2015-04-30: closed on Sundays, Good Friday (04-03) and
    Easter Monday (04-06, both state holiday 'b'), and for a refurbishment 04-14 .. 04-17 (four
    days); promo Mon-Fri 03-30 .. 04-03; school holidays 03-30 .. 04-10, unknown on 04-20."""
    days = pd.date_range("2015-03-23", "2015-04-30", freq="D")
    frame = pd.DataFrame({"store": 7, "date": days.date})
    easter = {dt.date(2015, 4, 3), dt.date(2015, 4, 6)}
    frame["state_holiday"] = ["b" if d in easter else "0" for d in frame["date"]]
    refurbishment = {dt.date(2015, 4, 14) + dt.timedelta(days=i) for i in range(4)}
    frame["open"] = [0 if (d.weekday() == 6 or d in easter | refurbishment) else 1 for d in frame["date"]]
    frame["promo"] = [int(dt.date(2015, 3, 30) <= d <= dt.date(2015, 4, 3)) for d in frame["date"]]
    school = [1.0 if dt.date(2015, 3, 30) <= d <= dt.date(2015, 4, 10) else 0.0 for d in frame["date"]]
    frame["school_holiday"] = [None if d == dt.date(2015, 4, 20) else v for d, v in zip(frame["date"], school, strict=True)]
    return frame


STORE_ROWS = [
    # store, type, assortment, distance, open since month, year, promo2, since week, year, interval
    (7, "a", "c", 500.0, 4, 2015, 1, 14, 2015, "Jan,Apr,Jul,Oct"),
    (8, "d", "a", None, None, None, 1, 1, 2014, "Mar,Jun,Sept,Dec"),
]


@pytest.fixture(scope="module")
def features(spark) -> pd.DataFrame:
    calendar = _calendar()
    september = pd.DataFrame(
        {"store": 8, "date": [dt.date(2014, 9, 15), dt.date(2014, 10, 15)], "state_holiday": "0",
         "open": 1, "promo": 0, "school_holiday": 0.0}
    )  # fmt: skip
    rows = spark.createDataFrame(
        pd.concat([calendar, september], ignore_index=True),
        "store int, date date, state_holiday string, open int, promo int, school_holiday double",
    )
    stores = spark.createDataFrame(
        STORE_ROWS,
        "store int, store_type string, assortment string, competition_distance double, "
        "competition_open_since_month int, competition_open_since_year int, promo2 int, "
        "promo2_since_week int, promo2_since_year int, promo_interval string",
    )
    out = add_features(rows, CONFIG, stores).toPandas()
    return out.set_index(["store", "date"]).sort_index()


def at(features: pd.DataFrame, day: str, store: int = 7) -> pd.Series:
    return features.loc[(store, dt.date.fromisoformat(day))]


def test_calendar_parts_are_iso(features):
    monday, sunday = at(features, "2015-03-23"), at(features, "2015-03-29")
    assert (monday["day_of_week"], sunday["day_of_week"]) == (1, 7)
    assert (monday["week_of_year"], monday["day_of_month"], monday["month"], monday["year"]) == (13, 23, 3, 2015)
    assert at(features, "2015-04-03")["state_holiday_code"] == 2
    assert set(features.columns) >= set(FEATURE_COLUMNS)


def test_closures_are_closed_days_other_than_sundays(features):
    # Sundays (03-29) do not count: the first closure is Good Friday
    assert at(features, "2015-03-30")["days_since_closure"] == WINDOW
    assert at(features, "2015-03-30")["days_until_closure"] == 4
    assert at(features, "2015-04-03")["days_until_closure"] == 0
    assert at(features, "2015-04-07")["days_since_closure"] == 1
    assert at(features, "2015-04-30")["days_since_closure"] == 13  # the refurbishment's last day


def test_long_closures_are_runs_of_closed_days(features):
    long_window = CONFIG.features.long_closure_window_days
    # Easter (Fri, Sun + Mon: runs of 1 and 2 days) is not a long closure; the refurbishment is
    assert at(features, "2015-04-08")["days_until_long_closure"] == 6
    assert at(features, "2015-04-08")["days_since_long_closure"] == long_window
    assert at(features, "2015-04-30")["days_since_long_closure"] == 13
    assert at(features, "2015-04-15")["days_since_long_closure"] == 0


def test_holiday_distances_look_both_ways_and_are_capped(features):
    assert at(features, "2015-04-01")["days_until_state_holiday"] == 2
    assert at(features, "2015-04-08")["days_since_state_holiday"] == 2
    assert at(features, "2015-03-23")["days_until_school_holiday"] == 7
    assert at(features, "2015-04-13")["days_since_school_holiday"] == 3
    assert at(features, "2015-04-30")["days_until_state_holiday"] == WINDOW
    # an unknown input gives an unknown feature, not "no event"
    assert pd.isna(at(features, "2015-04-20")["days_since_school_holiday"])


def test_promo_day_counts_the_days_of_a_promo_run(features):
    days = ["2015-03-27", "2015-03-30", "2015-04-01", "2015-04-03", "2015-04-06"]
    assert [at(features, d)["promo_day"] for d in days] == [0, 1, 3, 5, 0]


def test_store_attributes_promo2_and_competition(features):
    # promo2 since ISO week 14 of 2015 (Monday 2015-03-30), in Jan/Apr/Jul/Oct
    assert at(features, "2015-03-31")["promo2_active"] == 0  # started, but March
    assert at(features, "2015-04-01")["promo2_active"] == 1
    # competitor opened in April 2015: -1 month before, 0 from April
    assert at(features, "2015-03-31")["competition_open_months"] == -1
    assert at(features, "2015-04-01")["competition_open_months"] == 0
    assert (at(features, "2015-04-01")["store_type_code"], at(features, "2015-04-01")["assortment_code"]) == (1, 3)
    assert at(features, "2015-04-01")["competition_distance"] == 500
    # 'Sept' in PromoInterval is September; no competitor: unknown
    assert at(features, "2014-09-15", store=8)["promo2_active"] == 1
    assert at(features, "2014-10-15", store=8)["promo2_active"] == 0
    assert pd.isna(at(features, "2014-09-15", store=8)["competition_open_months"])


def test_training_and_serving_compute_the_same_features_for_the_same_day(spark, make_config):
    """make_forecasts at D computes the horizon's features; train_forecasts at D + 48 computes
    the same days' features as history. Equal, column by column, for every store and day."""
    from pyspark.sql import functions as F

    from mlcore.pipelines._calendar import featurizer
    from mlcore.pipelines.make_forecasts import future_calendar
    from mlcore.pipelines.train_forecasts import select_history, with_lookahead

    config = make_config()
    tables = DeltaTables(spark, config, commit_metadata={"mlcore.job": "tests"})
    sales, attributes = sales_frames(SyntheticConfig(stores=3, start_date="2014-06-01", end_date="2015-07-31"))
    sales = sales.rename(columns=SALES.source_names).assign(run_id="t", run_date=dt.date(2015, 8, 1))
    sales["date"] = pd.to_datetime(sales["date"]).dt.date
    attributes = attributes.rename(columns=STORES.source_names).assign(run_id="t", run_date=dt.date(2015, 8, 1))
    attributes = attributes.astype(object).where(attributes.notna() & (attributes != ""), None)
    tables.write(spark.createDataFrame(sales[SALES_SCHEMA.fieldNames()], SALES_SCHEMA), "sales", mode="overwrite")
    tables.write(spark.createDataFrame(attributes[STORES_SCHEMA.fieldNames()], STORES_SCHEMA), "stores", mode="overwrite")

    serve_date = dt.date(2015, 5, 1)
    horizon = dt.timedelta(days=config.forecasting.horizon_days)
    train_date = serve_date + horizon
    keys = ["store", "date"]
    columns = [*calendar_columns(config.forecasting), *FEATURE_COLUMNS]

    trainer = JobContext("train_forecasts", config, spark, tables, train_date, "train")
    history, _ = select_history(trainer)
    rows = with_lookahead(trainer, history).repartition(2, "store")
    trained = featurizer(trainer, None, train_date)(rows)  # type: ignore[misc]
    trained = trained.filter(F.col("date") >= F.lit(serve_date)).select(*keys, *columns).toPandas()

    server = JobContext("make_forecasts", config, spark, tables, serve_date, "serve")
    calendar, defaulted = future_calendar(server, tables.read("sales").select("store").distinct())
    served = featurizer(server, serve_date, serve_date + horizon)(calendar.repartition(2, "store"))  # type: ignore[misc]
    served = served.select(*keys, *columns).toPandas()

    assert defaulted == 0 and len(served) == 3 * horizon.days
    both = served.merge(trained, on=keys, suffixes=("_served", "_trained"), validate="one_to_one")
    assert len(both) == len(served)
    for column in columns:
        served_values = both[f"{column}_served"].astype(str)
        trained_values = both[f"{column}_trained"].astype(str)
        assert (served_values == trained_values).all(), column
    # the features are not trivially constant over the horizon
    assert both["days_until_closure_served"].nunique() > 1 or both["promo_day_served"].nunique() > 1


def test_the_pandas_features_of_the_served_pyfunc_equal_the_spark_features(spark, features):
    """The registered pyfunc computes the features without Spark: same rows, same values."""
    from mlcore.forecasting.features import add_features_pandas

    sales, attributes = sales_frames(SyntheticConfig(stores=4, start_date="2014-11-01", end_date="2015-07-31"))
    sales = sales.rename(columns=SALES.source_names)[["store", "date", "open", "promo", "state_holiday", "school_holiday"]]
    sales["date"] = pd.to_datetime(sales["date"]).dt.date
    sales.loc[sales.index[::97], "school_holiday"] = None  # unknown inputs too
    attributes = attributes.rename(columns=STORES.source_names)
    attributes = attributes.astype(object).where(attributes.notna(), None)
    rows = spark.createDataFrame(
        sales, "store int, date date, open int, promo int, state_holiday string, school_holiday double"
    )
    expected = add_features(rows, CONFIG, spark.createDataFrame(attributes)).toPandas()
    got = add_features_pandas(sales.reset_index(drop=True), CONFIG, pd.DataFrame(attributes))
    expected = expected.set_index(["store", "date"]).sort_index()[list(FEATURE_COLUMNS)]
    got = got.set_index(["store", "date"]).sort_index()[list(FEATURE_COLUMNS)]
    pd.testing.assert_frame_equal(
        got.astype("float64"), expected.astype("float64"), check_names=False, check_index_type=False
    )

    # and on the hand-made calendar with its edge cases (Sept, no competitor, unknown inputs)
    calendar = features.reset_index()[["store", "date", "state_holiday", "open", "promo", "school_holiday"]]
    stores = pd.DataFrame(
        STORE_ROWS,
        columns=["store", "store_type", "assortment", "competition_distance", "competition_open_since_month",
                 "competition_open_since_year", "promo2", "promo2_since_week", "promo2_since_year", "promo_interval"],
    )  # fmt: skip
    hand = add_features_pandas(calendar, CONFIG, stores).set_index(["store", "date"]).sort_index()
    pd.testing.assert_frame_equal(
        hand[list(FEATURE_COLUMNS)].astype("float64"),
        features[list(FEATURE_COLUMNS)].astype("float64"),
        check_names=False,
        check_index_type=False,
    )
