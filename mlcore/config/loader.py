"""Layered configuration: ``conf/base`` + ``conf/<env>`` + ``--set`` overrides -> typed objects.

Why so strict: a typo in a nightly job's YAML must fail in the first second with the key and the
file named, not after an hour of training with a silently ignored setting.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mlcore.config.checks import TABLE_NAME, check_names_and_paths, check_table_location
from mlcore.config.errors import ConfigError, origin_of
from mlcore.config.models import CONFIG_SECTIONS, MlcoreConfig
from mlcore.config.typed import build_section, build_typed, config_as_flat_dict

# Re-exported: callers import the loader's public names from here.
__all__ = [
    "ConfigError",
    "add_config_arguments",
    "build_section",
    "check_table_location",
    "config_as_flat_dict",
    "load_config",
    "parse_override",
    "read_yaml",
    "resolve_conf_dir",
    "resolve_env",
    "resolve_home",
    "source_checkout",
]

DEFAULT_ENV = "local"
ENV_VAR_ENV = "MLCORE_ENV"
ENV_VAR_HOME = "MLCORE_HOME"
ENV_VAR_CONF_DIR = "MLCORE_CONF_DIR"
# Patterns end in \Z, not $: "$" also matches before a trailing newline ("name\n").
_ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}\Z")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_KNOWN_PLACEHOLDERS = ("mlcore_home", "repo_root", "datasets_dir")


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


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--env``, ``--conf-dir`` and ``--set``, as every mlcore command takes them."""
    parser.add_argument("--env", help="config env (default: $MLCORE_ENV, else 'local')")
    parser.add_argument("--conf-dir", help="config folder (default: ./conf)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key (repeatable)",
    )  # fmt: skip


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
                f"unknown section {section!r} ({origin_of(origin, section)}); "
                f"allowed: {', '.join(CONFIG_SECTIONS)}"
            )
    home = resolve_home(environ)
    merged = _resolve_placeholders(merged, home=home, repo_root=root.parent, origin=origin)
    _default_spark_redaction(merged)
    values = dict(merged, env=env_name, conf_dir=str(root), mlcore_home=str(home))
    config = build_typed(MlcoreConfig, values, "", origin)
    for table_name in config.tables:
        if not TABLE_NAME.match(table_name):
            raise ConfigError(
                f"tables.{table_name}: logical table names are lower-case identifiers "
                f"({origin_of(origin, 'tables.' + table_name)})"
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
                f"{dotted}: unknown placeholder {{{name}}} ({origin_of(origin, dotted)}); "
                f"known: {', '.join('{' + p + '}' for p in _KNOWN_PLACEHOLDERS)}"
            )
        if name == "datasets_dir" and not values.get(name):
            raise ConfigError(f"{dotted}: uses {{datasets_dir}} but sources.datasets_dir is unset")
        return values[name]

    result = _PLACEHOLDER.sub(repl, text)
    if result != text and result.startswith("/"):
        result = os.path.normpath(result)  # '{repo_root}/../shared' -> a clean local path
    return result
