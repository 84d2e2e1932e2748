"""Batch scoring of a Spark DataFrame with a skops model, loaded once per Python worker.

The model bytes travel as a broadcast; each worker deserialises them once (cached by digest) and
scores Arrow batches with ``predict_proba``. Rows keep a ``row_key``: the configured key columns
hashed, or, for tables without a key (UCI bank), a hash of every input column, so identical input
rows share a key (and, necessarily, a score).

Scoring is an Arrow transform (:class:`Scoring`): the rows to score plus a per-partition function
from their Arrow batches to score batches. ``Scoring.frame()`` is the scores as a DataFrame; a job
that stores them passes the transform to ``DeltaTables.write(..., transform=...)`` instead, so the
delta-rs engine writes the scores from the scoring tasks themselves (no second pass of the output
through the JVM).

On delta-rs the rows can also come from a direct Arrow scan (:func:`scan_scoring`): the Python
workers read the Parquet files and compute ``row_key`` with a numpy port of Spark's ``xxhash64``
(integral, boolean, date and timestamp key columns only), so the JVM does not touch the rows at
all. Both paths run the same scoring step (:class:`ScoreBatches`) and give identical output.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcore.classification.features import FeatureSpec
from mlcore.io import model_files
from mlcore.io.tables import RUN_COLUMNS
from mlcore.io.transform import ArrowTransform
from mlcore.spark_classic import share

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyspark import Broadcast
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from mlcore.io.scan import ArrowScan


def row_key_columns(
    columns: Sequence[str], key_columns: Sequence[str], label: str | None
) -> list[str]:
    """The columns the row key hashes, in hash order: the key columns, or else every input
    column except run metadata and the label (sorted by name)."""
    if key_columns:
        return list(key_columns)
    return sorted(c for c in columns if c not in RUN_COLUMNS and c != label)


def row_key_column(df: DataFrame, key_columns: Sequence[str], label: str | None) -> Any:
    """``xxhash64`` over the key columns, or over every input column except run metadata and the label."""
    from pyspark.sql import functions as F

    columns = row_key_columns(df.columns, key_columns, label)
    return F.xxhash64(*[F.col(f"`{c}`") for c in columns])


def scoring_columns(spec: FeatureSpec, key_columns: Sequence[str]) -> list[str]:
    """Input columns of the score batches after ``row_key``: key columns that are not features,
    then the features."""
    return [*[c for c in key_columns if c not in spec.columns], *spec.columns]


@dataclass(frozen=True)
class Scoring:
    """The rows to score (``row_key``, key columns, features) and the transform scoring them."""

    input: DataFrame
    transform: ArrowTransform

    def frame(self) -> DataFrame:
        """Rows ``row_key, <key columns>, probability, label`` as a DataFrame."""
        return self.transform.apply(self.input)


class ScoreBatches:
    """Picklable batch function: ``row_key, <key columns>, probability, label`` per input batch.

    The one scoring step both paths share (Spark-prepared rows in :func:`scoring`, direct-scan
    rows in :func:`scan_scoring`): loads the broadcast model once per worker, passes the named
    columns through and labels ``probability >= threshold``.
    """

    def __init__(
        self,
        model: Broadcast,
        digest: str,
        spec: FeatureSpec,
        threshold: float,
        names: Sequence[str],
    ) -> None:
        self.model = model
        self.digest = digest
        self.spec = spec
        self.threshold = threshold
        self.names = list(names)

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import numpy as np
        import pyarrow as pa

        model = model_files.worker_model(self.model.value, self.digest)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            frame = arrow_feature_frame(batch, self.spec)
            proba = model.predict_proba(frame)[:, 1].astype(np.float64)
            label = (proba >= self.threshold).astype(np.int32)
            yield pa.RecordBatch.from_arrays(
                [*[batch.column(n) for n in self.names], pa.array(proba), pa.array(label)],
                names=[*self.names, "probability", "label"],
            )


def score_transform(
    spark: SparkSession,
    model_bytes: bytes,
    spec: FeatureSpec,
    threshold: float,
    key_columns: Sequence[str],
    input_schema: StructType,
) -> ArrowTransform:
    """The scoring transform of batches with ``input_schema`` (``row_key``, key columns, features):
    output ``row_key, <key columns>, probability, label`` with the input's field types."""
    from pyspark.sql.types import DoubleType, IntegerType, StructField, StructType

    passthrough = {"row_key", *key_columns}
    kept = [f for f in input_schema.fields if f.name in passthrough]
    schema = StructType(
        [*kept, StructField("probability", DoubleType()), StructField("label", IntegerType())]
    )
    shared = share(spark, model_bytes)  # a broadcast; in the closure over Connect
    fn = ScoreBatches(
        shared, model_files.digest(model_bytes), spec, threshold, [f.name for f in kept]
    )
    return ArrowTransform(fn, schema)


def scoring(
    df: DataFrame,
    model_bytes: bytes,
    spec: FeatureSpec,
    threshold: float,
    key_columns: Sequence[str] = (),
) -> Scoring:
    """Score ``df``: output rows ``row_key, <key columns>, probability, label`` (label =
    probability >= threshold), computed by a transform that loads the model once per worker."""
    from pyspark.sql import functions as F

    keys = list(key_columns)
    prepared = df.select(
        row_key_column(df, keys, spec.label).alias("row_key"),
        *[F.col(f"`{c}`") for c in scoring_columns(spec, keys)],
    )
    transform = score_transform(
        df.sparkSession, model_bytes, spec, threshold, keys, prepared.schema
    )
    return Scoring(prepared, transform)


def unhashable_in_python(schema: StructType, hash_columns: Sequence[str]) -> list[str]:
    """Columns among ``hash_columns`` (with their types) whose Spark ``xxhash64`` the numpy port
    cannot reproduce; empty when the row key can be computed without Spark."""
    from mlcore.io.hashing import supports_spark_type

    return [
        f"{c} ({schema[c].dataType.simpleString()})"
        for c in hash_columns
        if not supports_spark_type(schema[c].dataType)
    ]


class AddRowKey:
    """Picklable batch function: ``row_key`` (Spark's ``xxhash64`` of ``hash_columns``, in
    numpy) followed by ``columns``, from batches that hold both."""

    def __init__(self, hash_columns: Sequence[str], columns: Sequence[str]) -> None:
        self.hash_columns = list(hash_columns)
        self.columns = list(columns)

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        from mlcore.io.hashing import spark_xxhash64

        for batch in batches:
            key = spark_xxhash64([batch.column(c) for c in self.hash_columns])
            yield pa.RecordBatch.from_arrays(
                [key, *[batch.column(c) for c in self.columns]], names=["row_key", *self.columns]
            )


def scan_columns(
    spec: FeatureSpec, key_columns: Sequence[str], hash_columns: Sequence[str]
) -> list[str]:
    """The table columns a direct scan must read to score: hashed, key and feature columns."""
    return list(dict.fromkeys([*hash_columns, *scoring_columns(spec, key_columns)]))


def scan_scoring(
    scan: ArrowScan,
    source_schema: StructType,
    model_bytes: bytes,
    spec: FeatureSpec,
    threshold: float,
    key_columns: Sequence[str],
    hash_columns: Sequence[str],
) -> ArrowTransform:
    """:func:`scoring`'s transform on a direct scan's rows, as a transform of ``scan.slices``:
    scan -> ``row_key`` in numpy -> the shared scoring step, all in one task.

    ``hash_columns`` must all be hashable in numpy (:func:`unhashable_in_python` is empty);
    ``source_schema`` is the schema of the Spark read of the same table, so the output fields
    equal :func:`scoring`'s exactly.
    """
    from pyspark.sql.types import LongType, StructField, StructType

    from mlcore.io.scan import chain

    keys = list(key_columns)
    columns = scoring_columns(spec, keys)
    # Spark's xxhash64 is never null: the Spark path's row_key field is not nullable either.
    input_schema = StructType(
        [StructField("row_key", LongType(), False), *[source_schema[c] for c in columns]]
    )
    score = score_transform(
        scan.slices.sparkSession, model_bytes, spec, threshold, keys, input_schema
    )
    keyed = ArrowTransform(chain(AddRowKey(hash_columns, columns), score.fn), score.schema)
    return scan.then(keyed)


def arrow_feature_frame(batch: pa.RecordBatch, spec: FeatureSpec) -> pd.DataFrame:
    """``features.feature_frame`` built straight from an Arrow batch: the same columns, dtypes and
    values (categoricals as object with None for nulls, numerics as float64 with NaN).

    Strings go through Arrow's dictionary encoding, so each distinct value becomes one Python
    string shared by its rows: cheaper to build than a string per row, and the encoder's hash
    lookups hit the cached hash of the shared object (measured: about 0.35 us per row less).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    columns: dict[str, Any] = {}
    for column in spec.categorical:
        values = batch.column(column)
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            encoded = pc.dictionary_encode(values)
            distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
            codes = encoded.indices
            if codes.null_count:  # nulls point at an extra None entry
                distinct = np.append(distinct, np.array([None], dtype=object))
                codes = pc.fill_null(codes, len(distinct) - 1)
            objects = distinct.take(codes.to_numpy())
        else:  # not a Spark string column: exactly what feature_frame does with it
            series = values.to_pandas()
            objects = series.astype(object).where(series.notna(), None).to_numpy()
        columns[column] = pd.Series(objects, dtype=object, copy=False)
    for column in spec.numeric:
        values = batch.column(column)
        if pa.types.is_decimal(values.type):  # Python's Decimal -> float, as pandas would do it
            numbers = values.to_pandas().astype("float64").to_numpy()
        else:
            numbers = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        columns[column] = pd.Series(np.array(numbers, dtype=np.float64), copy=False)  # writable
    return pd.DataFrame(columns, copy=False)
