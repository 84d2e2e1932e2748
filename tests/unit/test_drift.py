"""Drift statistics and binning (mlcore/drift/): PSI, binned KS, chi-square, their noise
bounds, and the Spark counts they are computed from, on hand-checked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlcore.drift.binned import categorical_counts, merge_bins, numeric_counts
from mlcore.drift.metrics import (
    chi_square_pvalue,
    ks_critical_value,
    ks_from_bins,
    psi,
    psi_noise_floor,
    shares,
)


def test_psi_is_zero_for_equal_shares_and_matches_the_formula():
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    r, c = np.array([0.5, 0.5]), np.array([0.8, 0.2])
    assert psi([50, 50], [80, 20]) == pytest.approx(float(np.sum((c - r) * np.log(c / r))))
    assert math.isfinite(psi([10, 0], [0, 10])), "empty bins are floored, not infinite"
    assert psi([1, 1], [0, 0]) > 0 and shares([0, 0]).tolist() == [0.0, 0.0]


def test_binned_ks_is_the_largest_gap_of_cumulative_shares():
    assert ks_from_bins([25, 25, 25, 25], [25, 25, 25, 25]) == pytest.approx(0.0)
    assert ks_from_bins([50, 50, 0, 0], [0, 0, 50, 50]) == pytest.approx(1.0)
    # cumulative shares [0.4, 0.7, 1.0] and [0.1, 0.4, 1.0]: gaps 0.3, 0.3, 0
    assert ks_from_bins([40, 30, 30], [10, 30, 60]) == pytest.approx(0.3)
    assert ks_from_bins([], []) == 0.0


def test_chi_square_separates_shifted_categories_and_ignores_empty_ones():
    assert chi_square_pvalue([100, 100, 0], [100, 100, 0]) == pytest.approx(1.0)
    assert chi_square_pvalue([500, 500], [800, 200]) < 1e-10
    assert chi_square_pvalue([10], [20]) == 1.0, "one category: nothing to test"
    assert chi_square_pvalue([0, 0], [5, 5]) == 1.0, "an empty window: nothing to test"


def test_noise_bounds_shrink_with_sample_size():
    assert psi_noise_floor(10, 100, 100) == pytest.approx(3 * 9 * (0.01 + 0.01))
    assert psi_noise_floor(10, 10_000, 10_000) < psi_noise_floor(10, 100, 100)
    # The textbook two-sample KS critical value at alpha 0.05 is 1.358 * sqrt((n + m) / (n m)).
    assert ks_critical_value(100, 100, 0.05) == pytest.approx(1.358 * math.sqrt(200 / 10_000), rel=1e-3)


def test_fine_bins_merge_into_the_coarse_quantile_bins():
    assert merge_bins([1, 2, 3, 4, 5, 6], 3) == [3.0, 7.0, 11.0]
    assert merge_bins([1, 2, 3, 4], 1) == [10.0]


def test_numeric_counts_bin_both_windows_at_the_references_quantiles(spark):
    reference = spark.createDataFrame([(float(v), "a") for v in range(100)], "x double, g string")
    shifted = spark.createDataFrame([(float(v) + 50, "a") for v in range(100)] + [(float("nan"), "a")],
                                    "x double, g string")  # fmt: skip
    ((group, (ref, cur, n_ref, n_cur)),) = numeric_counts(reference, shifted, "x", [], 4).items()
    assert group is None and n_ref == 100 and n_cur == 100, "NaN values are left out"
    assert sum(ref) == 100 and all(20 <= count <= 30 for count in ref), "quartiles of the reference"
    assert cur[0] == 0 and cur[-1] >= 70, "the shifted window lands in the top bins"
    grouped = numeric_counts(reference, shifted, "x", ["g"], 4)
    assert set(grouped) == {"a"} and grouped["a"][2:] == (100, 100)


def test_categorical_counts_align_categories_and_count_nulls(spark):
    reference = spark.createDataFrame([("a",), ("a",), ("b",), (None,)], "c string")
    current = spark.createDataFrame([("b",), ("b",), ("c",)], "c string")
    ((group, (ref, cur, n_ref, n_cur, categories)),) = categorical_counts(
        reference, current, "c", []
    ).items()
    counts = {name: (r, c) for name, r, c in zip(categories, ref, cur, strict=True)}
    assert group is None and (n_ref, n_cur) == (4, 3)
    assert counts == {"a": (2.0, 0.0), "b": (1.0, 2.0), "c": (0.0, 1.0), "__null__": (1.0, 0.0)}


def test_compare_flags_a_shifted_feature_per_group_and_leaves_small_groups_out(spark):
    from mlcore.config.models import DriftConfig
    from mlcore.drift.compare import Comparison, compare

    rows = [(float(v % 200), "big") for v in range(2000)] + [(1.0, "tiny")] * 5
    reference = spark.createDataFrame(rows, "x double, g string")
    current = spark.createDataFrame(
        [(float(v % 200) + 120, "big") for v in range(2000)] + [(9.0, "tiny")] * 5,
        "x double, g string",
    )
    comparison = Comparison("m", "t", reference, current, "ref", "cur", numeric=["x"], group_keys=["g"])
    config = DriftConfig()
    result = compare(comparison, config)
    assert result.too_small == 1, "the 5-row group is below drift.min_rows: counted, not compared"
    by_metric = {row["metric"]: row for row in result.rows}
    assert set(by_metric) == {"psi", "ks"} and all(row["group_key"] == "big" for row in result.rows)
    assert result.distributions == [], "distributions are drawn for ungrouped comparisons only"
    assert by_metric["psi"]["drifted"] and by_metric["ks"]["drifted"]
    assert by_metric["psi"]["threshold"] >= config.psi_threshold  # never below the noise floor
    unchanged = compare(
        Comparison("m", "t", reference, reference, "ref", "ref", numeric=["x"], group_keys=["g"]),
        config,
    )
    assert not any(row["drifted"] for row in unchanged.rows)
    overall = compare(Comparison("m", "t", reference, current, "ref", "cur", numeric=["x"]), config)
    (shape,) = overall.distributions
    assert shape.drifted and len(shape.labels) == config.psi_bins
    assert abs(sum(shape.reference) - 1) < 1e-9 and abs(sum(shape.current) - 1) < 1e-9
    assert shape.current[0] < shape.reference[0] and shape.current[-1] > shape.reference[-1]
