"""Write leases: which writers of a Delta table may still commit, and cleanup of those that died.

A write that is killed (SIGKILL of the driver, a lost node) never reaches its own cleanup: the
Parquet files its tasks wrote stay in the table folder, referenced by no version, forever. Delta's
VACUUM removes such files only after a retention period (7 days), because a file nobody references
*yet* may belong to a writer that is about to commit it.

Every delta-rs engine write therefore holds a lease for its lifetime: a small JSON file
``<table>/_mlcore_writes/<write_id>.json`` naming the writer (host identity, pid and its start
time) and refreshed by a heartbeat. Delta readers and VACUUM ignore ``_``-prefixed folders. A lease
is **dead** when

- its writer ran on this machine (same host name, boot id and pid namespace) and that process no
  longer exists (or the pid now belongs to a process started later), or
- its heartbeat is older than ``lease_timeout`` (a writer on another machine).

The next write to the table (a rerun, or any later job) first removes what dead writers left:
data files that carry a dead write's id in their name, and, when no other live writer holds a
lease, any other unreferenced data file written while a dead lease was held (delta-rs merges and
predicate overwrites name their files themselves) and the commit files such a writer had staged
in ``_delta_log`` (``<version>.json#<n>``) but never linked to their version. A file referenced by any version still in the
log is never removed, nor one a live writer may still commit. The dead leases go last, so a sweep
that is itself killed is simply done again by the next write.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from urllib.parse import unquote

import pyarrow.fs as pafs

log = logging.getLogger(__name__)

LEASE_DIR = "_mlcore_writes"
DEFAULT_HEARTBEAT_SECONDS = 30.0
DEFAULT_LEASE_TIMEOUT_SECONDS = 900.0
# mlcore's own data file names: part-<task>-<write id>-a<attempt>-<uuid>.c000.snappy.parquet
_WRITE_ID = re.compile(r"^part-\d+-(?P<write_id>[0-9a-f]{12})-a\d+-")
# Commit files a writer stages in _delta_log before it links them to their version (delta-rs /
# object_store: ``<version>.json#<n>``; older delta-rs: ``_commit_<uuid>.json.tmp``): left
# behind by a writer killed at its commit.
_STAGED_COMMIT = re.compile(r"^(\d{20}\.json#\d+|_commit_[0-9a-f-]+\.json\.tmp)$")
# Clock skew and file-system timestamp granularity around a dead lease's window.
_WINDOW_SLACK_SECONDS = 5.0


@dataclass(frozen=True)
class Lease:
    """One writer's claim on a table: who writes, since when, last seen alive when."""

    write_id: str
    table: str
    host: str
    pid: int
    pid_start: str | None
    started: float
    heartbeat: float
    heartbeat_seconds: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Lease:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class SweepResult:
    """What a sweep removed: orphan data files and the leases of dead writers."""

    files: tuple[str, ...] = ()
    dead_writes: tuple[str, ...] = ()


@functools.cache
def host_identity() -> str:
    """This machine as seen by a pid check: host name, boot id and pid namespace.

    Two containers may share a host name; a pid is only meaningful within one boot and one pid
    namespace, so all three must match before a lease's pid is checked here. Fixed for the
    life of a process, so read once (not on every lease heartbeat and sweep).
    """
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            parts.append(handle.read().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "|".join(parts)


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), which
    tells a live writer from a later process that reused its pid; None where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _process_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start is None:
        return True
    current = process_start(pid)
    return current is None or current == start


def is_live(lease: Lease, now: float, lease_timeout: float, here: str | None = None) -> bool:
    """Whether the lease's writer may still commit (see the module docstring)."""
    if lease.host == (here or host_identity()):
        return _process_alive(lease.pid, lease.pid_start)
    return now - lease.heartbeat < lease_timeout


def _filesystem(table_uri: str) -> tuple[pafs.FileSystem, str]:
    uri = table_uri if "://" in table_uri else f"file://{table_uri}"
    fs, root = pafs.FileSystem.from_uri(uri)
    return fs, root.rstrip("/")


class WriteLease:
    """Holds a lease on a table for one write (context manager); refreshed on a daemon thread."""

    def __init__(
        self,
        table_uri: str,
        table: str,
        write_id: str,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    ) -> None:
        self.table_uri = table_uri
        self.table = table
        self.write_id = write_id
        self.heartbeat_seconds = heartbeat_seconds
        self.fs, self.root = _filesystem(table_uri)
        self.path = f"{self.root}/{LEASE_DIR}/{write_id}.json"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.time()

    def _lease(self) -> Lease:
        return Lease(
            write_id=self.write_id,
            table=self.table,
            host=host_identity(),
            pid=os.getpid(),
            pid_start=process_start(os.getpid()),
            started=self._started,
            heartbeat=time.time(),
            heartbeat_seconds=self.heartbeat_seconds,
        )

    def _write(self) -> None:
        """Write the lease atomically (temp file + move): a reader never sees half of it."""
        temp = f"{self.root}/{LEASE_DIR}/.{self.write_id}.{uuid.uuid4().hex[:8]}.tmp"
        for attempt in range(3):  # another writer's exit may remove the empty folder meanwhile
            try:
                self.fs.create_dir(f"{self.root}/{LEASE_DIR}", recursive=True)
                with self.fs.open_output_stream(temp) as stream:
                    stream.write(self._lease().to_json().encode("utf-8"))
                self.fs.move(temp, self.path)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self._write()
            except OSError:
                log.warning("%s: could not refresh write lease %s", self.table, self.write_id)

    def __enter__(self) -> WriteLease:
        self._write()
        self._thread = threading.Thread(
            target=self._beat, name=f"mlcore-lease-{self.write_id}", daemon=True
        )
        self._thread.start()
        return self

    def release_as_dead(self, lease_timeout: float) -> SweepResult:
        """This write failed without committing: remove its files now, as the next write would
        remove a dead writer's (delta-rs leaves the files of a failed merge or overwrite)."""
        self._stop.set()
        return sweep_dead_writes(
            self.table_uri, self.table, lease_timeout, failed_write_id=self.write_id
        )

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.delete_file(self.path)
        if isinstance(self.fs, pafs.LocalFileSystem):
            # No empty folders left behind: the lease folder, and the table folder when the
            # first write to a new table failed. rmdir only removes an empty folder.
            with contextlib.suppress(OSError):
                os.rmdir(f"{self.root}/{LEASE_DIR}")
                os.rmdir(self.root)


def read_leases(table_uri: str) -> list[tuple[Lease | None, str, float]]:
    """Every lease file of a table: (lease or None if unreadable, path, modification time)."""
    fs, root = _filesystem(table_uri)
    selector = pafs.FileSelector(f"{root}/{LEASE_DIR}", allow_not_found=True)
    out = []
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".json"):
            continue
        if info.base_name.startswith("."):
            continue  # a lease being written
        mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
        try:
            with fs.open_input_stream(info.path) as stream:
                lease: Lease | None = Lease.from_json(stream.read().decode("utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            lease = None
        out.append((lease, info.path, mtime))
    return out


def referenced_files(table_uri: str) -> set[str]:
    """Relative paths of every data file that a version still in the log references.

    The adds of every commit JSON and checkpoint in ``_delta_log`` (URL-decoded, as they lie
    on disk), so files of older versions that time travel can still read are kept too.
    """
    import pyarrow.parquet as pq

    fs, root = _filesystem(table_uri)
    log_dir = f"{root}/_delta_log"
    paths: set[str] = set()
    selector = pafs.FileSelector(log_dir, allow_not_found=True)
    for info in fs.get_file_info(selector):
        name = info.base_name
        if info.type != pafs.FileType.File:
            continue
        if name.endswith(".json") and name[:20].isdigit():
            with fs.open_input_stream(info.path) as stream:
                text = stream.read().decode("utf-8")
            for line in text.splitlines():
                if not line.strip():
                    continue
                action = json.loads(line)
                for kind in ("add", "remove"):
                    if action.get(kind) and action[kind].get("path"):
                        paths.add(unquote(action[kind]["path"]))
        elif ".checkpoint" in name and name.endswith(".parquet"):
            with fs.open_input_file(info.path) as handle:
                table = pq.read_table(handle, columns=["add"])
            for add in table.column("add").to_pylist():
                if add and add.get("path"):
                    paths.add(unquote(add["path"]))
    return paths


def _data_files(fs: pafs.FileSystem, root: str) -> list[pafs.FileInfo]:
    """Files under the table folder outside ``_``/``.``-prefixed folders and names (the log,
    leases, Spark's ``_SUCCESS`` and ``.crc`` files)."""
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    out = []
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(root) + 1 :]
        if any(part.startswith(("_", ".")) for part in relative.split("/")):
            continue
        out.append(info)
    return out


def sweep_dead_writes(
    table_uri: str,
    table: str,
    lease_timeout: float = DEFAULT_LEASE_TIMEOUT_SECONDS,
    own_write_id: str | None = None,
    failed_write_id: str | None = None,
) -> SweepResult:
    """Remove the files that dead writers of this table left behind (module docstring).

    Cheap when nothing died: one listing of the lease folder. ``own_write_id`` is the caller's
    own (live) lease, which is never treated as another writer; ``failed_write_id`` is the
    caller's own write that failed without committing, swept like a dead one.
    """
    now = time.time()  # files written after this cannot be a dead writer's (see below)
    here = host_identity()
    dead: list[tuple[Lease | None, str]] = []
    live: list[Lease] = []
    for lease, path, mtime in read_leases(table_uri):
        if lease is not None and lease.write_id == own_write_id:
            continue
        if lease is not None and lease.write_id == failed_write_id:
            dead.append((lease, path))
        elif lease is None:
            # Unreadable lease (a torn write on a store without atomic moves): dead once stale.
            if now - mtime >= lease_timeout:
                dead.append((None, path))
        elif is_live(lease, now, lease_timeout, here):
            live.append(lease)
        else:
            dead.append((lease, path))
    if not dead:
        return SweepResult()
    fs, root = _filesystem(table_uri)
    referenced = referenced_files(table_uri)
    dead_ids = {lease.write_id for lease, _ in dead if lease is not None}
    # When a dead writer held its lease: [start, last heartbeat + one interval], never later
    # than this sweep's start. A live writer takes its lease before writing any file, so its
    # files are either newer than ``now`` or it was listed as live above.
    windows = [
        (
            lease.started - _WINDOW_SLACK_SECONDS,
            min(now, lease.heartbeat + lease.heartbeat_seconds + _WINDOW_SLACK_SECONDS),
        )
        for lease, _ in dead
        if lease is not None
    ]
    doomed = []
    for info in _data_files(fs, root):
        relative = info.path[len(root) + 1 :]
        if relative in referenced:
            continue
        named = _WRITE_ID.match(info.base_name)
        if named:  # mlcore's own file: exactly its writer's fate decides
            if named.group("write_id") in dead_ids:
                doomed.append(info.path)
            continue
        if live or info.mtime is None:
            continue  # a live writer may still commit files it named itself (merges)
        mtime = info.mtime.timestamp()
        if any(low <= mtime <= high for low, high in windows):
            doomed.append(info.path)
    if not live:
        for info in fs.get_file_info(pafs.FileSelector(f"{root}/_delta_log", allow_not_found=True)):
            if info.type != pafs.FileType.File or not _STAGED_COMMIT.match(info.base_name):
                continue
            modified = info.mtime.timestamp() if info.mtime is not None else None
            if modified is not None and any(low <= modified <= high for low, high in windows):
                doomed.append(info.path)
    for path in doomed:
        with contextlib.suppress(FileNotFoundError, OSError):
            fs.delete_file(path)
    for _, path in dead:
        with contextlib.suppress(FileNotFoundError, OSError):
            fs.delete_file(path)
    if isinstance(fs, pafs.LocalFileSystem):
        _remove_empty_parents([*doomed, *(path for _, path in dead)], root)
    if doomed or dead:
        log.info(
            "%s: removed %d orphan data file(s) left by %d dead write(s) (%s)",
            table, len(doomed), len(dead), ", ".join(sorted(dead_ids)) or "unreadable lease",
        )  # fmt: skip
    return SweepResult(tuple(sorted(doomed)), tuple(sorted(dead_ids)))


def _remove_empty_parents(paths: list[str], root: str) -> None:
    """Remove the folders (below the table root) that the sweep emptied: partition folders of
    a first write that never committed, an empty lease folder. rmdir removes only empty ones."""
    folders = {os.path.dirname(path) for path in paths}
    for folder in sorted(folders, key=len, reverse=True):
        while folder.startswith(root + "/") and folder != root:
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)


@contextlib.contextmanager
def write_lease(
    table_uri: str,
    table: str,
    write_id: str,
    lease_timeout: float = DEFAULT_LEASE_TIMEOUT_SECONDS,
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
) -> Iterator[WriteLease]:
    """Hold a lease for one write, after sweeping what dead writers of the table left."""
    lease = WriteLease(table_uri, table, write_id, heartbeat_seconds)
    with lease:
        sweep_dead_writes(table_uri, table, lease_timeout, own_write_id=write_id)
        yield lease
