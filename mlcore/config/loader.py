"""Layered configuration: ``conf/base`` + ``conf/<env>`` + ``--set`` overrides -> typed objects.

Why so strict: a typo in a nightly job's YAML must fail in the first second with the key and the
file named, not after an hour of training with a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal, cast, get_args, get_origin, get_type_hints

import yaml

from mlcore.config.models import CONFIG_SECTIONS, MlcoreConfig
from mlcore.errors import UsageError

DEFAULT_ENV = "local"
ENV_VAR_ENV = "MLCORE_ENV"
ENV_VAR_HOME = "MLCORE_HOME"
ENV_VAR_CONF_DIR = "MLCORE_CONF_DIR"
# Patterns end in \Z, not $: "$" also matches before a trailing newline ("name\n").
_ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}\Z")
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}\Z")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_KNOWN_PLACEHOLDERS = ("mlcore_home", "repo_root", "datasets_dir")
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
# Integers end up in Delta txn versions, Spark LongType columns and MLflow: signed 64-bit.
_INT64 = (-(2**63), 2**63 - 1)


class ConfigError(UsageError, ValueError):
    """Invalid configuration; the message names the key and where it came from."""


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no python tags) that also rejects duplicate mapping keys."""


def _construct_unique_mapping(loader: _UniqueKeySafeLoader, node: yaml.MappingNode) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeySafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def read_yaml(path: Path) -> Any:
    """Parse one YAML file safely; python tags and duplicate keys are errors."""
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_UniqueKeySafeLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc


def resolve_env(cli_env: str | None, environ: Mapping[str, str] | None = None) -> str:
    """Pick the env: ``--env`` beats ``MLCORE_ENV`` beats ``local``."""
    environ = os.environ if environ is None else environ
    env = cli_env or environ.get(ENV_VAR_ENV) or DEFAULT_ENV
    if not _ENV_NAME.match(env):
        raise ConfigError(f"invalid env name {env!r}: use lower-case letters, digits, '-' or '_'")
    return env


def resolve_conf_dir(cli_conf_dir: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """Find ``conf/``: flag, then ``MLCORE_CONF_DIR``, then ``./conf``, then the source checkout's."""
    environ = os.environ if environ is None else environ
    explicit = cli_conf_dir or environ.get(ENV_VAR_CONF_DIR)
    if explicit:
        path = Path(explicit).expanduser().resolve()
        if not (path / "base").is_dir():
            raise ConfigError(f"conf dir {path} has no 'base' folder")
        return path
    for candidate in (Path.cwd() / "conf", Path(__file__).resolve().parents[2] / "conf"):
        if (candidate / "base").is_dir():
            return candidate.resolve()
    raise ConfigError("no conf dir found: pass --conf-dir or set MLCORE_CONF_DIR")


def source_checkout() -> Path | None:
    """The source tree this package runs from (it holds ``setup.py`` and ``conf/base``), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "setup.py").is_file() and (root / "conf" / "base").is_dir() else None


def resolve_home(environ: Mapping[str, str] | None = None) -> Path:
    """Where local tables and the MLflow store live: ``MLCORE_HOME``, else ``.mlcore`` in the
    source checkout the package runs from, else ``$XDG_DATA_HOME/mlcore`` (``~/.local/share``).
    Never the current directory: a job started from ``/tmp`` must find the same tables."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR_HOME):
        return Path(environ[ENV_VAR_HOME]).expanduser().resolve()
    checkout = source_checkout()
    if checkout is not None:
        return checkout / ".mlcore"
    data = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return (Path(data).expanduser() / "mlcore").resolve()


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``a.b=value``; the value is read as YAML: a scalar (``true``/``3`` get types) or a flat list."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        from mlcore.logging_setup import REDACTED, is_secret_key, redact

        shown = f"{key}={REDACTED}" if is_secret_key(key) else redact(text)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"--set {shown!r}: value is not valid YAML ({problem}); quote it, e.g. {key}='...'"
        ) from None
    if isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value)
    ):
        raise ConfigError(
            f"--set {text!r}: only scalars or flat lists (e.g. [a, b]) can be set from the command line"
        )
    return key, value


def load_config(
    env: str | None = None,
    conf_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> MlcoreConfig:
    """Load, merge and validate the configuration for one run."""
    environ = os.environ if environ is None else environ
    env_name = resolve_env(env, environ)
    root = resolve_conf_dir(str(conf_dir) if conf_dir else None, environ)
    env_dir = root / env_name
    if env_name != "base" and not env_dir.is_dir():
        available = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "base")
        raise ConfigError(f"unknown env {env_name!r}: no folder {env_dir} (available: {available})")

    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    _merge_layer(merged, origin, _read_layer(root / "base"))
    if env_name != "base":
        _merge_layer(merged, origin, _read_layer(env_dir))
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(merged, _override_path(key), value)
        origin[key] = f"--set {key}"

    for section in merged:
        if section not in CONFIG_SECTIONS:
            raise ConfigError(
                f"unknown section {section!r} ({_origin_of(origin, section)}); "
                f"allowed: {', '.join(CONFIG_SECTIONS)}"
            )
    home = resolve_home(environ)
    merged = _resolve_placeholders(merged, home=home, repo_root=root.parent, origin=origin)
    _default_spark_redaction(merged)
    values = dict(merged, env=env_name, conf_dir=str(root), mlcore_home=str(home))
    config = _build(MlcoreConfig, values, "", origin)
    for table_name in config.tables:
        if not _TABLE_NAME.match(table_name):
            raise ConfigError(
                f"tables.{table_name}: logical table names are lower-case identifiers "
                f"({_origin_of(origin, 'tables.' + table_name)})"
            )
    check_names_and_paths(config, origin)
    return config


def _default_spark_redaction(merged: dict[str, Any]) -> None:
    """Spark redacts conf values in its UI, event log and logs by key pattern; make the pattern
    cover every credential key mlcore knows (Azure account keys, SAS tokens...) unless set."""
    from mlcore.logging_setup import SPARK_REDACTION_REGEX

    spark = merged.setdefault("spark", {})
    if isinstance(spark, dict):
        conf = spark.get("conf")
        if conf is None:
            conf = spark["conf"] = {}
        if isinstance(conf, dict):
            conf.setdefault("spark.redaction.regex", SPARK_REDACTION_REGEX)


# ----------------------------------------------------------------------------------------------
# Names and paths: checked before any Spark, Delta or MLflow call
# ----------------------------------------------------------------------------------------------
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
    column, table, model = (_IDENTIFIER, "a column name"), (_TABLE_NAME, "a logical table name"), (
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
                f"{dotted}: {redact(repr(value))} is not {description} ({_origin_of(origin, dotted)})"
            )
    lake_root = config.storage.lake_root
    problem = path_problem(lake_root)
    if problem:
        raise ConfigError(
            f"storage.lake_root {redact(repr(lake_root))} {problem} "
            f"({_origin_of(origin, 'storage.lake_root')})"
        )
    for name, table in config.tables.items():
        try:
            check_table_location(
                name, table.path, table.catalog_name, table.partition_by, lake_root
            )
        except ValueError as exc:
            raise ConfigError(f"{redact(exc)} ({_origin_of(origin, 'tables.' + name)})") from None
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
                f"{dotted} {redact(repr(value))} {problem} ({_origin_of(origin, dotted)})"
            )
    for dotted in ("mlflow.tracking_uri", "mlflow.registry_uri", "mlflow.artifact_location"):
        value = getattr(config.mlflow, dotted.split(".")[1])
        if value and _CREDENTIALS.match(value):
            raise ConfigError(
                f"{dotted} {redact(value)!r} embeds credentials (user info before '@'); pass them through the "
                f"environment (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / "
                f"MLFLOW_TRACKING_TOKEN) instead ({_origin_of(origin, dotted)})"
            )
        if value and _CONTROL.search(value):
            raise ConfigError(
                f"{dotted}: contains a control character ({_origin_of(origin, dotted)})"
            )
    try:
        date.fromisoformat(config.ingest.min_date)
    except ValueError:
        raise ConfigError(
            f"ingest.min_date: expected YYYY-MM-DD, got {config.ingest.min_date!r} "
            f"({_origin_of(origin, 'ingest.min_date')})"
        ) from None
    if config.ingest.max_days_after_run_date < 0:
        raise ConfigError(
            f"ingest.max_days_after_run_date: expected >= 0, got "
            f"{config.ingest.max_days_after_run_date} "
            f"({_origin_of(origin, 'ingest.max_days_after_run_date')})"
        )
    remote = config.spark.remote
    if remote is not None and not re.match(r"^sc://[^/?#@\s]+(/[^@\s]*)?\Z", remote):
        raise ConfigError(
            f"spark.remote {redact(remote)!r}: expected a Spark Connect URL sc://host:port (tokens "
            f"go in the ;token= parameters or the environment, never user info) "
            f"({_origin_of(origin, 'spark.remote')})"
        )
    schema = config.storage.catalog_schema
    if schema is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*\Z", schema):
        raise ConfigError(
            f"storage.catalog_schema: expected catalog.schema of letters, digits and '_' "
            f"(e.g. spark_catalog.mlcore), got {schema!r} ({_origin_of(origin, 'storage.catalog_schema')})"
        )
    if schema is not None and config.storage.delta_engine == "deltars":
        raise ConfigError(
            "storage.catalog_schema needs native Delta (storage.delta_engine spark or auto): "
            f"delta-rs has no Spark catalog ({_origin_of(origin, 'storage.delta_engine')})"
        )
    timeout = config.mlflow.request_timeout_seconds
    if not 5 <= timeout <= 3600:
        raise ConfigError(
            f"mlflow.request_timeout_seconds: expected 5..3600 seconds, got {timeout} "
            f"({_origin_of(origin, 'mlflow.request_timeout_seconds')})"
        )
    root = config.mlflow.experiment_root
    if _CONTROL.search(root) or "'" in root or '"' in root or "`" in root:
        raise ConfigError(
            f"mlflow.experiment_root {root!r}: no quotes or control characters "
            f"({_origin_of(origin, 'mlflow.experiment_root')})"
        )


def _read_layer(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    layer = []
    for path in sorted(folder.glob("*.yml")) + sorted(folder.glob("*.yaml")):
        data = read_yaml(path)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        layer.append((path, data))
    return layer


def _merge_layer(
    merged: dict[str, Any], origin: dict[str, str], layer: list[tuple[Path, dict[str, Any]]]
) -> None:
    """Deep-merge one env's files; the same key set twice within one env is an error."""
    seen_in_layer: dict[str, Path] = {}
    for path, data in layer:
        for parts, value in _leaves(data):
            dotted = ".".join(parts)
            if dotted in seen_in_layer:
                raise ConfigError(
                    f"key {dotted!r} is set in both {seen_in_layer[dotted]} and {path}"
                )
            seen_in_layer[dotted] = path
            _set_dotted(merged, parts, value)
            origin[dotted] = str(path)


def _override_path(key: str) -> list[str]:
    """Split an override key; Spark conf keys contain dots, so they stay whole."""
    if key.startswith("spark.conf."):
        return ["spark", "conf", key[len("spark.conf.") :]]
    return key.split(".")


def _leaves(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[list[str], Any]]:
    out: list[tuple[list[str], Any]] = []
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"key {'.'.join(prefix + (str(key),))!r}: keys must be strings")
        parts = prefix + (key,)
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, parts))
        else:
            out.append((list(parts), value))
    return out


def _set_dotted(target: dict[str, Any], parts: list[str], value: Any) -> None:
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _origin_of(origin: Mapping[str, str], dotted: str) -> str:
    """Where a key's value came from (file, --set, or defaults); ``a.b[3]`` is an item of a.b."""
    dotted = re.sub(r"\[\d+\]", "", dotted)
    if dotted in origin:
        return origin[dotted]
    hits = sorted({src for key, src in origin.items() if key.startswith(dotted + ".")})
    if hits:
        return ", ".join(hits)
    parts = dotted.split(".")
    for end in range(len(parts) - 1, 0, -1):  # a parent set as a whole
        if ".".join(parts[:end]) in origin:
            return origin[".".join(parts[:end])]
    return "defaults"


def _resolve_placeholders(
    merged: dict[str, Any], home: Path, repo_root: Path, origin: Mapping[str, str]
) -> dict[str, Any]:
    """Replace ``{mlcore_home}``, ``{repo_root}`` and ``{datasets_dir}`` in string values."""
    values = {"mlcore_home": str(home), "repo_root": str(repo_root)}
    datasets = (merged.get("sources") or {}).get("datasets_dir")
    values["datasets_dir"] = (
        _substitute(datasets, values, "sources.datasets_dir", origin)
        if isinstance(datasets, str)
        else ""
    )

    def walk(node: Any, dotted: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{dotted}.{k}" if dotted else k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, dotted) for v in node]
        if isinstance(node, str):
            return _substitute(node, values, dotted, origin)
        return node

    return walk(merged, "")


def _substitute(
    text: str, values: Mapping[str, str], dotted: str, origin: Mapping[str, str]
) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in _KNOWN_PLACEHOLDERS:
            raise ConfigError(
                f"{dotted}: unknown placeholder {{{name}}} ({_origin_of(origin, dotted)}); "
                f"known: {', '.join('{' + p + '}' for p in _KNOWN_PLACEHOLDERS)}"
            )
        if name == "datasets_dir" and not values.get(name):
            raise ConfigError(f"{dotted}: uses {{datasets_dir}} but sources.datasets_dir is unset")
        return values[name]

    result = _PLACEHOLDER.sub(repl, text)
    if result != text and result.startswith("/"):
        result = os.path.normpath(result)  # '{repo_root}/../shared' -> a clean local path
    return result


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is not None:
        return str(tp).replace("typing.", "")
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _build(tp: Any, value: Any, dotted: str, origin: Mapping[str, str]) -> Any:
    """Check ``value`` against type ``tp`` and build dataclasses; errors name key and file."""

    def fail(expected: str) -> ConfigError:
        from mlcore.logging_setup import REDACTED, is_secret_key, redact

        where = _origin_of(origin, dotted) if dotted else "config"
        shown = REDACTED if is_secret_key(dotted) else redact(repr(value))
        return ConfigError(f"{dotted or 'config'}: expected {expected}, got {shown} ({where})")

    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise fail("a mapping")
        hints = get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            key = f"{dotted}.{unknown[0]}" if dotted else unknown[0]
            raise ConfigError(
                f"unknown key {key!r} ({_origin_of(origin, key)}); "
                f"allowed under {dotted or 'top level'}: {', '.join(sorted(names))}"
            )
        kwargs = {
            name: _build(hints[name], value[name], f"{dotted}.{name}" if dotted else name, origin)
            for name in names
            if name in value
        }
        return cast(Any, tp)(**kwargs)

    type_origin = get_origin(tp)
    if type_origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise fail(_type_name(tp))
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _build(option, value, dotted, origin)
            except ConfigError as exc:
                errors.append(exc)
        raise fail(_type_name(tp))
    if type_origin is Literal:
        if value not in get_args(tp):
            raise fail(_type_name(tp))
        return value
    if type_origin is list:
        if not isinstance(value, list):
            raise fail(_type_name(tp))
        (item_type,) = get_args(tp)
        return [_build(item_type, item, f"{dotted}[{i}]", origin) for i, item in enumerate(value)]
    if type_origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise fail("a mapping")
        _, item_type = get_args(tp)
        return {
            str(key): _build(item_type, item, f"{dotted}.{key}", origin)
            for key, item in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise fail("bool")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("int")
        if not _INT64[0] <= value <= _INT64[1]:
            raise fail("an int that fits in 64 bits")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("float")
        return float(value)
    if tp is str:
        if isinstance(value, date):
            # YAML reads an unquoted 2015-06-14 (in a file or a --set) as a date: a text field
            # that holds dates takes it as written, not as a type error.
            return value.isoformat()
        if not isinstance(value, str):
            raise fail("str")
        return value
    raise ConfigError(f"{dotted}: unsupported config type {tp!r}")


def build_section(section_type: type, values: Mapping[str, Any]) -> Any:
    """Validate plain data (e.g. a model's stored config) into one typed config section."""
    return _build(section_type, dict(values), "", {})


def config_as_flat_dict(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config object to ``{"a.b": value}`` (for MLflow params and manifests)."""
    out: dict[str, Any] = {}
    items = (
        {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        if dataclasses.is_dataclass(config)
        else config
    )
    for key, value in items.items():
        dotted = f"{prefix}{key}"
        if dataclasses.is_dataclass(value) or isinstance(value, dict):
            out.update(config_as_flat_dict(value, dotted + "."))
        elif isinstance(value, list):
            out[dotted] = ",".join(str(v) for v in value)
        else:
            out[dotted] = value
    return out
