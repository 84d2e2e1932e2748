"""Counts a job's MLflow tracking and registry calls (benchmarks only: scripts/bench_scale.py).

On ``PYTHONPATH`` with ``MLCORE_BENCH_MLFLOW_CALLS=<file>``, a job process wraps every public
method of MLflow's tracking and model-registry clients, counts the outermost calls (each is one
request to a remote tracking server; a batch call counts once) and writes the counts as JSON to
the file at exit. Spark's Python workers (no ``jobs/`` script) are left alone.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from collections import Counter

_TARGET = os.environ.get("MLCORE_BENCH_MLFLOW_CALLS")


def _install(target: str) -> None:
    from mlflow.tracking._model_registry.client import ModelRegistryClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    counts: Counter[str] = Counter()
    depth = threading.local()

    def wrap(owner: type, name: str) -> None:
        method = getattr(owner, name)

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            level = getattr(depth, "level", 0)
            if level == 0:
                counts[f"{owner.__name__}.{name}"] += 1
            depth.level = level + 1
            try:
                return method(*args, **kwargs)
            finally:
                depth.level = level

        setattr(owner, name, counted)

    for owner in (TrackingServiceClient, ModelRegistryClient):
        for name, value in list(vars(owner).items()):
            if not name.startswith("_") and callable(value) and not isinstance(value, property):
                wrap(owner, name)

    def dump() -> None:
        with open(target, "w") as out:
            json.dump(dict(counts), out, indent=1, sort_keys=True)

    atexit.register(dump)


if _TARGET and sys.argv and "jobs" in sys.argv[0].replace("\\", "/").split("/"):
    _install(_TARGET)
