"""The search's candidate x fold tasks spread over Spark executors.

Each task is one row in its own partition (``spark.range(..., numPartitions=tasks)``), so Spark
schedules fits one by one as cores free up and no shuffle or adaptive coalescing can merge them.
The training rows, folds, candidates and settings travel once per executor as a broadcast; the
executor function only calls ``evaluate_task`` and returns rows (scores, seconds, validation
probabilities), so results equal ``search_local``'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcore.classification.search import (
    SCORES,
    FoldResult,
    SearchResult,
    SearchSettings,
    evaluate_task,
)
from mlcore.spark_classic import share

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

RESULT_SCHEMA = (
    "candidate int, fold int, "
    + ", ".join(f"{name} double" for name in SCORES)
    + ", fit_seconds double, val_proba array<double>, error string"
)


def search_on_spark(
    spark: SparkSession,
    X: pd.DataFrame,
    y: np.ndarray,
    settings: SearchSettings,
    candidates: list[dict[str, Any]],
    splits: list[tuple[np.ndarray, np.ndarray]],
) -> SearchResult:
    import pandas as pd

    n_folds = len(splits)
    n_tasks = len(candidates) * n_folds
    shared = share(spark, (X, y, splits, candidates, settings))

    def run_tasks(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        data, labels, folds, params, task_settings = shared.value
        for batch in batches:
            rows = []
            for task in batch["id"].tolist():
                candidate, fold = divmod(int(task), n_folds)
                result = evaluate_task(data, labels, folds[fold], params[candidate], task_settings, candidate, fold)
                rows.append(
                    {
                        "candidate": candidate,
                        "fold": fold,
                        **result.scores,
                        "fit_seconds": result.fit_seconds,
                        "val_proba": result.val_proba.tolist(),
                        "error": result.error,
                    }
                )
            yield pd.DataFrame(rows, columns=[f.split(" ")[0] for f in RESULT_SCHEMA.split(", ")])

    try:
        tasks = spark.range(0, n_tasks, 1, numPartitions=n_tasks)
        collected = tasks.mapInPandas(run_tasks, RESULT_SCHEMA).collect()
    finally:
        shared.unpersist()
    folds = [
        FoldResult(
            candidate=row["candidate"],
            fold=row["fold"],
            scores={name: float("nan") if row[name] is None else float(row[name]) for name in SCORES},
            fit_seconds=float(row["fit_seconds"]),
            val_proba=np.array(row["val_proba"], dtype=float),
            error=row["error"],
        )
        for row in sorted(collected, key=lambda r: (r["candidate"], r["fold"]))
    ]
    return SearchResult(candidates, splits, folds, settings.scoring)
