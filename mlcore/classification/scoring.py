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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcore.classification.features import FeatureSpec
from mlcore.ingest.schemas import RUN_COLUMNS
from mlcore.io.transform import ArrowTransform
from mlcore.serving import model_files

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import DataFrame


def row_key_column(df: DataFrame, key_columns: Sequence[str], label: str | None) -> Any:
    """``xxhash64`` over the key columns, or over every input column except run metadata and the label."""
    from pyspark.sql import functions as F

    if key_columns:
        columns = list(key_columns)
    else:
        columns = sorted(c for c in df.columns if c not in RUN_COLUMNS and c != label)
    return F.xxhash64(*[F.col(f"`{c}`") for c in columns])


@dataclass(frozen=True)
class Scoring:
    """The rows to score (``row_key``, key columns, features) and the transform scoring them."""

    input: DataFrame
    transform: ArrowTransform

    def frame(self) -> DataFrame:
        """Rows ``row_key, <key columns>, probability, label`` as a DataFrame."""
        return self.transform.apply(self.input)


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
    from pyspark.sql.types import DoubleType, IntegerType, StructField, StructType

    digest = model_files.digest(model_bytes)
    shared = df.sparkSession.sparkContext.broadcast(model_bytes)
    keys = list(key_columns)
    passthrough = {"row_key", *keys}
    prepared = df.select(
        row_key_column(df, keys, spec.label).alias("row_key"),
        *[F.col(f"`{c}`") for c in keys if c not in spec.columns],
        *[F.col(f"`{c}`") for c in spec.columns],
    )
    kept = [f for f in prepared.schema.fields if f.name in passthrough]
    schema = StructType(
        [*kept, StructField("probability", DoubleType()), StructField("label", IntegerType())]
    )
    names = [f.name for f in kept]

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import numpy as np
        import pyarrow as pa

        model = model_files.worker_model(shared.value, digest)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            proba = model.predict_proba(arrow_feature_frame(batch, spec))[:, 1].astype(np.float64)
            label = (proba >= threshold).astype(np.int32)
            yield pa.RecordBatch.from_arrays(
                [*[batch.column(n) for n in names], pa.array(proba), pa.array(label)],
                names=[*names, "probability", "label"],
            )

    return Scoring(prepared, ArrowTransform(score, schema))


def score_frame(
    df: DataFrame,
    model_bytes: bytes,
    spec: FeatureSpec,
    threshold: float,
    key_columns: Sequence[str] = (),
) -> DataFrame:
    """Rows ``row_key, <key columns>, probability, label`` (label = probability >= threshold)."""
    return scoring(df, model_bytes, spec, threshold, key_columns).frame()


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
                distinct = np.append(distinct, None)
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
