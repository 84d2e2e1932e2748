"""Model registry: idempotent registration and champion/challenger promotion (driver only).

MLflow's registration and alias moves are neither atomic nor idempotent, so: a run's version is
looked up by run id before registering (a rerun never adds a version), the decision is computed
from metrics stored as version tags, and aliases move in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlcore.errors import MlcoreError

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
METRIC_TAG = "mlcore.metric.{}"
# What the gate compared when a version was registered (per-group models: both sides on the
# same groups), so that a replayed gate decides on the same numbers.
GATE_TAGS = {"value": "mlcore.gate.value", "champion_value": "mlcore.gate.champion_value",
             "groups": "mlcore.gate.groups"}  # fmt: skip


def gate_tags(value: float, champion_value: float | None, groups: int) -> dict[str, str]:
    tags = {GATE_TAGS["value"]: f"{value:.6f}", GATE_TAGS["groups"]: str(groups)}
    if champion_value is not None:
        tags[GATE_TAGS["champion_value"]] = f"{champion_value:.6f}"
    return tags


def stored_gate(version: Any) -> dict[str, Any]:
    """The gate inputs a version was registered with (empty when it recorded none)."""
    tags = version.tags
    if GATE_TAGS["value"] not in tags:
        return {}
    raw = tags.get(GATE_TAGS["champion_value"])
    return {
        "value": float(tags[GATE_TAGS["value"]]),
        "champion_value": float(raw) if raw is not None else None,
        "groups": int(tags[GATE_TAGS["groups"]]),
    }


@dataclass(frozen=True)
class PromotionDecision:
    """What the gate decided, and why (logged and printed in the job summary)."""

    model_name: str
    version: str
    metric: str
    challenger_value: float
    champion_version: str | None
    champion_value: float | None
    promoted: bool
    applied: bool
    reason: str


def version_for_run(client: Any, model_name: str, run_id: str) -> Any | None:
    """The registered version created by ``run_id`` (None if the run has not registered yet)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    except MlflowException:
        return None
    return max(versions, key=lambda v: int(v.version)) if versions else None


def champion_version(client: Any, model_name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def decide_and_promote(
    client: Any,
    model_name: str,
    version: str,
    metric: str,
    value: float,
    tolerance: float = 0.0,
    lower_is_better: bool = True,
    dry_run: bool = False,
    champion_value: float | None = None,
    groups: int | None = None,
) -> PromotionDecision:
    """Set ``challenger`` on ``version``; promote it to ``champion`` when no worse than the champion.

    "No worse" means ``value <= champion * (1 + tolerance)`` for lower-is-better metrics (and the
    mirror for higher-is-better). The first registered version becomes champion. With
    ``dry_run`` the decision is computed and returned but no alias moves. ``champion_value``
    (e.g. the champion re-evaluated on the challenger's holdout) replaces the champion's stored
    metric tag, so both sides are measured on the same data. ``groups`` is how many groups both
    values were computed on (per-group models): 0 means the two share none, and a challenger
    that cannot be compared never replaces a champion.
    """
    current = champion_version(client, model_name)
    current_value: float | None = champion_value if current is not None else None
    if current is not None and current_value is None:
        raw = current.tags.get(METRIC_TAG.format(metric))
        current_value = float(raw) if raw is not None else None
    if current is not None and str(current.version) == str(version):
        promoted, reason = True, f"version {version} is already champion"
    elif current is None:
        promoted, reason = True, "no champion yet: the first version becomes champion"
    elif groups == 0:
        promoted, reason = False, (
            f"no group in common with champion v{current.version}'s backtest: not comparable, "
            "champion kept"
        )
    elif current_value is None:
        promoted, reason = True, f"champion v{current.version} has no {metric} recorded"
    else:
        bound = current_value * (1 + tolerance) if lower_is_better else current_value * (1 - tolerance)
        promoted = value <= bound if lower_is_better else value >= bound
        relation = "<=" if lower_is_better else ">="
        reason = (
            f"{metric} {value:.4f} {relation if promoted else ('>' if lower_is_better else '<')} "
            f"champion v{current.version}'s {current_value:.4f} (tolerance {tolerance:g})"
        )
        if groups is not None:
            reason += f", both on the same {groups:,} groups"
    if not dry_run:
        client.set_registered_model_alias(model_name, CHALLENGER, str(version))
        if promoted:
            client.set_registered_model_alias(model_name, CHAMPION, str(version))
    decision = PromotionDecision(
        model_name=model_name,
        version=str(version),
        metric=metric,
        challenger_value=value,
        champion_version=None if current is None else str(current.version),
        champion_value=current_value,
        promoted=promoted,
        applied=not dry_run,
        reason=reason,
    )
    log.info("promotion %s v%s: %s (%s)", model_name, version, "promote" if promoted else "keep", reason)
    return decision


class ModelNotFound(MlcoreError, LookupError):
    """The requested registered model, version or alias does not exist."""


def resolve_version(client: Any, model_name: str, alias: str, version: int | None = None) -> Any:
    """The registered version to use: an explicit ``version``, else the one ``alias`` points at."""
    from mlflow.exceptions import MlflowException

    try:
        if version is not None:
            return client.get_model_version(model_name, str(version))
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        target = f"version {version}" if version is not None else f"alias {alias!r}"
        raise ModelNotFound(
            f"registered model {model_name!r} has no {target} ({type(exc).__name__}); "
            "train and register a model first, or set the version/alias to score with"
        ) from None


def download_version(model_name: str, version: str, dst: str) -> str:
    """Download a registered version's artifacts (no deserialisation) and return the folder."""
    import mlflow

    return mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}", dst_path=dst)


class ModelRegistry:
    """The registry as the pipelines use it: the one place that builds an ``MlflowClient`` (for
    the URIs ``configure_mlflow`` set) and the one register-with-tags call."""

    def __init__(self, client: Any | None = None) -> None:
        if client is None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient()
        self.client = client

    def version_for_run(self, model_name: str, run_id: str) -> Any | None:
        return version_for_run(self.client, model_name, run_id)

    def champion(self, model_name: str) -> Any | None:
        return champion_version(self.client, model_name)

    def resolve(self, model_name: str, alias: str, version: int | None = None) -> Any:
        return resolve_version(self.client, model_name, alias, version)

    def decide_and_promote(self, model_name: str, version: str, metric: str, value: float,
                           **options: Any) -> PromotionDecision:  # fmt: skip
        return decide_and_promote(self.client, model_name, version, metric, value, **options)

    def register(self, model_uri: str, model_name: str, tags: Mapping[str, str]) -> Any:
        """Register ``model_uri`` as a new version of ``model_name`` with its ``tags`` in the same
        call: a version never exists without its metric and run-date tags."""
        import mlflow
        from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM

        # MLflow prints "Successfully registered model" / "Created version" to stderr: the
        # promotion line and the job's summary already say which version this is.
        printing, MLFLOW_LOGGING_STREAM.enabled = MLFLOW_LOGGING_STREAM.enabled, False
        try:
            registered = mlflow.register_model(model_uri, model_name, tags=dict(tags))
        finally:
            MLFLOW_LOGGING_STREAM.enabled = printing
        return self.client.get_model_version(model_name, str(registered.version))

    def training_run_tag(self, version: Any, key: str) -> str | None:
        """A tag of the run that trained ``version`` (e.g. its run date)."""
        return self.client.get_run(version.run_id).data.tags.get(key)
