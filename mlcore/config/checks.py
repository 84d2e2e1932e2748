"""Names and paths in the config, checked before any Spark, Delta or MLflow call: they end up
in SQL, Delta predicates, file paths and MLflow search filters, so each is a plain identifier, a
bounded name or a location under the lake root, and none carries credentials or traversal."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from mlcore.config.errors import ConfigError, origin_of
from mlcore.config.models import MlcoreConfig

# Patterns end in \Z, not $: "$" also matches before a trailing newline ("name\n").
TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}\Z")
# Names and paths that end up in SQL, Delta predicates, file paths or MLflow search filters.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_CATALOG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}(\.[A-Za-z_][A-Za-z0-9_]{0,254}){0,2}\Z")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\Z")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENCODED = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)
_SCHEME_URI = re.compile(
    r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<path>[^?#]*)"
)
# Any userinfo (``user:password@``, a token alone ``TOKEN@``, ``user@``, percent-encoded or not).
_CREDENTIALS = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#@\s]*@")


def path_problem(value: str) -> str | None:
    """Why a configured path or URI is unsafe (control characters, traversal), or None."""
    if _CONTROL.search(value):
        return "contains a control character (newline, tab, NUL...)"
    if _CREDENTIALS.match(value):
        return "embeds credentials (user info before '@'); pass them through the environment"
    if "\\" in value:
        return "contains a backslash"
    if _ENCODED.search(value):
        return "contains percent-encoded '.', '/', '\\' or NUL"
    match = _SCHEME_URI.match(value)
    path = match.group("path") if match else value.removeprefix("dbfs:")
    if ".." in path.split("/"):
        return "contains a '..' segment"
    return None


def _location(uri: str) -> tuple[str, str, str] | None:
    """(scheme, authority, normalised path) of an absolute location; None for a relative path."""
    match = _SCHEME_URI.match(uri)
    if match:
        scheme = match.group("scheme").lower()
        return scheme, match.group("authority"), os.path.normpath(match.group("path") or "/")
    if uri.startswith("dbfs:"):
        return "dbfs", "", os.path.normpath(uri[len("dbfs:") :] or "/")
    if uri.startswith("/"):
        return "file", "", os.path.normpath(uri)
    return None


def _under(location: tuple[str, str, str], root: tuple[str, str, str]) -> bool:
    scheme, authority, path = location
    root_scheme, root_authority, root_path = root
    if (scheme, authority) != (root_scheme, root_authority):
        return False
    return path == root_path or path.startswith(root_path.rstrip("/") + "/")


def check_table_location(
    name: str,
    path: str | None,
    catalog_name: str | None,
    partition_by: Sequence[str],
    lake_root: str,
) -> None:
    """Raise ValueError unless the table's location stays under ``lake_root`` and its names are
    plain identifiers (shared by the loader and ``mlcore.io.tables.resolve_table``)."""
    for column in partition_by:
        if not _IDENTIFIER.match(column):
            raise ValueError(f"tables.{name}.partition_by: invalid column name {column!r}")
    if catalog_name is not None and not _CATALOG_NAME.match(catalog_name):
        raise ValueError(
            f"tables.{name}.catalog_name {catalog_name!r}: expected catalog.schema.table of "
            "letters, digits and '_'"
        )
    raw = path or name
    problem = path_problem(raw)
    if problem:
        raise ValueError(f"tables.{name}.path {raw!r} {problem}; it must not leave the lake root")
    location = _location(raw)
    if location is None:
        return  # relative: under the lake root by construction
    root = _location(lake_root) or _location(str(Path(lake_root).resolve()))
    if root is None or not _under(location, root):
        raise ValueError(
            f"tables.{name}.path {raw!r} is outside storage.lake_root {lake_root!r}; "
            "tables must not leave the lake root"
        )


def _named(config: MlcoreConfig) -> list[tuple[str, Any, re.Pattern[str], str]]:
    """(dotted key, value, pattern, description) of every configured name used in SQL, paths
    or MLflow filters."""
    fc, cc, ac = config.forecasting, config.classification, config.anomaly
    column, table, model = (_IDENTIFIER, "a column name"), (TABLE_NAME, "a logical table name"), (
        _MODEL_NAME, "a registered model name (letters, digits, '_', '.', '-')")  # fmt: skip
    items: list[tuple[str, Any, tuple[re.Pattern[str], str]]] = [
        ("forecasting.group_keys", fc.group_keys, column),
        ("forecasting.date_column", fc.date_column, column),
        ("forecasting.target_column", fc.target_column, column),
        ("forecasting.open_column", fc.open_column, column),
        ("forecasting.prophet.regressors", fc.prophet.regressors, column),
        ("forecasting.prophet.holidays_column", fc.prophet.holidays_column, column),
        ("forecasting.model_name", fc.model_name, model),
        ("classification.input_table", cc.input_table, table),
        ("classification.score_table", cc.score_table, table),
        ("classification.output_table", cc.output_table, table),
        ("classification.label_column", cc.label_column, column),
        ("classification.categorical_columns", cc.categorical_columns, column),
        ("classification.numeric_columns", cc.numeric_columns, column),
        ("classification.excluded_columns", cc.excluded_columns, column),
        ("classification.key_columns", cc.key_columns, column),
        ("classification.model_name", cc.model_name, model),
        ("classification.score_alias", cc.score_alias, (_ALIAS, "an alias name")),
        ("anomaly.input_table", ac.input_table, table),
        ("anomaly.date_column", ac.date_column, column),
        ("anomaly.batch_keys", ac.batch_keys, column),
        ("anomaly.model_name", ac.model_name, model),
        ("anomaly.score_alias", ac.score_alias, (_ALIAS, "an alias name")),
    ]
    out = []
    for dotted, value, (pattern, description) in items:
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                out.append((dotted, item, pattern, description))
    return out


def check_names_and_paths(config: MlcoreConfig, origin: Mapping[str, str]) -> None:
    """Reject unsafe identifiers, table locations, paths and credential-bearing URIs.

    Runs inside ``load_config``, so a bad value from YAML or ``--set`` fails with exit code 2
    before a Spark session, a Delta table or MLflow is touched.
    """
    from mlcore.logging_setup import redact

    for dotted, value, pattern, description in _named(config):
        if not pattern.match(str(value)):
            raise ConfigError(
                f"{dotted}: {redact(repr(value))} is not {description} ({origin_of(origin, dotted)})"
            )
    lake_root = config.storage.lake_root
    problem = path_problem(lake_root)
    if problem:
        raise ConfigError(
            f"storage.lake_root {redact(repr(lake_root))} {problem} "
            f"({origin_of(origin, 'storage.lake_root')})"
        )
    for name, table in config.tables.items():
        try:
            check_table_location(
                name, table.path, table.catalog_name, table.partition_by, lake_root
            )
        except ValueError as exc:
            raise ConfigError(f"{redact(exc)} ({origin_of(origin, 'tables.' + name)})") from None
    sources = config.sources
    for dotted, value in (
        ("sources.datasets_dir", sources.datasets_dir),
        ("sources.sales.train_path", sources.sales.train_path),
        ("sources.sales.store_path", sources.sales.store_path),
        ("sources.sales.calendar_path", sources.sales.calendar_path),
        ("sources.bank.path", sources.bank.path),
        ("sources.rides.path", sources.rides.path),
    ):
        problem = value and path_problem(value)
        if problem:
            raise ConfigError(
                f"{dotted} {redact(repr(value))} {problem} ({origin_of(origin, dotted)})"
            )
    for dotted in ("mlflow.tracking_uri", "mlflow.registry_uri", "mlflow.artifact_location"):
        value = getattr(config.mlflow, dotted.split(".")[1])
        if value and _CREDENTIALS.match(value):
            raise ConfigError(
                f"{dotted} {redact(value)!r} embeds credentials (user info before '@'); pass them through the "
                f"environment (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / "
                f"MLFLOW_TRACKING_TOKEN) instead ({origin_of(origin, dotted)})"
            )
        if value and _CONTROL.search(value):
            raise ConfigError(
                f"{dotted}: contains a control character ({origin_of(origin, dotted)})"
            )
    try:
        date.fromisoformat(config.ingest.min_date)
    except ValueError:
        raise ConfigError(
            f"ingest.min_date: expected YYYY-MM-DD, got {config.ingest.min_date!r} "
            f"({origin_of(origin, 'ingest.min_date')})"
        ) from None
    if config.ingest.max_days_after_run_date < 0:
        raise ConfigError(
            f"ingest.max_days_after_run_date: expected >= 0, got "
            f"{config.ingest.max_days_after_run_date} "
            f"({origin_of(origin, 'ingest.max_days_after_run_date')})"
        )
    remote = config.spark.remote
    if remote is not None and not re.match(r"^sc://[^/?#@\s]+(/[^@\s]*)?\Z", remote):
        raise ConfigError(
            f"spark.remote {redact(remote)!r}: expected a Spark Connect URL sc://host:port (tokens "
            f"go in the ;token= parameters or the environment, never user info) "
            f"({origin_of(origin, 'spark.remote')})"
        )
    schema = config.storage.catalog_schema
    if schema is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*\Z", schema):
        raise ConfigError(
            f"storage.catalog_schema: expected catalog.schema of letters, digits and '_' "
            f"(e.g. spark_catalog.mlcore), got {schema!r} ({origin_of(origin, 'storage.catalog_schema')})"
        )
    if schema is not None and config.storage.delta_engine == "deltars":
        raise ConfigError(
            "storage.catalog_schema needs native Delta (storage.delta_engine spark or auto): "
            f"delta-rs has no Spark catalog ({origin_of(origin, 'storage.delta_engine')})"
        )
    timeout = config.mlflow.request_timeout_seconds
    if not 5 <= timeout <= 3600:
        raise ConfigError(
            f"mlflow.request_timeout_seconds: expected 5..3600 seconds, got {timeout} "
            f"({origin_of(origin, 'mlflow.request_timeout_seconds')})"
        )
    root = config.mlflow.experiment_root
    if _CONTROL.search(root) or "'" in root or '"' in root or "`" in root:
        raise ConfigError(
            f"mlflow.experiment_root {root!r}: no quotes or control characters "
            f"({origin_of(origin, 'mlflow.experiment_root')})"
        )


def below_minimum(section: str, values: Iterable[tuple[str, float, float]]) -> list[str]:
    """One problem per ``(key, value, least)`` whose value is below its least allowed value,
    worded as every range check of the config says it (``section.key must be at least ...``)."""
    return [
        f"{section}.{key} must be at least {least} (got {value})"
        for key, value, least in values
        if value < least
    ]
