"""A model a training stage proposes, as data: what to log, how to tag it, what the gate compares.

A stage never calls MLflow to register or promote; it returns :class:`ModelCandidate` values and
the runner, after the stage's tables are published, logs the model to the job's run, registers
it with its tags in one call (:meth:`ModelRegistry.register`) and runs the champion/challenger
gate. The written tables' versions (``forecast_models`` at the version this run wrote) reach the
model's tags (``ModelCandidate.version_tags``) and a pyfunc's config
(``PyfuncModel.config_versions``): they are known only after the write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

METADATA_KEY = "mlcore"  # the MLflow model metadata entry with mlcore's features and threshold


@dataclass(frozen=True)
class SklearnModel:
    """A fitted scikit-learn model, logged in skops format (never pickle) with its signature
    (from the example input and output), input example and mlcore metadata."""

    model: Any
    input_example: Any
    output_example: Any
    metadata: Mapping[str, Any]
    predict_fn: str = "predict"


@dataclass(frozen=True)
class PyfuncModel:
    """An MLflow "models from code" pyfunc: the code file, its config, signature, example and
    requirements. ``config_versions`` maps a config key to a table whose written version fills
    it (the pyfunc reads that table at that version)."""

    artifact_name: str
    code_path: str
    model_config: Mapping[str, Any]
    signature: Any
    input_example: Any
    pip_requirements: tuple[str, ...]
    config_versions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelCandidate:
    """One model for the registry and the gate.

    ``model`` None: the version this run registered on an earlier attempt (a replay re-applies
    the gate from what that version stored). ``value`` is what the gate compares (with
    ``champion_value`` and ``groups`` when the stage measured the champion on the same data);
    ``tags`` go on the version, plus ``version_tags`` (tag -> table: the table's written
    version as the tag's value). ``note`` is shown beside the decision."""

    name: str
    model: SklearnModel | PyfuncModel | None
    metric: str
    value: float
    tolerance: float
    lower_is_better: bool = False
    champion_value: float | None = None
    groups: int | None = None
    note: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    version_tags: Mapping[str, str] = field(default_factory=dict)


def log_candidate_model(
    candidate: ModelCandidate, table_versions: Mapping[str, int | None]
) -> str:
    """Log the candidate's model to the active MLflow run; returns its model URI."""
    import mlflow

    model = candidate.model
    if isinstance(model, SklearnModel):
        from mlflow.models import infer_signature

        from mlcore.io import model_files

        info = mlflow.sklearn.log_model(
            model.model,
            name="model",
            serialization_format="skops",
            skops_trusted_types=list(model_files.TRUSTED_TYPES),
            signature=infer_signature(model.input_example, model.output_example),
            input_example=model.input_example,
            pyfunc_predict_fn=model.predict_fn,
            metadata={METADATA_KEY: dict(model.metadata)},
        )
        return str(info.model_uri)
    if isinstance(model, PyfuncModel):
        config = dict(model.model_config)
        config.update({key: table_versions.get(t) for key, t in model.config_versions.items()})
        info = mlflow.pyfunc.log_model(
            name=model.artifact_name,
            python_model=model.code_path,
            model_config=config,
            signature=model.signature,
            input_example=model.input_example,
            pip_requirements=list(model.pip_requirements),
        )
        return str(info.model_uri)
    raise ValueError(f"{candidate.name}: nothing to log (a replayed candidate)")
