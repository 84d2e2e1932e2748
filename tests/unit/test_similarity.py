"""Store similarity on synthetic profiles (pure numpy/pandas): nearest neighbours, scores,
block weights and independence from how the stores are split into tasks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcore.forecasting.similarity import (
    NEIGHBOUR_COLUMNS,
    PROFILE_BLOCKS,
    PROFILE_COLUMNS,
    nearest_neighbours,
    profile_matrix,
)

WEIGHTS = {"shape": 1.0, "seasonality": 1.0, "level": 1.0, "attributes": 0.5}


def profiles(count: int = 40, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(count, len(PROFILE_COLUMNS))), columns=list(PROFILE_COLUMNS))
    frame.insert(0, "store", np.arange(101, 101 + count))
    frame["mean_sales"] = rng.uniform(3000, 9000, count)
    frame["days"] = 300
    return frame


def test_a_twin_store_is_the_nearest_with_similarity_one():
    frame = profiles()
    twin = frame.iloc[[4]].assign(store=999, mean_sales=frame["mean_sales"].iloc[4] * 2)
    scaled = profile_matrix(pd.concat([frame, twin]), "store", WEIGHTS)
    position = int(np.flatnonzero(scaled.keys == 105)[0])
    result = nearest_neighbours(scaled, [position], k=5, key="store")
    assert list(result.columns) == ["store", "neighbour", *NEIGHBOUR_COLUMNS]
    first = result.iloc[0]
    assert first["neighbour"] == 999 and first["similarity"] == pytest.approx(1.0)
    assert first["level_ratio"] == pytest.approx(2.0)
    assert list(result["rank"]) == [1, 2, 3, 4, 5]
    assert (np.diff(result["distance"]) >= 0).all() and (result["neighbour"] != 105).all()
    blocks = result[[f"{b}_distance" for b in PROFILE_BLOCKS]].to_numpy()
    assert np.sqrt((blocks**2).sum(axis=1)) == pytest.approx(result["distance"].to_numpy())


def test_results_do_not_depend_on_how_stores_are_split_into_tasks():
    scaled = profile_matrix(profiles(57), "store", WEIGHTS)
    whole = nearest_neighbours(scaled, range(57), k=6, key="store")
    parts = pd.concat(
        [nearest_neighbours(scaled, range(a, min(a + 10, 57)), k=6, key="store") for a in range(0, 57, 10)],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(whole, parts)
    assert len(whole) == 57 * 6


def test_a_block_with_zero_weight_does_not_count():
    frame = profiles(30)
    rng = np.random.default_rng(9)
    shuffled = frame.copy()
    seasonality = list(PROFILE_BLOCKS["seasonality"])
    shuffled[seasonality] = rng.normal(size=(30, len(seasonality)))
    weights = dict(WEIGHTS, seasonality=0.0)
    one = nearest_neighbours(profile_matrix(frame, "store", weights), range(30), 4, "store")
    two = nearest_neighbours(profile_matrix(shuffled, "store", weights), range(30), 4, "store")
    assert one["neighbour"].to_list() == two["neighbour"].to_list()
    with_it = nearest_neighbours(profile_matrix(shuffled, "store", WEIGHTS), range(30), 4, "store")
    assert with_it["neighbour"].to_list() != two["neighbour"].to_list()


def test_missing_and_constant_columns_and_few_stores():
    frame = profiles(3)
    frame["log_competition_distance"] = [np.nan, 2.0, 4.0]  # unknown distance: the median
    frame["promo2"] = 1.0  # constant: contributes nothing
    scaled = profile_matrix(frame, "store", WEIGHTS)
    assert np.isfinite(scaled.vectors).all()
    result = nearest_neighbours(scaled, range(3), k=10, key="store")
    assert len(result) == 3 * 2  # k is capped at the other stores
    assert nearest_neighbours(profile_matrix(frame.head(1), "store", WEIGHTS), [0], 3, "store").empty
