"""Spark's ``xxhash64`` in numpy, so row keys can be computed without the JVM.

``F.xxhash64(c1, c2, ...)`` hashes each column with the previous column's hash as its seed (the
first with 42); a null leaves the running hash unchanged. Integral columns up to 32 bits, booleans
(0/1) and dates (days) go through ``XXH64.hashInt``; longs and timestamps (microseconds) through
``XXH64.hashLong``. :func:`spark_xxhash64` reproduces that bit for bit with vectorised uint64
arithmetic (numpy wraps on overflow, as Java's long arithmetic does). Strings, floating point and
decimals hash their bytes in Spark and are not supported here: callers check
:func:`supports_spark_type` first and keep Spark's own hash otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import DataType

SPARK_SEED = 42
P1 = np.uint64(0x9E3779B185EBCA87)
P2 = np.uint64(0xC2B2AE3D27D4EB4F)
P3 = np.uint64(0x165667B19E3779F9)
P4 = np.uint64(0x85EBCA77C2B2AE63)
P5 = np.uint64(0x27D4EB2F165667C5)
_INT_TYPES = ("boolean", "tinyint", "smallint", "int", "date")
_LONG_TYPES = ("bigint", "timestamp", "timestamp_ntz")


def supports_spark_type(data_type: DataType) -> bool:
    """True when :func:`spark_xxhash64` hashes a column of this Spark type like Spark does."""
    return data_type.simpleString() in (*_INT_TYPES, *_LONG_TYPES)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * P2
    h = h ^ (h >> np.uint64(29))
    h = h * P3
    return h ^ (h >> np.uint64(32))


def _hash_int(values: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """``XXH64.hashInt`` of int32 ``values`` (as their unsigned 32 bits) with per-row seeds."""
    unsigned = values.astype(np.int32, copy=False).view(np.uint32).astype(np.uint64)
    h = seed + P5 + np.uint64(4)
    h = h ^ (unsigned * P1)
    h = _rotl(h, 23) * P2 + P3
    return _fmix(h)


def _hash_long(values: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """``XXH64.hashLong`` of int64 ``values`` with per-row seeds."""
    bits = values.astype(np.int64, copy=False).view(np.uint64)
    h = seed + P5 + np.uint64(8)
    h = h ^ (_rotl(bits * P2, 31) * P1)
    h = _rotl(h, 27) * P1 + P4
    return _fmix(h)


def _column_values(array: pa.Array) -> tuple[np.ndarray, bool]:
    """(values with nulls as 0, hashed as long?) of one Arrow column, or ValueError."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_boolean(kind):
        return pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(np.int32), False
    if pa.types.is_int8(kind) or pa.types.is_int16(kind) or pa.types.is_int32(kind):
        return pc.fill_null(array, 0).to_numpy(zero_copy_only=False).astype(np.int32), False
    if pa.types.is_date32(kind):
        days = pc.fill_null(array.cast(pa.int32()), 0)
        return days.to_numpy(zero_copy_only=False), False
    if pa.types.is_int64(kind):
        return pc.fill_null(array, 0).to_numpy(zero_copy_only=False), True
    if pa.types.is_timestamp(kind):  # Spark's internal value: microseconds since the epoch
        micros = array.cast(pa.timestamp("us", tz=kind.tz)).cast(pa.int64())
        return pc.fill_null(micros, 0).to_numpy(zero_copy_only=False), True
    raise ValueError(f"spark_xxhash64 does not support Arrow type {kind}")


def spark_xxhash64(
    arrays: Sequence[pa.Array | pa.ChunkedArray], seed: int = SPARK_SEED
) -> pa.Array:
    """``F.xxhash64(*columns)`` of equally long Arrow columns, as an int64 array (never null)."""
    import pyarrow as pa

    if not arrays:
        raise ValueError("spark_xxhash64 needs at least one column")
    rows = len(arrays[0])
    h = np.full(rows, np.int64(seed).view(np.uint64), dtype=np.uint64)
    for array in arrays:
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if len(array) != rows:
            raise ValueError("spark_xxhash64: columns of different lengths")
        values, is_long = _column_values(array)
        hashed = _hash_long(values, h) if is_long else _hash_int(values, h)
        if array.null_count:
            valid = array.is_valid().to_numpy(zero_copy_only=False)
            h = np.where(valid, hashed, h)
        else:
            h = hashed
    return pa.array(h.view(np.int64), type=pa.int64())
