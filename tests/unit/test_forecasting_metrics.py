"""Forecast metrics on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlcore.forecasting.metrics import (
    METRIC_NAMES,
    compute_metrics,
    coverage,
    evaluation_mask,
    mae,
    mape,
    rmse,
    rmspe,
    smape,
    wape,
)

# e = y - yhat = [-10, 20, -10, 0]; |e| = [10, 20, 10, 0]
Y = np.array([100.0, 200.0, 0.0, 50.0])
YHAT = np.array([110.0, 180.0, 10.0, 50.0])


def test_mae_rmse():
    assert mae(Y, YHAT) == pytest.approx(40 / 4)
    assert rmse(Y, YHAT) == pytest.approx(math.sqrt((100 + 400 + 100 + 0) / 4))


def test_mape_skips_zero_actuals():
    # y == 0 is left out: (0.1 + 0.1 + 0) / 3
    assert mape(Y, YHAT) == pytest.approx(0.2 / 3)


def test_smape():
    expected = (20 / 210 + 40 / 380 + 20 / 10 + 0 / 100) / 4
    assert smape(Y, YHAT) == pytest.approx(expected)
    # both zero counts as a perfect point, not a division by zero
    assert smape([0.0, 100.0], [0.0, 100.0]) == 0.0
    assert smape([0.0], [5.0]) == pytest.approx(2.0)


def test_wape():
    assert wape(Y, YHAT) == pytest.approx(40 / 350)
    assert math.isnan(wape([0.0, 0.0], [1.0, 2.0]))


def test_rmspe_is_kaggle_definition_and_ignores_zero_sales():
    # points with y > 0 only: rel errors -0.1, 0.1, 0
    assert rmspe(Y, YHAT) == pytest.approx(math.sqrt((0.01 + 0.01 + 0.0) / 3))
    # adding zero-sales days (with any forecast) changes nothing
    y2 = np.concatenate([Y, [0.0, 0.0]])
    f2 = np.concatenate([YHAT, [1e6, 3.0]])
    assert rmspe(y2, f2) == pytest.approx(rmspe(Y, YHAT))
    assert math.isnan(rmspe([0.0, 0.0], [1.0, 1.0]))


def test_coverage_is_inclusive():
    y = np.array([10.0, 20.0, 30.0, 40.0])
    lower = np.array([10.0, 21.0, 25.0, 0.0])
    upper = np.array([12.0, 30.0, 30.0, 39.0])
    # inside: 10 (on the lower bound), 30 (on the upper bound); outside: 20 (below), 40 (above)
    assert coverage(y, lower, upper) == pytest.approx(0.5)


def test_non_finite_pairs_are_ignored_and_empty_is_nan():
    y = np.array([100.0, np.nan, 200.0, np.inf])
    f = np.array([110.0, 5.0, 180.0, 1.0])
    assert mae(y, f) == pytest.approx(15.0)
    assert math.isnan(mae([], []))
    assert math.isnan(rmse([np.nan], [1.0]))
    assert math.isnan(coverage([], [], []))


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="different lengths"):
        mae([1.0, 2.0], [1.0])


def test_compute_metrics_scores_only_positive_actuals():
    lower = YHAT - 15
    upper = YHAT + 15
    m = compute_metrics(Y, YHAT, lower, upper)
    assert set(m) == set(METRIC_NAMES)
    # the y == 0 point (a closed day) is not scored: y = [100, 200, 50], yhat = [110, 180, 50]
    assert m["mae"] == pytest.approx(30 / 3)
    assert m["wape"] == pytest.approx(30 / 350)
    assert m["mape"] == pytest.approx(0.2 / 3)
    assert m["rmspe"] == pytest.approx(math.sqrt(0.02 / 3))
    assert m["smape"] == pytest.approx((20 / 210 + 40 / 380 + 0) / 3)
    # 200 is outside [165, 195]; 100 and 50 are inside
    assert m["coverage"] == pytest.approx(2 / 3)
    assert evaluation_mask(Y, YHAT).tolist() == [True, True, False, True]


def test_compute_metrics_without_interval_or_points():
    m = compute_metrics(Y, YHAT)
    assert math.isnan(m["coverage"])
    assert not math.isnan(m["wape"])
    empty = compute_metrics([0.0, 0.0], [1.0, 2.0], [0.0, 0.0], [3.0, 3.0])
    assert all(math.isnan(v) for v in empty.values())


def test_perfect_forecast():
    y = np.array([5.0, 7.0, 9.0])
    m = compute_metrics(y, y, y, y)
    assert m["mae"] == m["rmse"] == m["wape"] == m["rmspe"] == m["smape"] == m["mape"] == 0.0
    assert m["coverage"] == 1.0


# ----------------------------------------------------------------------------------------------
# One WAPE: backtest (per group and pooled) and realised (Spark) share the evaluation rule
# ----------------------------------------------------------------------------------------------
POINTS_Y = [100.0, 0.0, 50.0, 80.0, 0.0, 120.0]  # closed / zero-sales days score nothing
POINTS_YHAT = [90.0, 30.0, float("nan"), 100.0, 5.0, 150.0]


def test_realised_wape_in_spark_is_the_backtest_wape(spark):
    from pyspark.sql import functions as F

    from mlcore.forecasting.metrics import scored_wape

    frame = spark.createDataFrame(
        [(y, None if math.isnan(f) else f) for y, f in zip(POINTS_Y, POINTS_YHAT, strict=True)],
        "y double, yhat double",
    )
    (realised,) = frame.agg(scored_wape("y", "yhat").alias("wape")).first()
    expected = compute_metrics(POINTS_Y, POINTS_YHAT)["wape"]
    assert realised == pytest.approx(expected)
    assert expected == pytest.approx((10 + 20 + 30) / (100 + 80 + 120)), "zero-sales days excluded"
    (none,) = frame.filter(F.col("y") == 0).agg(scored_wape("y", "yhat")).first()
    assert none is None, "no scored day: no realised WAPE"


def test_pooled_backtest_metrics_use_the_per_group_rule(spark):
    """Pooled in Spark from sums (nothing per point on the driver), equal to compute_metrics
    over the same points for every metric."""
    import pandas as pd

    from mlcore.forecasting.results import aggregate_metrics, pooled_metrics

    points = pd.DataFrame({
        "store": [1, 1, 1, 2, 2, 2], "model": ["prophet"] * 3 + ["seasonal_naive"] * 3,
        "champion": ["prophet"] * 6, "y": POINTS_Y, "yhat": POINTS_YHAT,
    })  # fmt: skip
    groups = pd.DataFrame({
        "store": [1, 2], "champion": ["prophet", "prophet"], "fit_seconds": [1.0, 1.0],
        "backtest_seconds": [1.0, 1.0], "champion_wape": [0.1, 0.2], "champion_rmspe": [0.1, 0.2],
    })  # fmt: skip
    pooled = pooled_metrics(spark.createDataFrame(points.astype({"yhat": object}).where(points.notna(), None)))
    prophet = compute_metrics(POINTS_Y[:3], POINTS_YHAT[:3])
    naive = compute_metrics(POINTS_Y[3:], POINTS_YHAT[3:])
    for name in ("mae", "rmse", "mape", "smape", "wape", "rmspe"):
        assert pooled["prophet"][name] == pytest.approx(prophet[name], nan_ok=True), name
        assert pooled["seasonal_naive"][name] == pytest.approx(naive[name], nan_ok=True), name
    out = aggregate_metrics(groups, pooled)
    assert out["pooled_wape_prophet"] == pytest.approx(prophet["wape"]) == pytest.approx(10 / 100)
    assert out["pooled_rmspe_seasonal_naive"] == pytest.approx(naive["rmspe"])
    assert out["pooled_wape_champion"] == pytest.approx(prophet["wape"])


def test_gate_compares_challenger_and_champion_on_their_common_groups(spark):
    from mlcore.forecasting.promotion import compare_on_common_groups

    challenger = spark.createDataFrame(
        list(zip([1, 1, 2, 2, 3, 3], [100.0, 100.0, 100.0, 100.0, 100.0, 0.0],
                 [90.0, 110.0, 100.0, 100.0, 50.0, 10.0], strict=True)),
        "store int, y double, yhat double",
    )  # fmt: skip
    champion = spark.createDataFrame(
        list(zip([2, 2, 3, 3, 9], [100.0, 100.0, 100.0, 0.0, 100.0], [80.0, 80.0, 100.0, 5.0, 0.0],
                 strict=True)),
        "store int, y double, yhat double",
    )  # fmt: skip
    compared = compare_on_common_groups(challenger, champion, ["store"], "wape")
    assert compared.groups == 2, "stores 2 and 3: store 1 is new, store 9 left"
    assert compared.challenger_value == pytest.approx(50 / 300)
    assert compared.champion_value == pytest.approx(40 / 300)
    disjoint = compare_on_common_groups(challenger, champion.filter("store = 9"), ["store"], "wape")
    assert disjoint.groups == 0 and disjoint.champion_value is None
    assert compare_on_common_groups(challenger, None, ["store"], "wape") is None
