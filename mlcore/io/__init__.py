"""Delta tables by logical name, on two engines (native Spark Delta and delta-rs)."""

from mlcore.io.delta import DeltaTables, WriteResult
from mlcore.io.errors import (
    DeltaIOError,
    ReplaceWhereViolation,
    SchemaMismatchError,
    UnsupportedTableError,
)
from mlcore.io.tables import TableRef, WriteToken

__all__ = [
    "DeltaIOError",
    "DeltaTables",
    "ReplaceWhereViolation",
    "SchemaMismatchError",
    "TableRef",
    "UnsupportedTableError",
    "WriteResult",
    "WriteToken",
]
