"""Spark session factory.

Embedded runs (``python jobs/x.py`` on a laptop or in CI) get a local master and the settings
from ``spark.conf``. Under spark-submit, on Databricks or EMR the cluster owns the session: we only
call ``getOrCreate`` and never set a master, so cluster settings are not overridden.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlcore.config.models import SparkConfig
from mlcore.spark_classic import set_log_level

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# Settings that only take effect when the JVM starts; ignored (with a note) on a running cluster.
_LAUNCH_ONLY = (
    "spark.driver.memory",
    "spark.driver.cores",
    "spark.executor.memory",
    "spark.driver.extraJavaOptions",
    "spark.executor.extraJavaOptions",
)


def is_managed_runtime(environ: dict[str, str] | None = None) -> bool:
    """True under spark-submit (the gateway env vars), on Databricks, or on an existing context."""
    env = os.environ if environ is None else environ
    if env.get("PYSPARK_GATEWAY_PORT") or env.get("DATABRICKS_RUNTIME_VERSION"):
        return True
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None


def conf_value(value: object) -> str:
    """Spark conf values are strings; YAML booleans become 'true'/'false'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


DELTA_JARS_NOTE = "mlcore.delta.jars"  # why the session has (or lacks) native Delta


def embedded_confs(config: SparkConfig) -> tuple[dict[str, str], str]:
    """The confs an embedded session starts with, and a note saying whether it has native Delta
    and why. ``spark.conf``, plus the cached Delta jars and Delta's SQL extension and catalog
    (``spark.delta_jars: true``) unless the config already names its own Delta setup. Only the
    cache is looked at (once): a job never downloads."""
    confs = {key: conf_value(value) for key, value in config.conf.items()}
    java_options = confs.get("spark.driver.extraJavaOptions", "")
    quiet = Path(__file__).with_name("log4j2.properties")
    # The config's own logging wins; a path with spaces would split the JVM options.
    if "log4j2.configurationFile" not in java_options and " " not in str(quiet):
        confs["spark.driver.extraJavaOptions"] = f"{java_options} -Dlog4j2.configurationFile={quiet}".strip()
    pools = Path(__file__).with_name("fairscheduler.xml")  # score_batch's pools, declared
    if confs.get("spark.scheduler.mode") == "FAIR" and " " not in str(pools):
        confs.setdefault("spark.scheduler.allocation.file", str(pools))
    if not config.delta_jars:
        return confs, "no Delta jars (spark.delta_jars: false)"
    if "spark.sql.extensions" in confs:
        return confs, "the config's own spark.sql.extensions and jars"
    from mlcore.delta_jars import cache_folder, cached_jars, session_confs

    jars = cached_jars()
    if jars is None:
        return confs, (
            f"no Delta jars cached in {cache_folder()} (python -m mlcore.delta_jars fetch, "
            "run by scripts/setup_env.sh, puts them there)"
        )
    extra = session_confs(jars)
    if confs.get("spark.jars"):
        extra["spark.jars"] = f"{confs['spark.jars']},{extra['spark.jars']}"
    note = f"cached jars {jars.coordinate}" + (f"; {jars.note}" if jars.note else "")
    return {**confs, **extra}, note


def _connect_session(config: SparkConfig, remote: str) -> SparkSession:
    """A Spark Connect client session; the config's runtime (SQL) settings are applied to it,
    launch-time ones belong to the server."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(remote).getOrCreate()
    _apply_runtime_confs(spark, config)
    return spark


def _apply_runtime_confs(spark: SparkSession, config: SparkConfig) -> None:
    """Set the config's runtime (SQL) settings on a session someone else started (a cluster's,
    a Connect server's); launch-time ones cannot apply and static ones are refused."""
    for key, value in config.conf.items():
        if key in _LAUNCH_ONLY:
            continue
        try:
            spark.conf.set(key, conf_value(value))
        except Exception as exc:  # noqa: BLE001 - static or server-owned confs are refused
            log.debug("not applying %s on a running session: %s", key, exc)


def get_spark(config: SparkConfig, app_name: str) -> SparkSession:
    """Return the session for a job: embedded local Spark, or the cluster's own session."""
    from pyspark.sql import SparkSession

    remote = config.remote or os.environ.get("SPARK_REMOTE")
    if remote:
        return _connect_session(config, remote)
    active = SparkSession.getActiveSession()
    if active is not None:
        # The nightly chain's next step, a cluster's or a test's session: the builder would only
        # warn "Using an existing Spark session" and set the runtime settings, which this does.
        _apply_runtime_confs(active, config)
        set_log_level(active, config.log_level)
        return active
    managed = is_managed_runtime()
    builder = SparkSession.builder.appName(f"{config.app_name_prefix}-{app_name}")
    jars_note = ""
    if not managed and config.master:
        # Embedded run: Python workers must use this interpreter (and so this venv).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if config.master.startswith("local"):  # one machine: bind to loopback, say nothing
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.master(config.master)
        confs, jars_note = embedded_confs(config)
        for key, value in confs.items():
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if jars_note:
        spark.conf.set(DELTA_JARS_NOTE, jars_note)
    if managed:
        _apply_runtime_confs(spark, config)
    set_log_level(spark, config.log_level)
    return spark
