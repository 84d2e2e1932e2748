"""Batch anomaly scoring of ride features with a skops detector, loaded once per Python worker."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from mlcore.anomaly.detector import anomaly_scores
from mlcore.io import model_files
from mlcore.spark_classic import share

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame


def score_rides(features: DataFrame, model_bytes: bytes, names: Sequence[str], threshold: float) -> DataFrame:
    """``features`` (row_key, pickup_ts_us, feature columns, pass-through columns) ->
    the same rows with ``anomaly_score`` and ``is_anomaly`` (score > threshold)."""
    digest = model_files.digest(model_bytes)
    shared = share(features.sparkSession, model_bytes)  # a broadcast; in the closure over Connect
    columns = list(names)
    schema = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in features.schema)
    schema += ", anomaly_score double, is_anomaly boolean"

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = model_files.worker_model(shared.value, digest)
        for batch in batches:
            if batch.empty:
                continue
            values = anomaly_scores(model, batch[columns])
            yield batch.assign(anomaly_score=values, is_anomaly=values > threshold)

    return features.mapInPandas(score, schema)
