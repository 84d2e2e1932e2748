"""Driver-side model plumbing shared by the sklearn-model jobs (classifier, anomaly detector):
log a skops model with its mlcore metadata, register it once per run, run the promotion gate,
and load registered versions safely (mlcore's own skops allow-list, never pickle)."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlcore.io import model_files
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary

METADATA_KEY = "mlcore"
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


def log_and_register(
    ctx: JobContext,
    name: str,
    model: Any,
    input_example: Any,
    output_example: Any,
    metadata: Mapping[str, Any],
    tags: Mapping[str, str],
    predict_fn: str = "predict",
) -> Any:
    """Log ``model`` (skops, signature, input example, mlcore metadata) and register it with its
    tags and the run date in one call."""
    import mlflow
    from mlflow.models import infer_signature

    from mlcore.tracking.registry import ModelRegistry
    from mlcore.tracking.runs import TAG_RUN_DATE

    info = mlflow.sklearn.log_model(
        model,
        name="model",
        serialization_format="skops",
        skops_trusted_types=list(model_files.TRUSTED_TYPES),
        signature=infer_signature(input_example, output_example),
        input_example=input_example,
        pyfunc_predict_fn=predict_fn,
        metadata={METADATA_KEY: dict(metadata)},
    )
    return ModelRegistry().register(
        info.model_uri, name, {**tags, TAG_RUN_DATE: ctx.run_date.isoformat()}
    )


def apply_gate(
    ctx: JobContext,
    summary: JobSummary,
    name: str,
    version: str,
    metric: str,
    value: float,
    tolerance: float,
    champion_value: float | None = None,
    note: str = "",
    lower_is_better: bool = False,
    groups: int | None = None,
) -> None:
    """Run the champion/challenger gate and report it in the summary (dry runs move nothing)."""
    from mlcore.tracking.registry import ModelRegistry

    decision = ModelRegistry().decide_and_promote(
        name, version, metric, value, tolerance=tolerance,
        lower_is_better=lower_is_better, dry_run=ctx.dry_run, champion_value=champion_value,
        groups=groups,
    )  # fmt: skip
    report_decision(ctx, summary, decision, note)


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


def replay_registered(
    ctx: JobContext,
    summary: JobSummary,
    name: str,
    metric: str,
    tolerance: float,
    lower_is_better: bool = False,
) -> bool:
    """A rerun whose run already registered a version re-applies the gate from stored tags only."""
    if ctx.dry_run or not ctx.config.mlflow.enabled:
        return False
    from mlcore.tracking.registry import METRIC_TAG, ModelRegistry, stored_gate

    version = ModelRegistry().version_for_run(name, ctx.run_id)
    if version is None:
        return False
    # The numbers the first attempt compared (same groups), else the version's own metric.
    compared = stored_gate(version)
    value = compared.pop("value", None)
    if value is None:
        value = float(version.tags[METRIC_TAG.format(metric)])
    summary.add(
        "status",
        f"already trained and registered for this run date (v{version.version}): no new version",
    )
    apply_gate(
        ctx,
        summary,
        name,
        str(version.version),
        metric,
        value,
        tolerance,
        lower_is_better=lower_is_better,
        **compared,
    )
    return True
