"""Plain YAML values -> the typed config dataclasses, checked against their annotations (a wrong
type names the key, the file it came from and what was expected), and back to flat dicts."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from datetime import date
from typing import Any, Literal, cast, get_args, get_origin, get_type_hints

from mlcore.config.errors import ConfigError, origin_of

# Integers end up in Delta txn versions, Spark LongType columns and MLflow: signed 64-bit.
_INT64 = (-(2**63), 2**63 - 1)


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


def build_typed(tp: Any, value: Any, dotted: str, origin: Mapping[str, str]) -> Any:
    """Check ``value`` against type ``tp`` and build dataclasses; errors name key and file."""

    def fail(expected: str) -> ConfigError:
        from mlcore.logging_setup import REDACTED, is_secret_key, redact

        where = origin_of(origin, dotted) if dotted else "config"
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
                f"unknown key {key!r} ({origin_of(origin, key)}); "
                f"allowed under {dotted or 'top level'}: {', '.join(sorted(names))}"
            )
        kwargs = {
            name: build_typed(hints[name], value[name], f"{dotted}.{name}" if dotted else name, origin)
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
                return build_typed(option, value, dotted, origin)
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
        return [build_typed(item_type, item, f"{dotted}[{i}]", origin) for i, item in enumerate(value)]
    if type_origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise fail("a mapping")
        _, item_type = get_args(tp)
        return {
            str(key): build_typed(item_type, item, f"{dotted}.{key}", origin)
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
    return build_typed(section_type, dict(values), "", {})


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
