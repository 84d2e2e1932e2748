"""The root of every error mlcore expects, and the exit code each kind maps to.

An expected error (bad config, a missing input, a failed gate, a storage conflict, an unsafe
model file) is one line on stderr and an exit code, never a traceback: ``mlcore.runner`` catches
``MlcoreError`` and exits with its ``exit_code``. Anything else is a bug and is logged with its
traceback. Each package raises its own subclass (``ConfigError``, ``DeltaIOError``,
``TrackingUnavailable``, ...), so this module sits below all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class MlcoreError(Exception):
    """An expected failure: reported in one line; exit code 1 (runtime) unless a subclass says."""

    exit_code: int = 1


class UsageError(MlcoreError):
    """Bad arguments or configuration: nothing ran; exit code 2."""

    exit_code = 2


class JobFailed(MlcoreError, RuntimeError):
    """A job stopped on purpose (a gate, a failure budget, bad input): exit code 1.

    ``affects`` names the tables the failure is confined to, where it is narrower than
    everything the job writes (a gate that failed for one input table): the nightly chain then
    holds back only the steps that need those. ``summary`` is what the job reported before it
    stopped (a chain's step outcomes), recorded in its run_manifest row."""

    def __init__(
        self, message: str, *, affects: Iterable[str] | None = None, summary: Any = None
    ) -> None:
        super().__init__(message)
        self.affects = tuple(affects) if affects is not None else None
        self.summary = summary
