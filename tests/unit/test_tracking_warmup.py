"""The runner builds the MLflow stores on a thread while Spark starts; job_run then reuses them."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest

from mlcore.tracking import job_run
from mlcore.tracking.runs import warm_tracking_store


def test_warmup_builds_the_store_that_job_run_uses(make_config, mlcore_home: Path) -> None:
    config = make_config()
    thread = warm_tracking_store(config)
    assert thread is not None
    thread.join(timeout=120)
    assert not thread.is_alive()
    db = mlcore_home / "mlflow" / "mlflow.db"
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert {"experiments", "runs", "registered_models", "model_versions"} <= tables
    with job_run(config, "train_forecasts", dt.date(2015, 6, 14)) as run:
        assert run.run_id


def test_no_warmup_without_mlflow_and_no_raise_on_a_broken_store(
    make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert warm_tracking_store(make_config("mlflow.enabled=false")) is None
    escaped: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    blocked = tmp_path / "not_a_dir"
    blocked.write_text("a file where the store's folder should be")
    broken = make_config(f"mlflow.tracking_uri=sqlite:///{blocked}/sub/mlflow.db")
    thread = warm_tracking_store(broken)
    assert thread is not None
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert escaped == []  # nothing escaped the thread ...
    with pytest.raises(NotADirectoryError), job_run(broken, "train_forecasts", dt.date(2015, 6, 14)):
        pass  # ... the store's error is raised by job_run, in the main thread
