"""Pickle-free model files (skops) with an allow-list that lives in this code, not in the model.

MLflow's own sklearn loader takes the skops trusted-type list from the model's MLmodel file, so a
crafted model can trust anything. mlcore loads the ``model.skops`` file itself with the fixed
``TRUSTED_TYPES`` below (on top of skops' defaults) and refuses pickle or cloudpickle formats
outright, so scoring works with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from mlcore.errors import MlcoreError

# Types skops does not trust by default that our pipelines contain (numpy dtypes and the fitted
# tree and neighbour-index structures of the allowed estimators). Nothing here can run code when loaded.
TRUSTED_TYPES = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
)
SKOPS_FILE = "model.skops"


_WORKER_MODELS: dict[str, Any] = {}


class UnsafeModelError(MlcoreError, RuntimeError):
    """The model file would need pickle or an untrusted type to load: refused."""


def dumps(model: Any) -> bytes:
    """Serialise with skops and prove it reloads under the allow-list before anyone stores it."""
    import skops.io

    data = skops.io.dumps(model)
    loads(data)
    return data


def loads(data: bytes) -> Any:
    """Load skops bytes under the allow-list; anything else (a pickle, a truncated or foreign
    file) is an ``UnsafeModelError``, never a fallback to another loader."""
    import zipfile

    import skops.io

    if not data.startswith(b"PK"):  # skops files are zip archives; pickles start with b"\x80"
        raise UnsafeModelError("model file is not a skops archive (a pickle?); refusing to load")
    try:
        untrusted = [t for t in skops.io.get_untrusted_types(data=data) if t not in TRUSTED_TYPES]
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise UnsafeModelError(
            f"model file is not a valid skops archive ({type(exc).__name__}); refusing to load"
        ) from None
    if untrusted:
        raise UnsafeModelError(
            f"model file references untrusted types {untrusted}; refusing to load"
        )
    return skops.io.loads(data, trusted=list(TRUSTED_TYPES))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_mlflow_model_dir(path: str | Path) -> tuple[bytes, dict[str, Any]]:
    """The skops bytes and the ``metadata`` of a downloaded MLflow sklearn model directory.

    Only the skops serialisation is accepted; a pickle or cloudpickle model is refused without
    reading its bytes.
    """
    root = Path(path)
    mlmodel_path = root / "MLmodel"
    if not mlmodel_path.is_file():
        raise UnsafeModelError(f"{root} is not an MLflow model directory (no MLmodel file)")
    try:
        mlmodel = yaml.safe_load(mlmodel_path.read_text())
    except yaml.YAMLError as exc:  # python/object tags, malformed YAML: never constructed
        raise UnsafeModelError(
            f"{mlmodel_path}: refusing an MLmodel file that is not plain YAML: {exc}"
        ) from None
    if not isinstance(mlmodel, dict) or not isinstance(mlmodel.get("flavors") or {}, dict):
        raise UnsafeModelError(f"{mlmodel_path}: not an MLflow model description")
    flavor = (mlmodel.get("flavors") or {}).get("sklearn") or {}
    serialization = flavor.get("serialization_format")
    if serialization != "skops":
        raise UnsafeModelError(
            f"model at {root} is stored as {serialization or 'an unknown format'!r}; mlcore only "
            "loads skops models (pickle deserialisation is disabled)"
        )
    model_file = root / flavor.get("pickled_model", SKOPS_FILE)
    if model_file.resolve().parent != root.resolve():
        raise UnsafeModelError(f"model file {model_file} lies outside the model directory")
    return model_file.read_bytes(), dict(mlmodel.get("metadata") or {})


def worker_model(data: bytes, model_digest: str) -> Any:
    """The deserialised model for this Python worker (one load per model, not per batch)."""
    model = _WORKER_MODELS.get(model_digest)
    if model is None:
        _WORKER_MODELS.clear()
        model = _WORKER_MODELS[model_digest] = loads(data)
    return model
