"""Unsafe loading: models load with pickle deserialisation disabled (skops under mlcore's own
allow-list, Prophet models as JSON); planted pickles, untrusted skops types, YAML python tags and
model files outside their model folder are refused, and their payload (which would create a
sentinel file) never runs.

End to end through score_classifier (a cloudpickle champion refused, scoring working with
MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false): tests/integration/test_classifier_jobs.py::
test_scoring_needs_no_pickle_and_refuses_a_pickled_champion.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from mlcore.io import model_files

pytestmark = pytest.mark.reliability


class _Payload:
    """Unpickling this creates the sentinel file: proof that pickle ran."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a planted payload was executed"


def model_dir(root: Path, mlmodel: str, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "MLmodel").write_text(mlmodel)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


SKOPS_MLMODEL = (
    "flavors:\n  sklearn:\n    pickled_model: model.skops\n    serialization_format: skops\n"
)


def test_pickle_planted_under_a_skops_name_is_refused(tmp_path, sentinel):
    planted = pickle.dumps(_Payload(sentinel))
    folder = model_dir(tmp_path / "m", SKOPS_MLMODEL, {"model.skops": planted})
    data, _ = model_files.read_mlflow_model_dir(folder)
    with pytest.raises(model_files.UnsafeModelError, match="not a skops archive"):
        model_files.loads(data)
    cloudpickle_dir = model_dir(
        tmp_path / "c",
        "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    serialization_format: cloudpickle\n",
        {"model.pkl": planted},
    )
    with pytest.raises(model_files.UnsafeModelError, match="only loads skops"):
        model_files.read_mlflow_model_dir(cloudpickle_dir)


def test_skops_file_with_a_code_reference_is_refused(sentinel):
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    rogue = FunctionTransformer(os.system, kw_args={"command": f"touch {sentinel}"})
    with pytest.raises(model_files.UnsafeModelError, match=r"untrusted types \[.*system"):
        model_files.loads(skops.io.dumps(rogue))


def test_mlmodel_with_python_tags_or_escaping_paths_is_refused(tmp_path, sentinel):
    tagged = f"flavors: !!python/object/apply:os.system ['touch {sentinel}']\n"
    with pytest.raises(model_files.UnsafeModelError, match="not plain YAML"):
        model_files.read_mlflow_model_dir(model_dir(tmp_path / "t", tagged, {}))

    outside = tmp_path / "outside.skops"
    outside.write_bytes(b"PK")
    escaping = SKOPS_MLMODEL.replace("model.skops", "../outside.skops")
    with pytest.raises(model_files.UnsafeModelError, match="outside the model directory"):
        model_files.read_mlflow_model_dir(model_dir(tmp_path / "e", escaping, {}))
    linked = model_dir(tmp_path / "l", SKOPS_MLMODEL, {})
    os.symlink(outside, linked / "model.skops")
    with pytest.raises(model_files.UnsafeModelError, match="outside the model directory"):
        model_files.read_mlflow_model_dir(linked)


def test_registered_version_with_a_planted_pickle_is_refused(
    mlcore_home, monkeypatch, tmp_path, sentinel
):
    """A registered version whose files were replaced by a pickle (same name, same MLmodel)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from mlcore.pipelines import _models

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    uri = f"sqlite:///{mlcore_home / 'mlflow' / 'mlflow.db'}"
    (mlcore_home / "mlflow").mkdir()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    metadata = "metadata:\n  mlcore: {features: [age], threshold: 0.5}\n"
    folder = model_dir(
        tmp_path / "model",
        SKOPS_MLMODEL + metadata,
        {"model.skops": pickle.dumps(_Payload(sentinel))},
    )
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), "model")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "bank_classifier")
    MlflowClient().set_registered_model_alias("bank_classifier", "champion", version.version)
    with pytest.raises(model_files.UnsafeModelError, match="not a skops archive"):
        _models.load_version("bank_classifier", str(version.version))


def test_yaml_config_with_python_tags_is_refused(tmp_path, sentinel):
    import shutil

    from mlcore.config.loader import ConfigError, load_config
    from tests.conftest import CONF_DIR

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "test" / "evil.yml").write_text(
        f"run: !!python/object/apply:os.system ['touch {sentinel}']\n"
    )
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config("test", conf_dir=conf)


def test_forecast_models_are_json_only():
    from mlcore.forecasting.families import load_model

    with pytest.raises(ValueError, match="unknown model_type 'pickle'"):
        load_model('{"model_type": "pickle", "payload": "gASV..."}')
    with pytest.raises(ValueError, match="Expecting value"):  # not JSON: never unpickled
        load_model(pickle.dumps({"model_type": "prophet"}).decode("latin-1"))
