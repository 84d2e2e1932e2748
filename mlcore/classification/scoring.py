"""Batch scoring of a Spark DataFrame with a skops model, loaded once per Python worker.

The model bytes travel as a broadcast; each worker deserialises them once (cached by digest) and
scores Arrow batches with ``predict_proba``. Rows keep a ``row_key``: the configured key columns
hashed, or, for tables without a key (UCI bank), a hash of every input column, so identical input
rows share a key (and, necessarily, a score).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mlcore.classification.features import FeatureSpec, feature_frame
from mlcore.ingest.schemas import RUN_COLUMNS
from mlcore.serving import model_files

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame



def row_key_column(df: DataFrame, key_columns: Sequence[str], label: str | None) -> Any:
    """``xxhash64`` over the key columns, or over every input column except run metadata and the label."""
    from pyspark.sql import functions as F

    if key_columns:
        columns = list(key_columns)
    else:
        columns = sorted(c for c in df.columns if c not in RUN_COLUMNS and c != label)
    return F.xxhash64(*[F.col(f"`{c}`") for c in columns])


def score_frame(
    df: DataFrame,
    model_bytes: bytes,
    spec: FeatureSpec,
    threshold: float,
    key_columns: Sequence[str] = (),
) -> DataFrame:
    """Rows ``row_key, <key columns>, probability, label`` (label = probability >= threshold)."""
    import numpy as np
    from pyspark.sql import functions as F

    digest = model_files.digest(model_bytes)
    shared = df.sparkSession.sparkContext.broadcast(model_bytes)
    keys = list(key_columns)
    passthrough = ["row_key", *keys]
    prepared = df.select(
        row_key_column(df, keys, spec.label).alias("row_key"),
        *[F.col(f"`{c}`") for c in keys if c not in spec.columns],
        *[F.col(f"`{c}`") for c in spec.columns],
    )
    key_schema = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in prepared.schema if f.name in passthrough)
    schema = f"{key_schema}, probability double, label int"

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = model_files.worker_model(shared.value, digest)
        for batch in batches:
            if batch.empty:
                continue
            proba = model.predict_proba(feature_frame(batch, spec))[:, 1]
            out = batch[passthrough].copy()
            out["probability"] = proba.astype(np.float64)
            out["label"] = (proba >= threshold).astype(np.int32)
            yield out

    return prepared.mapInPandas(score, schema)
