"""The config error, and where a key's value came from (for messages that name the file)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from mlcore.errors import UsageError


class ConfigError(UsageError, ValueError):
    """Invalid configuration; the message names the key and where it came from."""


def origin_of(origin: Mapping[str, str], dotted: str) -> str:
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
