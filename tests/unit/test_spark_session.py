"""get_spark on a running (managed) session: runtime settings apply, launch-time ones do not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import mlcore.spark
from mlcore.config.models import SparkConfig


class _FakeConf:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def set(self, key: str, value: str) -> None:
        self.values[key] = value

    def isModifiable(self, key: str) -> bool:  # noqa: N802 - Spark's name
        return key.startswith("spark.sql.")


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


def _launching(monkeypatch: pytest.MonkeyPatch, builder: _FakeBuilder) -> None:
    """get_spark on a process with no session yet (the suite's own session is active here)."""
    from pyspark.sql import SparkSession

    monkeypatch.setattr(SparkSession, "builder", builder)
    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: None))


def test_managed_session_gets_runtime_settings_but_no_jvm_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    session = _FakeSession()
    builder = _FakeBuilder(session)
    _launching(monkeypatch, builder)
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

    session = _FakeSession()
    builder = _FakeBuilder(session)
    _launching(monkeypatch, builder)
    monkeypatch.setattr(mlcore.spark, "is_managed_runtime", lambda: False)
    config = SparkConfig(
        master="local[2]", conf={"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}
    )
    mlcore.spark.get_spark(config, "t")
    assert builder.configured["master"] == "local[2]"
    quiet = Path(mlcore.spark.__file__).with_name("log4j2.properties")
    assert builder.configured["spark.driver.extraJavaOptions"] == (
        f"-XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile={quiet}"
    ), "the config's options, plus mlcore's quiet JVM logging (no start-up banner)"
    assert quiet.is_file()
    # only the note saying whether (and why) the session has native Delta
    assert set(session.conf.values) == {mlcore.spark.DELTA_JARS_NOTE}


def test_embedded_session_loads_cached_delta_jars_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """With the jars in the cache an embedded session gets them plus Delta's extension and
    catalog (so ``auto`` is native Delta); without them, or with ``delta_jars: false``, none of it,
    and the note says why. Nothing is downloaded."""
    import json

    from mlcore import delta_jars

    monkeypatch.setenv("MLCORE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(mlcore.spark, "is_managed_runtime", lambda: False)
    monkeypatch.setattr(delta_jars.shutil, "which", lambda name: None)  # no Maven: no fetch
    config = SparkConfig(master="local[2]")

    def launch(cfg: SparkConfig) -> tuple[dict, dict]:
        session = _FakeSession()
        builder = _FakeBuilder(session)
        _launching(monkeypatch, builder)
        mlcore.spark.get_spark(cfg, "t")
        return builder.configured, session.conf.values

    configured, values = launch(config)
    assert "spark.jars" not in configured and "spark.sql.extensions" not in configured
    assert "no Delta jars cached" in values[mlcore.spark.DELTA_JARS_NOTE]

    folder = delta_jars.cache_folder()
    folder.mkdir(parents=True)
    spark_mm, wanted = delta_jars.installed_versions()
    names = [f"delta-spark_{spark_mm}_2.13-4.4.0.jar", "delta-storage-4.4.0.jar"]
    for name in names:
        (folder / name).write_bytes(b"PK")
    (folder / delta_jars.MARKER).write_text(json.dumps(
        {"version": "4.4.0", "wanted": wanted, "spark": spark_mm, "jars": names, "note": ""}
    ))  # fmt: skip
    configured, values = launch(config)
    assert configured["spark.jars"].split(",") == [str(folder / n) for n in names]
    assert configured["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert "cached jars io.delta:delta-spark" in values[mlcore.spark.DELTA_JARS_NOTE]

    from dataclasses import replace

    configured, values = launch(replace(config, delta_jars=False))
    assert "spark.jars" not in configured
    assert "false" in values[mlcore.spark.DELTA_JARS_NOTE]


def test_local_and_test_envs_run_the_jvm_with_c1_only() -> None:
    """The measured setting is in the embedded envs, not in the cluster ones."""
    from pathlib import Path

    from mlcore.config.loader import load_config

    conf_dir = Path(__file__).resolve().parents[2] / "conf"
    for env, expected in (("local", True), ("test", True), ("emr", False), ("databricks", False)):
        config = load_config(env, conf_dir=conf_dir, environ={"MLCORE_HOME": "/tmp/x"})
        options = str(config.spark.conf.get("spark.driver.extraJavaOptions", ""))
        assert ("-XX:TieredStopAtLevel=1" in options) is expected, env


def test_a_running_session_is_reused_with_its_runtime_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The nightly chain's next step: no builder (whose getOrCreate warns "Using an existing
    Spark session"), the config's runtime settings applied, launch-time ones left alone."""
    from pyspark.sql import SparkSession

    running = _FakeSession()
    builder = _FakeBuilder(_FakeSession())
    monkeypatch.setattr(SparkSession, "builder", builder)
    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: running))
    config = SparkConfig(
        master="local[2]", log_level="ERROR",
        conf={"spark.sql.shuffle.partitions": "3", "spark.driver.memory": "2g"},
    )  # fmt: skip
    assert mlcore.spark.get_spark(config, "t") is running
    assert builder.configured == {}, "the builder was not used"
    assert running.conf.values["spark.sql.shuffle.partitions"] == "3"
    assert "spark.driver.memory" not in running.conf.values
    assert running.log_level == "ERROR"
