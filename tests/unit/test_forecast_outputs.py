"""train_forecasts writes ``forecast_metrics`` / ``forecast_backtest`` from one collect of the
per-group results (exploded in Arrow on the driver). Those rows and types must be exactly what
Spark's ``explode`` of the nested result columns gives."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pyarrow as pa
import pytest

from mlcore.config.models import ForecastingConfig
from mlcore.forecasting.results import collect_results, explode_list
from mlcore.forecasting.schemas import model_schema
from mlcore.pipelines.train_forecasts import BACKTEST, METRICS, exploded_outputs

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


def test_driver_exploded_tables_equal_spark_explode(spark, results) -> None:
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
    ours = exploded_outputs(ctx, collected, results.schema)
    reference = spark_exploded(results, "run-1")
    for name in (METRICS, BACKTEST):
        assert is_driver_local(ours[name]), name
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


def test_explode_list_handles_chunks_offsets_and_empty_lists() -> None:
    item = pa.struct([("a", pa.int32()), ("b", pa.string())])
    chunks = [
        pa.array([[{"a": 1, "b": "x"}], [], [{"a": 2, "b": "y"}, {"a": 3, "b": None}]], pa.list_(item)),
        pa.array([[{"a": 4, "b": "z"}]], pa.list_(item)),
    ]
    table = pa.table({"k": pa.chunked_array([pa.array([10, 11, 12]), pa.array([13])]),
                      "items": pa.chunked_array(chunks)})  # fmt: skip
    sliced = table.slice(1)  # offsets into the first chunk
    out = explode_list(sliced, "items", ["k"])
    assert out.column_names == ["k", "a", "b"]
    assert out.to_pylist() == [
        {"k": 12, "a": 2, "b": "y"},
        {"k": 12, "a": 3, "b": None},
        {"k": 13, "a": 4, "b": "z"},
    ]
    empty = explode_list(table.slice(1, 1), "items", ["k"])
    assert empty.num_rows == 0 and empty.column_names == ["k", "a", "b"]
