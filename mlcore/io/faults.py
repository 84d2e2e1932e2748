"""Fault-injection point for the reliability suite; inert unless its environment variable is set.

``MLCORE_FAULT_AFTER_COMMIT="<table>[,<table>...]:<action>"`` acts right after a write to one of
those logical tables *committed* (a skipped, already-written write does nothing):

- ``kill``: SIGKILL this process, as a driver that dies just after a commit would;
- ``raise``: raise :class:`InjectedFault`, as a lost response would (the commit is in the table
  but the caller sees an error).

It lives in the IO layer (the one place every job's commit passes through) rather than in
pipeline code, and is read at call time, so tests can set it for a subprocess or one call.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

AFTER_COMMIT_ENV = "MLCORE_FAULT_AFTER_COMMIT"

log = logging.getLogger(__name__)


class InjectedFault(RuntimeError):
    """Raised by an ``MLCORE_FAULT_AFTER_COMMIT=...:raise`` injection point."""


def after_commit(table: str, committed: bool) -> None:
    spec = os.environ.get(AFTER_COMMIT_ENV, "").strip()
    if not spec or not committed:
        return
    names, _, action = spec.rpartition(":")
    if table not in {n.strip() for n in names.split(",")}:
        return
    if action == "kill":
        log.error("fault injection: killing the driver after the commit to %s", table)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise InjectedFault(f"fault injection: lost response after the commit to {table}")
    else:
        raise ValueError(f"{AFTER_COMMIT_ENV}={spec!r}: action must be 'kill' or 'raise'")
