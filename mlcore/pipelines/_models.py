"""Driver-side model plumbing: load registered versions safely for scoring (mlcore's own skops
allow-list, never pickle), and register what a training stage proposes.

A training stage returns :class:`~mlcore.tracking.candidates.ModelCandidate` values; the runner
calls :func:`register_candidates` after publishing the stage's tables, so that a version is
registered once per run (looked up by run id first) with the written tables' versions in its
tags, and the gate moves the aliases. A replayed run (its version already registered) gets a
candidate without a model from :func:`replayed_candidate`: the gate is re-applied from the
numbers that version stored."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from typing import Any

from mlcore.io import model_files
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary
from mlcore.tracking.candidates import METADATA_KEY, ModelCandidate, log_candidate_model

THRESHOLD_TAG = "mlcore.threshold"


@dataclass(frozen=True)
class RegisteredModel:
    """A registered version, its skops bytes (for executors), the loaded model and its metadata."""

    name: str
    version: str
    data: bytes
    model: Any
    info: dict[str, Any]
    run_id: str | None = None  # the training run that logged this version


def load_version(name: str, version: str) -> RegisteredModel:
    """Download and load one version; refuses anything but skops within the allow-list."""
    from mlcore.tracking.registry import download_version

    with tempfile.TemporaryDirectory(prefix="mlcore_model_") as folder:
        data, metadata = model_files.read_mlflow_model_dir(download_version(name, version, folder))
    info = metadata.get(METADATA_KEY)
    if not isinstance(info, dict) or "features" not in info or "threshold" not in info:
        raise model_files.UnsafeModelError(
            f"{name} v{version} carries no mlcore features/threshold metadata"
        )
    return RegisteredModel(name, str(version), data, model_files.loads(data), info)


def resolve_for_scoring(
    ctx: JobContext, name: str, alias: str, version: int | None
) -> RegisteredModel:
    """The version to score with (explicit version, else alias), loaded on the driver first so
    that a missing alias or an unsafe file fails before any Spark work or output write."""
    from mlcore.tracking.registry import ModelNotFound, ModelRegistry

    if not ctx.config.mlflow.enabled:
        raise JobFailed(f"{ctx.job} needs the MLflow registry (mlflow.enabled is false)")
    try:
        found = ModelRegistry().resolve(name, alias, version)
        loaded = load_version(name, str(found.version))
        return dataclasses.replace(loaded, run_id=found.run_id)
    except ModelNotFound as exc:
        raise JobFailed(str(exc)) from None
    except model_files.UnsafeModelError as exc:
        raise JobFailed(str(exc)) from None


def load_champion(ctx: JobContext, name: str) -> tuple[RegisteredModel | None, str]:
    """The current champion, so it can be measured on the challenger's holdout (or why not)."""
    from mlcore.tracking.registry import ModelRegistry

    if not ctx.config.mlflow.enabled:
        return None, ""
    current = ModelRegistry().champion(name)
    if current is None:
        return None, "no champion yet"
    try:
        return load_version(name, str(current.version)), ""
    except (model_files.UnsafeModelError, KeyError, ValueError, OSError) as exc:
        return (
            None,
            f"champion v{current.version} could not be loaded ({type(exc).__name__}: {exc}); its stored metric is used",
        )


def register_candidates(ctx: JobContext, summary: JobSummary) -> None:
    """Register and gate each candidate the stage returned (after its tables are written:
    ``summary.writes`` gives their versions). A dry run decides against the champion without
    registering or moving an alias."""
    from mlcore.tracking.registry import ModelRegistry
    from mlcore.tracking.runs import TAG_RUN_DATE

    if not summary.candidates:
        return
    if not ctx.config.mlflow.enabled:
        summary.add("registry", "MLflow disabled: model not logged or registered")
        return
    written = {w.table: w.version for w in summary.writes}
    registry = ModelRegistry()
    for candidate in summary.candidates:
        version = registry.version_for_run(candidate.name, ctx.run_id)
        if version is None and candidate.model is None:
            raise JobFailed(f"{candidate.name}: no version registered by run {ctx.run_id} to replay")
        if version is None and not ctx.dry_run:
            tags = {
                **candidate.tags,
                **{tag: str(written.get(table)) for tag, table in candidate.version_tags.items()},
                TAG_RUN_DATE: ctx.run_date.isoformat(),
            }
            model_uri = log_candidate_model(candidate, written)
            version = registry.register(model_uri, candidate.name, tags)
        decision = registry.decide_and_promote(
            candidate.name,
            "(dry-run)" if version is None else str(version.version),
            candidate.metric,
            candidate.value,
            tolerance=candidate.tolerance,
            lower_is_better=candidate.lower_is_better,
            dry_run=ctx.dry_run or version is None,
            champion_value=candidate.champion_value,
            groups=candidate.groups,
        )
        report_decision(ctx, summary, decision, candidate.note)


def report_decision(ctx: JobContext, summary: JobSummary, decision: Any, note: str = "") -> None:
    """A promotion decision in the summary, the ``promoted`` metric and the manifest's lineage."""
    summary.add(
        "registry",
        f"{decision.model_name} v{decision.version}: "
        + ("champion" if decision.promoted else "challenger only")
        + ("" if decision.applied else " (dry run: aliases not moved)")
        + f" — {decision.reason}"
        + (f" [{note}]" if note else ""),
    )
    summary.metrics["promoted"] = 1.0 if decision.promoted else 0.0
    if decision.applied:
        summary.use_model(decision.model_name, decision.version, "produced", ctx.run_id)
    summary.gates[f"promotion:{decision.model_name}"] = (
        "promoted" if decision.promoted else "not promoted"
    ) + f": {decision.reason}"


def replayed_candidate(
    ctx: JobContext,
    summary: JobSummary,
    name: str,
    metric: str,
    tolerance: float,
    lower_is_better: bool = False,
) -> ModelCandidate | None:
    """For a rerun whose run already registered a version: a candidate without a model, whose
    gate decides on the numbers that version stored (None when there is nothing to replay)."""
    if ctx.dry_run or not ctx.config.mlflow.enabled:
        return None
    from mlcore.tracking.registry import METRIC_TAG, ModelRegistry, stored_gate

    version = ModelRegistry().version_for_run(name, ctx.run_id)
    if version is None:
        return None
    # The numbers the first attempt compared (same groups), else the version's own metric.
    compared = stored_gate(version)
    value = compared.pop("value", None)
    if value is None:
        value = float(version.tags[METRIC_TAG.format(metric)])
    summary.add(
        "status",
        f"already trained and registered for this run date (v{version.version}): no new version",
    )
    return ModelCandidate(
        name, None, metric, value, tolerance, lower_is_better=lower_is_better, **compared
    )
