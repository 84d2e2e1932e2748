"""Layered config: base + env + --set, validated into typed objects; errors name key and file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlcore.config.loader import ConfigError, config_as_flat_dict, load_config, parse_override
from mlcore.config.models import MlcoreConfig
from mlcore.io.tables import resolve_table
from tests.conftest import CONF_DIR


@pytest.fixture
def conf_copy(tmp_path: Path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(CONF_DIR, target)
    return target


def test_every_shipped_env_loads(mlcore_home):
    for env in ("local", "local-catalog", "test", "databricks", "emr"):
        config = load_config(env, conf_dir=CONF_DIR)
        assert isinstance(config, MlcoreConfig) and config.env == env
    local = load_config("local", conf_dir=CONF_DIR)
    assert local.spark.master == "local[2]"
    assert local.sources.sales.train_path.endswith("shared/datasets/rossmann/train.csv.gz")
    assert local.storage.lake_root == f"{mlcore_home}/lake"
    catalog = load_config("local-catalog", conf_dir=CONF_DIR)
    sales = resolve_table(catalog, "sales")
    assert (sales.catalog_name, sales.external) == ("spark_catalog.mlcore.sales", True)
    assert sales.uri == f"{mlcore_home}/lake/sales", "the catalog table lives at its lake path"
    assert resolve_table(local, "sales").catalog_name is None
    with pytest.raises(ConfigError, match="storage.catalog_schema needs native Delta"):
        load_config("local-catalog", conf_dir=CONF_DIR, overrides=["storage.delta_engine=deltars"])
    with pytest.raises(ConfigError, match="storage.catalog_schema: expected catalog.schema"):
        load_config("local-catalog", conf_dir=CONF_DIR, overrides=["storage.catalog_schema=mlcore"])
    databricks = load_config("databricks", conf_dir=CONF_DIR)
    assert databricks.spark.master is None, "clusters never get a master from us"
    assert databricks.tables["sales"].catalog_name == "main.mlcore.sales"
    assert databricks.tables["rides"].partition_by == ["pickup_month"], "env overlay deep-merges"


def test_env_precedence_flag_then_env_var_then_local(monkeypatch):
    monkeypatch.setenv("MLCORE_ENV", "emr")
    assert load_config(conf_dir=CONF_DIR).env == "emr"
    assert load_config("test", conf_dir=CONF_DIR).env == "test"
    monkeypatch.delenv("MLCORE_ENV")
    assert load_config(conf_dir=CONF_DIR).env == "local"


def test_unknown_key_names_key_and_file(conf_copy):
    (conf_copy / "test" / "typo.yml").write_text("storage:\n  lake_rot: /tmp/x\n")
    with pytest.raises(ConfigError) as info:
        load_config("test", conf_dir=conf_copy)
    message = str(info.value)
    assert "storage.lake_rot" in message and "typo.yml" in message and "lake_root" in message


def test_unknown_section_and_wrong_type_are_errors(conf_copy):
    (conf_copy / "test" / "bad.yml").write_text("ingest:\n  bad_row_budget: lots\n")
    with pytest.raises(ConfigError, match=r"ingest.bad_row_budget: expected float, got 'lots' \(.*bad.yml\)"):
        load_config("test", conf_dir=conf_copy)
    (conf_copy / "test" / "bad.yml").write_text("forecastng:\n  horizon: 3\n")
    with pytest.raises(ConfigError, match="unknown section 'forecastng'"):
        load_config("test", conf_dir=conf_copy)
    (conf_copy / "test" / "bad.yml").write_text("forecasting:\n  horizon_days: 48\n")
    # conf/test sets storage.delta_engine itself, so the bad value comes from an override
    with pytest.raises(ConfigError, match="delta_engine: expected one of 'auto', 'spark', 'deltars'"):
        load_config("test", conf_dir=conf_copy, overrides=["storage.delta_engine=duckdb"])
    (conf_copy / "test" / "bad.yml").write_text("run:\n  revision: true\n")
    with pytest.raises(ConfigError, match="run.revision: expected int, got True"):
        load_config("test", conf_dir=conf_copy)


def test_bad_env_lists_available_envs():
    with pytest.raises(ConfigError, match=r"unknown env 'prod'.*'databricks'.*'local'"):
        load_config("prod", conf_dir=CONF_DIR)
    with pytest.raises(ConfigError, match="invalid env name"):
        load_config("../etc", conf_dir=CONF_DIR)


def test_set_overrides_win_and_are_typed():
    config = load_config(
        "test",
        conf_dir=CONF_DIR,
        overrides=[
            "ingest.bad_row_budget=0.25",
            "run.revision=3",
            "spark.conf.spark.sql.shuffle.partitions=7",
            "mlflow.enabled=false",
            "sources.bank.path=/data/bank.csv",
        ],
    )
    assert config.ingest.bad_row_budget == 0.25
    assert config.run.revision == 3
    assert config.spark.conf["spark.sql.shuffle.partitions"] == 7
    assert config.mlflow.enabled is False
    assert config.sources.bank.path == "/data/bank.csv"
    with pytest.raises(ConfigError, match=r"unknown key 'ingest.budget' \(--set ingest.budget\)"):
        load_config("test", conf_dir=CONF_DIR, overrides=["ingest.budget=1"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_override("ingest.bad_row_budget")
    with pytest.raises(ConfigError, match="run.revision: expected int"):
        load_config("test", conf_dir=CONF_DIR, overrides=["run.revision=two"])
    with pytest.raises(ConfigError, match=r"pipeline.steps\[1\]: expected one of .* \(--set pipeline.steps\)"):
        load_config("test", conf_dir=CONF_DIR, overrides=["pipeline.steps=[ingest_sales,score_it]"])
    # An unquoted date (YAML reads it as a date) fills a text field that holds dates as written.
    dated = load_config("test", conf_dir=CONF_DIR, overrides=["synthetic.rides_start_date=2015-06-14"])
    assert dated.synthetic.rides_start_date == "2015-06-14"


def test_yaml_python_tags_are_rejected(conf_copy, tmp_path):
    marker = tmp_path / "pwned"
    (conf_copy / "test" / "evil.yml").write_text(
        f"run:\n  revision: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config("test", conf_dir=conf_copy)
    assert not marker.exists()


def test_duplicate_keys_are_rejected_within_a_file_and_within_an_env(conf_copy):
    (conf_copy / "test" / "dup.yml").write_text("run:\n  revision: 1\n  revision: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'revision'"):
        load_config("test", conf_dir=conf_copy)
    (conf_copy / "test" / "dup.yml").write_text("ingest:\n  bad_row_budget: 0.5\n")
    (conf_copy / "test" / "dup2.yml").write_text("ingest:\n  bad_row_budget: 0.6\n")
    with pytest.raises(ConfigError, match="'ingest.bad_row_budget' is set in both"):
        load_config("test", conf_dir=conf_copy)


def test_placeholders_and_table_names_are_checked(conf_copy):
    (conf_copy / "test" / "x.yml").write_text("storage:\n  lake_root: '{home}/lake'\n")
    with pytest.raises(ConfigError, match=r"unknown placeholder \{home\}"):
        load_config("test", conf_dir=conf_copy)
    (conf_copy / "test" / "x.yml").write_text("tables:\n  Bad-Name: {path: x}\n")
    with pytest.raises(ConfigError, match="logical table names are lower-case identifiers"):
        load_config("test", conf_dir=conf_copy)


def test_table_paths_cannot_escape_the_lake(make_config):
    from mlcore.config.models import TableConfig
    from mlcore.io.tables import resolve_table

    config = make_config()
    config.tables["sales"] = TableConfig(path="../../etc")
    with pytest.raises(ValueError, match="must not leave the lake root"):
        resolve_table(config, "sales")


def test_flattened_config_for_mlflow_params():
    flat = config_as_flat_dict(load_config("test", conf_dir=CONF_DIR))
    assert flat["storage.delta_engine"] == "deltars"  # conf/test pins it
    assert flat["tables.rides.partition_by"] == "pickup_month"
    assert flat["spark.conf.spark.sql.shuffle.partitions"] == 4


def test_cli_override_accepts_flat_lists_but_not_mappings():
    assert parse_override("forecasting.group_keys=[store, item]") == ("forecasting.group_keys", ["store", "item"])
    with pytest.raises(ConfigError, match="flat lists"):
        parse_override("classification.search_spaces={random_forest: {}}")
    with pytest.raises(ConfigError, match="flat lists"):
        parse_override("forecasting.group_keys=[[store]]")


def test_the_default_home_never_depends_on_the_current_directory(tmp_path, monkeypatch):
    """Unset MLCORE_HOME: the checkout's .mlcore from any directory (a job run from /tmp must
    find the demo's tables), else the user's data folder; MLCORE_HOME still wins."""
    from mlcore.config import loader

    monkeypatch.chdir(tmp_path)
    checkout = loader.source_checkout()
    assert checkout is not None and (checkout / "setup.py").is_file()
    assert loader.resolve_home({}) == checkout / ".mlcore"
    assert loader.resolve_home({"MLCORE_HOME": str(tmp_path / "h")}) == tmp_path / "h"
    monkeypatch.setattr(loader, "source_checkout", lambda: None)
    assert loader.resolve_home({"XDG_DATA_HOME": str(tmp_path / "data")}) == tmp_path / "data" / "mlcore"
