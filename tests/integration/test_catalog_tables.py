"""Tables by catalog name, as on Databricks: the chain on native Delta with every table in a Spark
catalog (a Hive metastore and warehouse under $MLCORE_HOME, schema ``spark_catalog.mlcore``; the
``local-catalog`` env's settings over the test env's small synthetic sources), the chain's ingest, training and forecasting steps. The native engine's
``saveAsTable`` / ``DeltaTable.forName`` / ``tableExists`` path runs, and ``python -m mlcore sql``
queries the tables by catalog name and by logical name.

The metastore is a static Spark setting, so the jobs run in processes of their own.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable

from tests.conftest import CONF_DIR, REPO_ROOT

pytestmark = pytest.mark.slow
RUN_DATE = "2015-07-01"
# Ingest, a training and a scoring job of each kind that writes by name (run_manifest: a merge).
STEPS = ["--set", "pipeline.steps=[ingest_sales,ingest_bank,train_classifier,train_forecasts,make_forecasts]"]


def _catalog_env(tmp_path: Path) -> Path:
    """conf/ plus ``test-catalog``: the test env with local-catalog's catalog settings."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    settings = yaml.safe_load((CONF_DIR / "test" / "test.yml").read_text())
    catalog = yaml.safe_load((CONF_DIR / "local-catalog" / "local-catalog.yml").read_text())
    for key in ("spark.sql.catalogImplementation", "spark.sql.warehouse.dir",
                "spark.hadoop.javax.jdo.option.ConnectionURL"):  # fmt: skip
        settings["spark"]["conf"][key] = catalog["spark"]["conf"][key]
    settings["spark"]["conf"]["spark.driver.extraJavaOptions"] += " -Dderby.system.home={mlcore_home}/derby"
    settings["storage"] = catalog["storage"]
    (conf / "test-catalog").mkdir()
    (conf / "test-catalog" / "test-catalog.yml").write_text(yaml.safe_dump(settings))
    return conf


def _run(args: list[str], home: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLCORE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "mlcore", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_the_chain_by_catalog_name_and_sql_by_name(spark, mlcore_home, tmp_path):
    from tests.conftest import require_native_delta

    require_native_delta(spark)  # the cached jars this session loaded are what the jobs load
    conf = _catalog_env(tmp_path)
    chain = _run(["run", "run_pipeline", "--env", "test-catalog", "--conf-dir", str(conf),
                  "--run-date", RUN_DATE, *STEPS], mlcore_home)  # fmt: skip
    assert chain.returncode == 0, chain.stdout[-3000:] + chain.stderr[-3000:]
    assert "engine=spark" in chain.stdout
    assert (mlcore_home / "metastore_db").is_dir() and not (REPO_ROOT / "derby.log").exists()

    query = ("SELECT 'catalog' AS via, count(*) AS n FROM spark_catalog.mlcore.forecasts "
             "UNION ALL SELECT 'schema', count(*) FROM mlcore.bank "
             "UNION ALL SELECT 'view', count(*) FROM forecast_status")  # fmt: skip
    sql = _run(["sql", "--env", "test-catalog", "--conf-dir", str(conf), "--format", "csv", query],
               mlcore_home)  # fmt: skip
    assert sql.returncode == 0, sql.stderr[-3000:]
    counts = pd.read_csv(io.StringIO(sql.stdout)).set_index("via")["n"].to_dict()
    lake = mlcore_home / "lake"  # external tables: the same tables at their lake paths
    assert counts == {
        "catalog": len(DeltaTable(str(lake / "forecasts")).to_pandas()),
        "schema": 800,
        "view": len(DeltaTable(str(lake / "forecast_status")).to_pandas()),
    }
    assert counts["catalog"] > 0

    tables = _run(["sql", "--env", "test-catalog", "--conf-dir", str(conf), "--format", "csv",
                   "SHOW TABLES IN spark_catalog.mlcore"], mlcore_home)  # fmt: skip
    assert tables.returncode == 0, tables.stderr[-3000:]
    registered = set(pd.read_csv(io.StringIO(tables.stdout))["tableName"])
    assert {"sales", "bank", "forecast_models", "forecasts", "forecast_status", "run_manifest"} <= registered

    bad = _run(["sql", "--env", "test-catalog", "--conf-dir", str(conf),
                "SELECT nope FROM spark_catalog.mlcore.sales"], mlcore_home)  # fmt: skip
    ours = [line for line in bad.stderr.splitlines() if line.startswith("sql: ")]
    assert bad.returncode == 2 and len(ours) == 1 and "nope" in ours[0], bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr
