"""A fresh embedded MLflow store is a copy of a migrated template; never a replacement of a store."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from mlcore.tracking import job_run, resolve_uris, store_template
from mlcore.tracking.store_template import seed_store, template_path, usable_template


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(store_template.CACHE_ENV, str(folder))
    return folder


def _migrations_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from mlflow.store.db import utils

    calls: list[str] = []
    original = utils._initialize_tables

    def spy(engine):
        calls.append(str(engine.url))
        return original(engine)

    monkeypatch.setattr(utils, "_initialize_tables", spy)
    return calls


def test_fresh_home_opens_a_template_copy_without_migrations(
    make_config, mlcore_home: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrations = _migrations_spy(monkeypatch)
    first = make_config()
    resolve_uris(first)
    assert usable_template(template_path()), "template built in the cache folder"
    assert len(migrations) == 1, "the template itself is migrated once"

    with job_run(first, "train_forecasts", dt.date(2015, 6, 14)) as run:
        assert run.run_id
    assert len(migrations) == 1, "MLflow found its schema in place: no migrations"

    from mlflow.tracking import MlflowClient

    uris = resolve_uris(first)
    client = MlflowClient(uris.tracking_uri)
    job_experiment = client.get_experiment_by_name("mlcore/train_forecasts")
    assert job_experiment.artifact_location.startswith(uris.artifact_location)
    # The default experiment is MLflow's own, made on opening the copy, exactly as on a store
    # MLflow migrated itself (nothing of the place where the template was built).
    plain_db = mlcore_home.parent / "plain.db"
    plain = MlflowClient(f"sqlite:///{plain_db}").get_experiment("0")
    assert client.get_experiment("0").artifact_location == plain.artifact_location

    other_home = mlcore_home.parent / "other_home"
    other_home.mkdir()
    monkeypatch.setenv("MLCORE_HOME", str(other_home))
    second = make_config()
    with job_run(second, "train_forecasts", dt.date(2015, 6, 14)) as run:
        assert run.run_id
    assert [url for url in migrations if "template" in url] == migrations[:1], "built once"
    assert not [url for url in migrations if url.endswith("/mlflow/mlflow.db")], "no home migrated"
    with sqlite3.connect(other_home / "mlflow" / "mlflow.db") as db:
        names = [r[0] for r in db.execute("SELECT name FROM experiments ORDER BY experiment_id")]
    assert names == ["Default", "mlcore/train_forecasts"]


def test_an_existing_store_is_never_replaced(tmp_path: Path, cache: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"somebody's store")
    assert seed_store(db) is False
    assert db.read_bytes() == b"somebody's store"
    assert list(tmp_path.glob(".*.tmp")) == [], "no scratch copy left behind"


def test_a_damaged_template_is_rebuilt(tmp_path: Path, cache: Path) -> None:
    template = template_path()
    template.parent.mkdir(parents=True)
    template.write_bytes(b"not a database")
    assert not usable_template(template)
    assert seed_store(tmp_path / "mlflow.db") is True
    assert usable_template(template)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)


def test_without_a_template_mlflow_creates_the_store_itself(
    make_config, mlcore_home: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path) -> Path:
        raise PermissionError(f"cannot write {path}")

    monkeypatch.setattr(store_template, "build_template", broken)
    config = make_config()
    resolve_uris(config)
    assert not (mlcore_home / "mlflow" / "mlflow.db").exists(), "nothing placed"
    with job_run(config, "train_forecasts", dt.date(2015, 6, 14)) as run:
        assert run.run_id
    assert (mlcore_home / "mlflow" / "mlflow.db").is_file()


def test_a_failed_build_leaves_no_file_in_the_cache(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.store.db import utils

    def interrupted(engine):
        import sqlalchemy

        with engine.begin() as connection:  # the scratch database exists by now
            connection.execute(sqlalchemy.text("CREATE TABLE half_done (x INTEGER)"))
        raise RuntimeError("migration interrupted")

    monkeypatch.setattr(utils, "_initialize_tables", interrupted)
    assert seed_store(tmp_path / "mlflow.db") is False
    assert not (tmp_path / "mlflow.db").exists()
    assert list(cache.iterdir()) == [], "no template and no scratch file"
