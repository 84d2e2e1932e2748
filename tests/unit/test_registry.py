"""Champion/challenger promotion against a real (sqlite) MLflow model registry."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from mlcore.tracking.registry import (
    CHALLENGER,
    CHAMPION,
    METRIC_TAG,
    champion_version,
    decide_and_promote,
)

NAME = "store_forecaster"


@pytest.fixture
def client(mlcore_home) -> MlflowClient:
    uri = f"sqlite:///{mlcore_home / 'registry.db'}"
    registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
    registry.create_registered_model(NAME)
    return registry


def new_version(client: MlflowClient, wape: float) -> str:
    version = client.create_model_version(NAME, source=f"file:///models/{wape}")
    client.set_model_version_tag(NAME, version.version, METRIC_TAG.format("wape"), str(wape))
    return str(version.version)


def aliases(client: MlflowClient) -> dict[str, str]:
    return {a: str(client.get_model_version_by_alias(NAME, a).version) for a in (CHAMPION, CHALLENGER)}


def test_first_version_becomes_champion_and_worse_one_stays_challenger(client):
    v1 = new_version(client, 0.12)
    first = decide_and_promote(client, NAME, v1, "wape", 0.12)
    assert first.promoted and "first version" in first.reason
    assert aliases(client) == {CHAMPION: v1, CHALLENGER: v1}

    v2 = new_version(client, 0.13)
    worse = decide_and_promote(client, NAME, v2, "wape", 0.13)
    assert not worse.promoted
    assert worse.champion_version == v1 and worse.champion_value == pytest.approx(0.12)
    assert aliases(client) == {CHAMPION: v1, CHALLENGER: v2}

    v3 = new_version(client, 0.12)
    equal = decide_and_promote(client, NAME, v3, "wape", 0.12)
    assert equal.promoted, "no worse than the champion is enough"
    assert aliases(client) == {CHAMPION: v3, CHALLENGER: v3}


def test_tolerance_and_dry_run(client):
    v1 = new_version(client, 0.10)
    decide_and_promote(client, NAME, v1, "wape", 0.10)
    v2 = new_version(client, 0.104)
    strict = decide_and_promote(client, NAME, v2, "wape", 0.104, tolerance=0.0, dry_run=True)
    assert not strict.promoted and not strict.applied
    lenient = decide_and_promote(client, NAME, v2, "wape", 0.104, tolerance=0.05, dry_run=True)
    assert lenient.promoted and not lenient.applied
    assert aliases(client) == {CHAMPION: v1, CHALLENGER: v1}, "dry runs move no alias"
    decide_and_promote(client, NAME, v2, "wape", 0.104, tolerance=0.05)
    assert str(champion_version(client, NAME).version) == v2


def test_higher_is_better_metrics(client):
    v1 = new_version(client, 0.80)
    decide_and_promote(client, NAME, v1, "wape", 0.80, lower_is_better=False)
    v2 = new_version(client, 0.70)
    assert not decide_and_promote(client, NAME, v2, "wape", 0.70, lower_is_better=False).promoted
    v3 = new_version(client, 0.85)
    assert decide_and_promote(client, NAME, v3, "wape", 0.85, lower_is_better=False).promoted


def test_champion_measured_on_the_challengers_holdout_overrides_its_stored_tag(client):
    """Higher-is-better gate (F1) where the champion is re-evaluated on the same holdout."""
    v1 = new_version(client, 0.50)
    decide_and_promote(client, NAME, v1, "wape", 0.50, lower_is_better=False)
    v2 = new_version(client, 0.46)
    # Stored tag 0.50 would keep v1, but on today's holdout v1 only reaches 0.44.
    decision = decide_and_promote(client, NAME, v2, "wape", 0.46, lower_is_better=False, champion_value=0.44)
    assert decision.promoted and decision.champion_value == pytest.approx(0.44)
    assert aliases(client) == {CHAMPION: v2, CHALLENGER: v2}
    v3 = new_version(client, 0.40)
    dry = decide_and_promote(client, NAME, v3, "wape", 0.40, lower_is_better=False, dry_run=True, champion_value=0.46)
    assert not dry.promoted and not dry.applied and aliases(client) == {CHAMPION: v2, CHALLENGER: v2}


def test_per_group_models_are_compared_on_the_same_groups(client):
    """A challenger measured on other groups than the champion is never promoted on that
    comparison: with no group in common the champion stays; with common groups the decision
    says how many."""
    v1 = new_version(client, 0.11)
    decide_and_promote(client, NAME, v1, "wape", 0.11)
    v2 = new_version(client, 0.10)
    apart = decide_and_promote(client, NAME, v2, "wape", 0.10, champion_value=None, groups=0)
    assert not apart.promoted and "no group in common" in apart.reason
    assert aliases(client) == {CHAMPION: v1, CHALLENGER: v2}
    v3 = new_version(client, 0.10)
    same = decide_and_promote(client, NAME, v3, "wape", 0.105, champion_value=0.100, groups=100)
    assert not same.promoted, "worse on the champion's own 100 groups, whatever the full pool says"
    assert same.reason.endswith("both on the same 100 groups")
    assert same.champion_value == pytest.approx(0.100) and same.challenger_value == pytest.approx(0.105)
