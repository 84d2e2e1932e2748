"""Logical table names -> physical locations, and write idempotency tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from mlcore.config.models import MlcoreConfig

# Every output row carries the run that wrote it: its MLflow run id and its run date.
RUN_COLUMNS = ("run_id", "run_date")
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://|^dbfs:")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")  # \Z: "$" accepts "name\n"


@dataclass(frozen=True)
class TableRef:
    """A resolved table: its logical name, storage URI and (optional) catalog name."""

    name: str
    uri: str
    catalog_name: str | None = None
    partition_by: tuple[str, ...] = ()
    # A catalog table created at ``uri`` (storage.catalog_schema) rather than managed by the
    # catalog: the name and the path address the same table.
    external: bool = False


@dataclass(frozen=True)
class WriteToken:
    """Idempotency token recorded atomically with a write (Delta ``txn`` action).

    A write whose table already holds ``version`` (or a later one) for ``app_id`` is skipped,
    so re-running a job for the same run date adds no table version.
    """

    app_id: str
    version: int

    @classmethod
    def for_job(cls, job: str, run_date: date, revision: int = 1, part: str = "") -> WriteToken:
        """Token derived from job + run date (+ part for jobs writing one table twice).

        The run date is in the app id rather than the version so that backfilling an earlier
        date is never mistaken for a replay of a later one.
        """
        suffix = f":{part}" if part else ""
        return cls(app_id=f"mlcore:{job}:{run_date.isoformat()}{suffix}", version=revision)


def local_path(table: TableRef) -> Path | None:
    """The local folder of a path table, None for a catalog table or an object-store URI (what
    only the engine can check)."""
    if table.catalog_name or _URI.match(table.uri):
        return None
    return Path(table.uri)


def check_identifier(name: str, what: str = "column") -> str:
    """Reject names that could smuggle SQL into predicates or paths."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid {what} name {name!r}: use letters, digits and '_'")
    return name


def resolve_table(config: MlcoreConfig, name: str) -> TableRef:
    """Resolve a logical table name through ``tables`` and ``storage.lake_root``.

    The location must stay under the lake root: no ``..``, no absolute path or URI elsewhere
    (another folder, bucket or account), and, for local paths, not through a symlink that
    leads out of it. The loader applies the same checks when the config is read.
    """
    from mlcore.config.loader import check_table_location

    if name not in config.tables:
        raise KeyError(
            f"unknown logical table {name!r}; configured tables: {', '.join(sorted(config.tables))}"
        )
    table = config.tables[name]
    root = config.storage.lake_root.rstrip("/")
    check_table_location(name, table.path, table.catalog_name, table.partition_by, root)
    for column in table.partition_by:
        check_identifier(column)
    raw = table.path or name
    uri = raw if _URI.match(raw) or raw.startswith("/") else f"{root}/{raw}"
    if not _URI.match(uri):
        resolved = Path(uri).resolve()  # follows symlinks
        lake = Path(root).resolve()
        if resolved != lake and lake not in resolved.parents:
            raise ValueError(
                f"tables.{name}.path {raw!r} resolves to {resolved}, outside the lake root {lake} "
                "(a symlink?); it must not leave the lake root"
            )
        uri = str(resolved)
    schema = config.storage.catalog_schema
    external = table.catalog_name is None and schema is not None
    return TableRef(
        name=name,
        uri=uri,
        catalog_name=f"{schema}.{name}" if external else table.catalog_name,
        partition_by=tuple(table.partition_by),
        external=external,
    )
