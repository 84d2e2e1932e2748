"""train_forecasts collects one summary row per group and writes ``forecast_metrics`` /
``forecast_backtest`` from the nested result columns exploded in Spark, by the executors (the
driver's memory must not grow with the points). Those rows and types must be exactly what
Spark's ``explode`` of the nested result columns gives, and the plot and report get the points
of the groups they draw."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from mlcore.config.models import ForecastingConfig
from mlcore.forecasting.results import collect_results
from mlcore.forecasting.schemas import model_schema
from mlcore.pipelines.train_forecasts import BACKTEST, METRICS, exploded_outputs, shown_points

RUN_DATE = dt.date(2015, 6, 14)


def result_rows() -> list[dict]:
    """Three groups: Prophet champion, seasonal-naive champion (two windows), skipped (no
    metrics, no points, no champion)."""

    def metric(window: int, model: str, name: str, value: float | None) -> dict:
        return {"backtest_window": window, "model": model, "metric": name, "value": value, "n_obs": 40}

    def point(window: int, model: str, day: int, yhat: float | None) -> dict:
        ds = RUN_DATE - dt.timedelta(days=day)
        return {"backtest_window": window, "model": model, "ds": ds, "y": 100.0 + day, "yhat": yhat,
                "yhat_lower": None if yhat is None else yhat - 5, "yhat_upper": None if yhat is None else yhat + 5}  # fmt: skip

    base = {
        "status_reason": None, "error_class": None, "error_message": None, "model_json": "{}",
        "baseline_json": "{}", "model_sha256": "h", "baseline_sha256": "h", "history_max": 900.0,
        "train_start": dt.date(2013, 1, 1), "train_end": dt.date(2015, 6, 13),
        "train_rows": 800, "data_fingerprint": "f", "warm_started": False, "fit_seconds": 0.1,
        "backtest_seconds": 0.2,
    }  # fmt: skip
    return [
        {**base, "store": 7, "status": "ok", "champion": "prophet",
         "metrics": [metric(0, "prophet", "wape", 0.1), metric(0, "seasonal_naive", "wape", None)],
         "backtest_points": [point(0, "prophet", 2, 101.0), point(0, "seasonal_naive", 2, None)]},
        {**base, "store": 3, "status": "fallback", "champion": "seasonal_naive",
         "metrics": [metric(w, m, "rmspe", 0.2 + w) for w in (0, 1) for m in ("prophet", "seasonal_naive")],
         "backtest_points": [point(w, "seasonal_naive", d, 90.0 + d) for w in (0, 1) for d in (1, 2, 3)]},
        {**base, "store": 11, "status": "skipped", "champion": None, "model_json": None,
         "status_reason": "insufficient history", "metrics": [], "backtest_points": []},
    ]  # fmt: skip


@pytest.fixture
def results(spark):
    from pyspark.sql import functions as F

    schema = model_schema()
    frame = spark.createDataFrame([tuple(r[c] for c in schema.fieldNames()) for r in result_rows()], schema)
    return frame.withColumn("action", F.lit("trained")).withColumn(
        "trained_run_date", F.lit(RUN_DATE)
    )


def spark_exploded(results, run_id: str) -> dict:
    """The reference: Spark's explode of the nested columns, as the job built these tables."""
    from pyspark.sql import functions as F

    def explode(column: str, fields: list[str]):
        return (
            results.select("store", "champion", F.explode(column).alias("x"))
            .select(
                "store",
                *[F.col(f"x.{c}").alias(c) for c in fields],
                (F.col("x.model") == F.col("champion")).alias("is_champion"),
            )
            .withColumn("run_id", F.lit(run_id))
            .withColumn("run_date", F.lit(RUN_DATE))
        )

    return {
        METRICS: explode("metrics", ["backtest_window", "model", "metric", "value", "n_obs"]),
        BACKTEST: explode(
            "backtest_points", ["backtest_window", "model", "ds", "y", "yhat", "yhat_lower", "yhat_upper"]
        ),
    }


def test_exploded_tables_equal_spark_explode_and_stay_off_the_driver(spark, results) -> None:
    from mlcore.io.frames import is_driver_local

    ctx = SimpleNamespace(
        config=SimpleNamespace(forecasting=ForecastingConfig()),
        run_id="run-1",
        run_date=RUN_DATE,
        spark=spark,
    )
    collected = collect_results(results, ["store"])
    assert sorted(collected.groups["store"]) == [3, 7, 11]
    assert collected.groups.set_index("store").loc[7, "champion_wape"] == pytest.approx(0.1)
    assert "model_json" not in collected.groups.columns
    ours = exploded_outputs(ctx, collected)
    reference = spark_exploded(results, "run-1")
    for name in (METRICS, BACKTEST):
        assert not is_driver_local(ours[name]), name  # executors write them
        assert ours[name].columns == reference[name].columns
        assert [f.dataType for f in ours[name].schema] == [
            f.dataType for f in reference[name].schema
        ]
        got = sorted(map(tuple, ours[name].collect()), key=repr)
        want = sorted(map(tuple, reference[name].collect()), key=repr)
        assert got == want, name
    assert ours[METRICS].count() == 2 + 4 and ours[BACKTEST].count() == 2 + 6
    # a null champion compares as null, as in Spark; the baseline champion flags its own rows
    flags = {(r["store"], r["model"]): r["is_champion"] for r in ours[METRICS].collect()}
    assert flags[(3, "seasonal_naive")] is True and flags[(3, "prophet")] is False


def test_only_the_drawn_groups_points_are_collected(spark, results) -> None:
    ctx = SimpleNamespace(spark=spark)
    collected = collect_results(results, ["store"])
    drawn = shown_points(ctx, collected, ["store"], plot_groups=1)
    # the first trained store for the plot; best, median, worst by WAPE for the report
    assert set(drawn["store"]) == {3, 7} and len(drawn) == len(
        collected.points.filter("store in (3, 7)").collect()
    )
    assert "action" not in drawn.columns and {"model", "champion", "ds", "y", "yhat"} <= set(drawn.columns)
