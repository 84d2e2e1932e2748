"""Shared fixtures: one local Spark session for the whole run, a fresh MLCORE_HOME (and so a
fresh sqlite MLflow store and lake) per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyspark.sql.types import DateType, DoubleType, IntegerType, StringType, StructField, StructType

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
DATASETS_DIR = Path(os.environ.get("MLCORE_DATASETS_DIR", REPO_ROOT.parent / "shared" / "datasets"))
# The small day-partitioned table the Delta IO, native-engine and reliability tests write.
DAY_TABLE_SCHEMA = StructType(
    [
        StructField("id", IntegerType()),
        StructField("store", StringType()),
        StructField("day", DateType()),
        StructField("amount", DoubleType()),
    ]
)


DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"


def delta_unavailable_reason(spark) -> str | None:
    """Why this session cannot run native Delta, or None when it can."""
    from py4j.java_gateway import JavaClass

    jvm = getattr(spark, "_jvm", None)
    if jvm is None:
        return "no JVM gateway in this session (Spark Connect): native contract needs classic Spark"
    if not isinstance(jvm.io.delta.tables.DeltaTable, JavaClass):
        return (
            "Delta jars not on the classpath: none cached (scripts/setup_env.sh fetches them "
            "from Maven Central: python -m mlcore.delta_jars fetch)"
        )
    if DELTA_EXTENSION not in (spark.conf.get("spark.sql.extensions", "") or ""):
        return f"Delta jars on the classpath but spark.sql.extensions lacks {DELTA_EXTENSION}"
    return None


def require_native_delta(spark) -> None:
    """Skip a native test where the session cannot run native Delta; under CI=true fail."""
    reason = delta_unavailable_reason(spark)
    if reason and os.environ.get("CI"):
        pytest.fail(f"native Delta must load in CI: {reason}")
    if reason:
        pytest.skip(reason)


@pytest.fixture(params=["deltars", "spark"])
def engine(request: pytest.FixtureRequest, spark) -> str:
    """A Delta contract test runs on both engines: delta-rs, and native Delta (delta-spark's
    jars in the same session). Where they differ by design, the test says so."""
    if request.param == "spark":
        require_native_delta(spark)
    return request.param


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Local Spark, `local[2,2]` (task retries possible), 4 shuffle partitions, UI off."""
    from mlcore.config.loader import load_config
    from mlcore.spark import get_spark

    home = tmp_path_factory.mktemp("spark_home")
    config = load_config("test", conf_dir=CONF_DIR, environ={"MLCORE_HOME": str(home)})
    session = get_spark(config.spark, "tests")
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def mlcore_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MLCORE_HOME per test: its own lake and its own sqlite MLflow store."""
    home = tmp_path / "mlcore_home"
    home.mkdir()
    monkeypatch.setenv("MLCORE_HOME", str(home))
    monkeypatch.delenv("MLCORE_ENV", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return home


@pytest.fixture
def make_config(mlcore_home: Path) -> Callable:
    """Build the `test` env config with `--set`-style overrides."""
    from mlcore.config.loader import load_config

    def _make(*overrides: str, env: str = "test"):
        return load_config(env, conf_dir=CONF_DIR, overrides=list(overrides))

    return _make


@pytest.fixture
def tables(spark, make_config):
    """DeltaTables on the session's engine (delta-rs here) over a fresh lake."""
    from mlcore.io import DeltaTables

    return DeltaTables(spark, make_config(), commit_metadata={"mlcore.job": "tests"})


@pytest.fixture
def engine_tables(spark, make_config, engine):
    """DeltaTables on ``engine`` (each of delta-rs and native Delta) over a fresh lake."""
    from mlcore.io import DeltaTables

    return DeltaTables(spark, make_config(), engine=engine, commit_metadata={"mlcore.job": "tests"})


@pytest.fixture
def datasets_dir() -> Path:
    """The real datasets beside the repo; tests that need them skip (with the reason) if absent."""
    if not (DATASETS_DIR / "rossmann" / "train.csv.gz").exists():
        pytest.skip(f"real datasets not found at {DATASETS_DIR}")
    return DATASETS_DIR
