"""get_spark on a running (managed) session: runtime settings apply, launch-time ones do not."""

from __future__ import annotations

from typing import Any

import pytest

import mlcore.spark
from mlcore.config.models import SparkConfig


class _FakeConf:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def set(self, key: str, value: str) -> None:
        self.values[key] = value


class _FakeSession:
    def __init__(self) -> None:
        self.conf = _FakeConf()
        self.sparkContext = self
        self.log_level: str | None = None

    def setLogLevel(self, level: str) -> None:  # noqa: N802 - Spark's name
        self.log_level = level


class _FakeBuilder:
    def __init__(self, session: _FakeSession) -> None:
        self.session = session
        self.configured: dict[str, Any] = {}

    def appName(self, name: str) -> _FakeBuilder:  # noqa: N802 - Spark's name
        return self

    def master(self, master: str) -> _FakeBuilder:
        self.configured["master"] = master
        return self

    def config(self, key: str, value: str) -> _FakeBuilder:
        self.configured[key] = value
        return self

    def getOrCreate(self) -> _FakeSession:  # noqa: N802 - Spark's name
        return self.session


def test_managed_session_gets_runtime_settings_but_no_jvm_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pyspark.sql import SparkSession

    session = _FakeSession()
    builder = _FakeBuilder(session)
    monkeypatch.setattr(SparkSession, "builder", builder)
    monkeypatch.setattr(mlcore.spark, "is_managed_runtime", lambda: True)
    config = SparkConfig(
        master="local[2]",
        conf={
            "spark.sql.shuffle.partitions": 8,
            "spark.driver.memory": "4g",
            "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
            "spark.executor.extraJavaOptions": "-XX:TieredStopAtLevel=1",
        },
    )
    assert mlcore.spark.get_spark(config, "t") is session
    assert session.conf.values == {"spark.sql.shuffle.partitions": "8"}
    assert builder.configured == {}, "a managed session's master and launch confs are the cluster's"


def test_embedded_session_is_launched_with_the_jvm_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyspark.sql import SparkSession

    session = _FakeSession()
    builder = _FakeBuilder(session)
    monkeypatch.setattr(SparkSession, "builder", builder)
    monkeypatch.setattr(mlcore.spark, "is_managed_runtime", lambda: False)
    config = SparkConfig(
        master="local[2]", conf={"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}
    )
    mlcore.spark.get_spark(config, "t")
    assert builder.configured["master"] == "local[2]"
    assert builder.configured["spark.driver.extraJavaOptions"] == "-XX:TieredStopAtLevel=1"
    assert session.conf.values == {}


def test_local_and_test_envs_run_the_jvm_with_c1_only() -> None:
    """The measured setting is in the embedded envs, not in the cluster ones."""
    from pathlib import Path

    from mlcore.config.loader import load_config

    conf_dir = Path(__file__).resolve().parents[2] / "conf"
    for env, expected in (("local", True), ("test", True), ("emr", False), ("databricks", False)):
        config = load_config(env, conf_dir=conf_dir, environ={"MLCORE_HOME": "/tmp/x"})
        options = str(config.spark.conf.get("spark.driver.extraJavaOptions", ""))
        assert ("-XX:TieredStopAtLevel=1" in options) is expected, env
