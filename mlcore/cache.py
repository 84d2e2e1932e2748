"""Where mlcore caches machine-wide files (the Delta jars, the MLflow store template): below
every other module, so that any layer may ask."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MLCORE_CACHE_DIR"


def cache_dir() -> Path:
    """``$MLCORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlcore``, else ``~/.cache/mlcore``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlcore"
