"""Fault-injection point for the reliability suite; inert unless its environment variable is set.

``MLCORE_FAULT_AFTER_COMMIT="<table>[,<table>...]:<action>"`` acts right after a write to one of
those logical tables *committed* (a skipped, already-written write does nothing):

- ``kill``: SIGKILL this process, as a driver that dies just after a commit would;
- ``raise``: raise :class:`InjectedFault`, as a lost response would (the commit is in the table
  but the caller sees an error).

``MLCORE_FAULT_AT_FIRST_FILE="<table>[,<table>...]:<action>"`` acts in whichever process writes
the first Parquet data file of a write to one of those tables (a Spark task, a fused
transform-and-write task or the driver), right after that file is complete and before anything
is committed: ``hang`` stops that process there for good (the test then SIGKILLs the job, as a
node lost mid-write), ``kill`` SIGKILLs it.

``MLCORE_FAULT_GROUPS="3,17"`` (``"a|b"`` for multi-key groups) makes those forecasting groups
report ``failed``, as a crashing model would; ``MLCORE_FAULT_GROUP_DELAY_SECONDS`` makes each
group's task wait before training. The pipeline reads them here (:func:`forecast_group_faults`)
and passes them to the domain code as a typed plan; domain code never reads the environment.

It lives in the IO layer (the one place every job's commit passes through) rather than in
pipeline code, and is read at call time, so tests can set it for a subprocess or one call.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

AFTER_COMMIT_ENV = "MLCORE_FAULT_AFTER_COMMIT"
AT_FIRST_FILE_ENV = "MLCORE_FAULT_AT_FIRST_FILE"
GROUPS_ENV = "MLCORE_FAULT_GROUPS"
GROUP_DELAY_ENV = "MLCORE_FAULT_GROUP_DELAY_SECONDS"

log = logging.getLogger(__name__)


class InjectedFault(RuntimeError):
    """Raised by an ``MLCORE_FAULT_AFTER_COMMIT=...:raise`` injection point."""


def _armed(env: str, table: str) -> tuple[str, str] | None:
    """(action, spec) when ``<env>="<table>[,<table>...]:<action>"`` names ``table``, else None."""
    spec = os.environ.get(env, "").strip()
    if not spec or not table:
        return None
    names, _, action = spec.rpartition(":")
    if table not in {n.strip() for n in names.split(",")}:
        return None
    return action, spec


def after_commit(table: str, committed: bool) -> None:
    armed = _armed(AFTER_COMMIT_ENV, table) if committed else None
    if armed is None:
        return
    action, spec = armed
    if action == "kill":
        log.error("fault injection: killing the driver after the commit to %s", table)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise InjectedFault(f"fault injection: lost response after the commit to {table}")
    else:
        raise ValueError(f"{AFTER_COMMIT_ENV}={spec!r}: action must be 'kill' or 'raise'")


def at_first_file(table: str) -> None:
    """The ``MLCORE_FAULT_AT_FIRST_FILE`` injection point (called once per written data file)."""
    armed = _armed(AT_FIRST_FILE_ENV, table)
    if armed is None:
        return
    action, spec = armed
    if action not in ("hang", "kill"):
        raise ValueError(f"{AT_FIRST_FILE_ENV}={spec!r}: action must be 'hang' or 'kill'")
    sys.stderr.write(f"fault injection: {action} at the first data file of {table}\n")
    sys.stderr.flush()
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    while True:  # hang: the write never finishes; the test kills the job from outside
        time.sleep(3600)


def forecast_group_faults() -> tuple[frozenset[str], float]:
    """(groups to fail, seconds each group's task waits) from the environment; empty and 0 when
    unset, as in production."""
    groups = frozenset(i.strip() for i in os.environ.get(GROUPS_ENV, "").split(",") if i.strip())
    return groups, float(os.environ.get(GROUP_DELAY_ENV) or 0)
