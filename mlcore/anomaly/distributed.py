"""DBSCAN over every batch with ``groupBy(batch keys).applyInPandas``: one result row per batch
(status, counts, silhouette, eps) holding its rides' labels as an array."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlcore.anomaly.clustering import DbscanSettings, anomaly_flags, cluster_batch
from mlcore.anomaly.features import ROW_KEY

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

BATCH_STATS = (
    "status string, status_reason string, rows int, clusters int, noise int, micro_cluster_rides int, "
    "anomalies int, anomaly_share double, "
    "silhouette double, eps double, eps_source string, seconds double"
)


def cluster_batches(
    features: DataFrame, batch_keys: Sequence[str], settings: DbscanSettings, partitions: int
) -> DataFrame:
    """``features`` has ``row_key``, ``pickup_ts_us`` (long), the batch keys and the feature columns."""
    keys = list(batch_keys)
    key_schema = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in features.schema if f.name in keys)
    ride_fields = ", ".join(
        [f"{ROW_KEY}: bigint", "pickup_ts_us: bigint", "cluster: int", "is_anomaly: boolean"]
        + [f"{name}: double" for name in settings.features]
    )
    schema = f"{key_schema}, {BATCH_STATS}, rides array<struct<{ride_fields}>>"
    names = list(settings.features)

    def run(frame: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        frame = frame.sort_values([ROW_KEY]).reset_index(drop=True)  # input order is not a contract
        labels, stats = cluster_batch(frame, settings)
        row = {k: frame[k].iloc[0] for k in keys}
        row.update(stats)
        if labels is None:
            row["rides"] = []
        else:
            part = frame[[ROW_KEY, "pickup_ts_us", *names]].copy()
            part["cluster"] = labels.astype("int32")
            part["is_anomaly"] = anomaly_flags(labels, settings.min_cluster_share)
            row["rides"] = part[[ROW_KEY, "pickup_ts_us", "cluster", "is_anomaly", *names]].to_dict("records")
        return pd.DataFrame([row])

    # The batches are small in bytes and heavy in compute: spread them over a few tasks per core
    # (adaptive coalescing would otherwise pack them into one).
    spread = features.repartition(partitions, *keys)
    return spread.groupBy(*keys).applyInPandas(run, schema)
