"""train_classifier + score_classifier through the job runner on the synthetic bank table: registry
gate, idempotent reruns, pickle-free loading, bad-input errors that write nothing, and the Spark
search equal to the local one."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient

from mlcore.runner import run_job
from tests.conftest import CONF_DIR

ARGS = ["--env", "test", "--conf-dir", str(CONF_DIR)]
DAY1, DAY2 = ["--run-date", "2015-06-14"], ["--run-date", "2015-06-15"]
SCORE_COLUMNS = [
    "row_key", "probability", "label", "model_name", "model_version", "threshold", "run_id", "run_date", "scored_at",
]  # fmt: skip


def registry(home: Path) -> MlflowClient:
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def aliases(client: MlflowClient) -> dict[str, str]:
    model = client.get_registered_model("bank_classifier")
    return {alias: str(version) for alias, version in model.aliases.items()}


@pytest.fixture
def trained(spark, mlcore_home, capsys) -> MlflowClient:
    assert run_job("ingest_bank", [*ARGS, *DAY1]) == 0
    assert run_job("train_classifier", [*ARGS, *DAY1]) == 0
    capsys.readouterr()
    return registry(mlcore_home)


def test_train_registers_skops_model_with_threshold_and_artifacts(trained, mlcore_home, capsys):
    client = trained
    versions = client.search_model_versions("name = 'bank_classifier'")
    assert len(versions) == 1 and aliases(client) == {"champion": "1", "challenger": "1"}
    version = versions[0]
    threshold = float(version.tags["mlcore.threshold"])
    assert 0.0 < threshold < 1.0 and float(version.tags["mlcore.metric.f1"]) > 0.0

    run = client.get_run(version.run_id)
    assert run.data.tags["mlcore.job"] == "train_classifier"
    assert run.data.metrics["search_candidates"] == 3 and run.data.metrics["rows_holdout"] == 160
    assert {"holdout_f1", "holdout_roc_auc", "holdout_pr_auc", "holdout_tp", "cv_f1"} <= set(run.data.metrics)
    # Files, not folders of one file (plots/roc_curve.png/roc_curve.png): one click opens each.
    artifacts = {a.path for folder in ("", "search", "plots", "evaluation", "model")
                 for a in client.list_artifacts(run.info.run_id, folder) if not a.is_dir}  # fmt: skip
    assert {
        "search/search_results.csv", "plots/roc_curve.png", "plots/pr_curve.png", "plots/feature_importance.png",
        "evaluation/confusion_matrix.csv",
    } <= artifacts  # fmt: skip
    model_dir = Path(client.download_artifacts(run.info.run_id, "model", str(mlcore_home / "dl")))
    mlmodel = (model_dir / "MLmodel").read_text()
    assert "serialization_format: skops" in mlmodel and "signature" in mlmodel and (model_dir / "model.skops").exists()
    assert not list(model_dir.rglob("*.pkl")), "no pickle files in the model"

    # Same run date again: no new version, no new run, gate re-applied idempotently.
    assert run_job("train_classifier", [*ARGS, *DAY1]) == 0
    assert "already trained and registered" in capsys.readouterr().out
    assert len(client.search_model_versions("name = 'bank_classifier'")) == 1
    runs = client.search_runs([run.info.experiment_id], "tags.`mlcore.job` = 'train_classifier'")
    assert len(runs) == 1


def test_promotion_gate_in_the_job(trained, capsys):
    client = trained
    # Dry run for a new date: decides, registers nothing, moves nothing.
    assert run_job("train_classifier", [*ARGS, *DAY2, "--dry-run"]) == 0
    assert "dry run: aliases not moved" in capsys.readouterr().out
    assert len(client.search_model_versions("name = 'bank_classifier'")) == 1
    # A deliberately weak feature set: registered as challenger, champion stays.
    weak = ["--set", "classification.categorical_columns=[education]", "--set", "classification.numeric_columns=[]"]
    assert run_job("train_classifier", [*ARGS, *DAY2, *weak]) == 0
    out = capsys.readouterr().out
    assert "challenger only" in out and "re-evaluated on this holdout" in out
    assert aliases(client) == {"champion": "1", "challenger": "2"}


def test_score_writes_idempotent_scores_at_the_stored_threshold(trained, spark, tables, mlcore_home):
    assert run_job("score_classifier", [*ARGS, *DAY1]) == 0
    path = str(mlcore_home / "lake" / "bank_scores")
    first = DeltaTable(path)
    scores = first.to_pandas()
    bank_rows = len(DeltaTable(str(mlcore_home / "lake" / "bank")).to_pandas())
    assert list(scores.columns) == SCORE_COLUMNS and len(scores) == bank_rows
    threshold = float(trained.get_model_version("bank_classifier", "1").tags["mlcore.threshold"])
    np.testing.assert_allclose(scores["threshold"], threshold, rtol=1e-5)
    np.testing.assert_array_equal(scores["label"], (scores["probability"] >= scores["threshold"]).astype(int))
    assert set(scores["model_version"]) == {1} and set(scores["model_name"]) == {"bank_classifier"}
    assert scores["scored_at"].nunique() == 1 and scores["run_id"].nunique() == 1
    assert 0.0 < scores["label"].mean() < 0.6
    # The reported counts come from the write itself (commit info), not from a read-back.
    info = first.history(1)[0]
    assert json.loads(info["mlcore.totals"]) == {"label": int(scores["label"].sum())}
    experiments = [e.experiment_id for e in trained.search_experiments()]
    [run] = trained.search_runs(experiments, "tags.`mlcore.job` = 'score_classifier'")
    assert run.data.metrics["rows_scored"] == len(scores) == int(info["mlcore.rows"])
    assert run.data.metrics["rows_positive"] == scores["label"].sum()

    assert run_job("score_classifier", [*ARGS, *DAY1]) == 0
    again = DeltaTable(path)
    assert again.version() == first.version(), "a rerun for the same run date commits nothing"
    assert run_job("score_classifier", [*ARGS, *DAY2, "--dry-run"]) == 0
    assert DeltaTable(path).version() == first.version(), "a dry run writes nothing"
    assert run_job("score_classifier", [*ARGS, *DAY2]) == 0
    both = DeltaTable(path).to_pandas()
    assert both.groupby("run_date").size().tolist() == [bank_rows, bank_rows]
    assert not both.duplicated(["row_key", "run_date"]).any()


def test_score_without_a_champion_fails_and_writes_nothing(spark, mlcore_home, capsys):
    assert run_job("ingest_bank", [*ARGS, *DAY1]) == 0
    assert run_job("score_classifier", [*ARGS, *DAY1]) == 1
    err = capsys.readouterr().err
    assert "has no alias 'champion'" in err
    assert not (mlcore_home / "lake" / "bank_scores").exists()


def test_score_rejects_missing_and_mistyped_columns_before_writing(trained, spark, make_config, mlcore_home, capsys):
    from pyspark.sql import functions as F

    from mlcore.io import DeltaTables

    tables = DeltaTables(spark, make_config("tables.bank_bad.path=bank_bad"))
    bad = tables.read("bank").drop("poutcome").withColumn("age", F.col("age").cast("string"))
    tables.write(bad, "bank_bad", mode="overwrite")
    extra = ["--set", "tables.bank_bad.path=bank_bad", "--set", "classification.score_table=bank_bad"]
    assert run_job("score_classifier", [*ARGS, *DAY1, *extra]) == 1
    err = capsys.readouterr().err
    assert "missing columns ['poutcome']" in err and "numeric feature 'age' has type string" in err
    assert not (mlcore_home / "lake" / "bank_scores").exists()


def test_scoring_needs_no_pickle_and_refuses_a_pickled_champion(trained, mlcore_home, monkeypatch, capsys):
    import mlflow
    from mlflow.exceptions import MlflowException
    from sklearn.dummy import DummyClassifier

    from mlcore.io import model_files

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    client = trained
    uri = "models:/bank_classifier@champion"
    mlflow.set_tracking_uri(f"sqlite:///{mlcore_home / 'mlflow' / 'mlflow.db'}")
    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.sklearn.load_model(uri)  # MLflow's own loader is switched off ...
    data, _ = model_files.read_mlflow_model_dir(mlflow.artifacts.download_artifacts(uri, dst_path=str(mlcore_home / "m")))

    def refuse(*_args, **_kwargs):
        raise AssertionError("pickle used to load a model")

    with monkeypatch.context() as patched:
        patched.setattr(pickle, "loads", refuse)
        patched.setattr(pickle, "load", refuse)
        patched.setattr(pickle, "Unpickler", refuse)
        assert model_files.loads(data).predict_proba  # ... and ours never touches pickle
    assert run_job("score_classifier", [*ARGS, *DAY1]) == 0

    # Plant a cloudpickle model as the champion: scoring refuses it and writes nothing new.
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            DummyClassifier().fit([[0], [1]], [0, 1]), name="model", serialization_format="cloudpickle",
            registered_model_name="bank_classifier",
        )
    client.set_registered_model_alias("bank_classifier", "champion", str(info.registered_model_version))
    before = DeltaTable(str(mlcore_home / "lake" / "bank_scores")).version()
    assert run_job("score_classifier", [*ARGS, *DAY2]) == 1
    assert "only loads skops models" in capsys.readouterr().err
    assert DeltaTable(str(mlcore_home / "lake" / "bank_scores")).version() == before


def test_spark_search_equals_local_search(spark):
    from mlcore.classification.distributed import search_on_spark
    from mlcore.classification.features import feature_frame, label_vector
    from mlcore.classification.search import plan, search_local
    from tests.unit.test_classification import SPACE, SPEC, bank_like, settings

    frame = bank_like(rows=400, seed=5)
    X, y = feature_frame(frame, SPEC), label_vector(frame, SPEC)
    candidates, splits = plan(y, SPACE, n_iter=3, folds=2, seed=9)
    local = search_local(X, y, settings(), candidates, splits)
    distributed = search_on_spark(spark, X, y, settings(), candidates, splits)
    columns = ["candidate", "params", "mean_f1", "std_f1", "mean_roc_auc", "mean_average_precision", "rank"]
    assert local.table()[columns].equals(distributed.table()[columns])
    for a, b in zip(local.folds, distributed.folds, strict=True):
        assert (a.candidate, a.fold) == (b.candidate, b.fold)
        np.testing.assert_array_equal(a.val_proba, b.val_proba)


def test_direct_scan_scores_exactly_like_the_spark_read(trained, spark, make_config, mlcore_home, monkeypatch, caplog):
    """With integral keys score_classifier reads the table itself (delta-rs) and hashes row_key in
    numpy; its output equals the Spark path's, and string keys, no keys or a switched-off flag
    keep the Spark read."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    import mlcore.pipelines.score_classifier as job
    from mlcore.io import DeltaTables

    calls: list[str] = []
    real = job.scan_scoring

    def spy(scan, *args, **kwargs):
        calls.append(scan.table)
        return real(scan, *args, **kwargs)

    monkeypatch.setattr(job, "scan_scoring", spy)
    keyed = ["tables.bank_keyed.path=bank_keyed", "classification.score_table=bank_keyed"]
    tables = DeltaTables(spark, make_config(*keyed))
    bank = tables.read("bank")
    rows = bank.count()
    ids = F.row_number().over(Window.orderBy(*bank.columns))
    with_ids = bank.withColumn("client_id", (ids * 7919 - 3_000_000).cast("long")).repartition(3)
    tables.write(with_ids, "bank_keyed", mode="overwrite")

    paths: list[str] = []

    def score(output: str, *extra: str) -> list:
        sets = [*keyed, f"tables.{output}.path={output}", f"classification.output_table={output}", *extra]
        args = [a for s in sets for a in ("--set", s)]
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=job.__name__):
            assert run_job("score_classifier", [*ARGS, *DAY1, *args]) == 0
        paths.append(" | ".join(r.getMessage() for r in caplog.records if r.name == job.__name__))
        return DeltaTable(str(mlcore_home / "lake" / output)).to_pandas()

    key_set = "classification.key_columns=[client_id,age]"  # age is a key and a feature
    direct = score("scores_direct", key_set)
    assert calls == ["bank_keyed"]
    spark_path = score("scores_spark", key_set, "classification.direct_scan=false")
    assert calls == ["bank_keyed"]
    assert list(direct.columns) == list(spark_path.columns) == [
        "row_key", "client_id", "age", "probability", "label", "model_name", "model_version", "threshold",
        "run_id", "run_date", "scored_at",
    ]  # fmt: skip
    assert DeltaTable(str(mlcore_home / "lake" / "scores_direct")).schema() == DeltaTable(
        str(mlcore_home / "lake" / "scores_spark")
    ).schema()
    same = [c for c in direct.columns if c not in ("run_id", "scored_at")]
    a = direct[same].sort_values("client_id").reset_index(drop=True)
    b = spark_path[same].sort_values("client_id").reset_index(drop=True)
    assert len(a) == rows and a["row_key"].is_unique
    assert a.equals(b), "the direct scan must write exactly what the Spark read writes"

    # String key columns, or none (every input column hashed, strings included): Spark's hash.
    score("scores_string_key", "classification.key_columns=[job]")
    score("scores_no_key")
    assert calls == ["bank_keyed"]
    # Validation set rows aside (3 ids below the range): the Spark read's filtered rows are scored.
    ranged = score("scores_ranged", key_set, "validation.tables.bank_keyed.ranges.client_id.minimum=-2970000")
    assert calls == ["bank_keyed"] and len(ranged) == rows - 3
    # The log says which path ran, and why not the direct scan.
    assert f"bank_keyed v0 via a direct Arrow scan: {rows} rows" in paths[0]
    assert "classification.direct_scan is false" in paths[1]
    assert "row_key hashes job (string)" in paths[2]
    assert "row_key hashes age (int)" not in paths[3] and "(string)" in paths[3]
    assert "validation set rows aside" in paths[4]
