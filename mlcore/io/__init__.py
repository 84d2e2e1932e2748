"""Delta tables by logical name, on two engines (native Spark Delta and delta-rs)."""

from mlcore.io.delta import DeltaTables, WriteResult
from mlcore.io.errors import (
    ConcurrentWriteError,
    DeltaIOError,
    ReplaceWhereViolation,
    SchemaMismatchError,
    UnsupportedTableError,
)
from mlcore.io.scan import ArrowScan
from mlcore.io.tables import TableRef, WriteToken
from mlcore.io.transform import ArrowTransform

__all__ = [
    "ArrowScan",
    "ArrowTransform",
    "ConcurrentWriteError",
    "DeltaIOError",
    "DeltaTables",
    "ReplaceWhereViolation",
    "SchemaMismatchError",
    "TableRef",
    "UnsupportedTableError",
    "WriteResult",
    "WriteToken",
]
