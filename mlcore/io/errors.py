"""Errors raised by the Delta IO layer; each message says what to change."""

from mlcore.errors import MlcoreError


class DeltaIOError(MlcoreError, RuntimeError):
    """A Delta read or write could not be done; the table is unchanged."""


class SchemaMismatchError(DeltaIOError):
    """The data's columns or types do not match the table's schema."""


class ReplaceWhereViolation(DeltaIOError):
    """Rows outside a replace-where predicate were about to be written."""


class ConcurrentWriteError(DeltaIOError):
    """Another writer committed a conflicting change after this write read the table; this
    write committed nothing (re-run it against the new version)."""


class UnsupportedTableError(DeltaIOError):
    """The table uses a feature this engine cannot read or write correctly."""


class EngineUnavailableError(DeltaIOError):
    """The configured Delta engine is not available in this Spark session."""
