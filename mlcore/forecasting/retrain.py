"""The retrain policy of incremental forecasting (``forecasting.only_needed``): which groups keep
their model tonight, and their previous rows carried over as this run's results."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from mlcore.config.models import ForecastingConfig
from mlcore.forecasting.distributed import fingerprint_groups

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def kept_rows(kept: DataFrame, results: DataFrame, keys: list[str]) -> DataFrame:
    """Previous model rows for unchanged groups, shaped like fresh results (action 'kept')."""
    from pyspark.sql import functions as F

    default_reason = F.concat(
        F.lit("input unchanged: kept model trained on "), F.col("trained_run_date").cast("string")
    )
    derived = {
        "status_reason": F.col("keep_reason") if "keep_reason" in kept.columns else default_reason,
        "metrics": F.array().cast(results.schema["metrics"].dataType),
        "backtest_points": F.array().cast(results.schema["backtest_points"].dataType),
        "action": F.lit("kept"),
    }
    # Rows of a table written before model content hashes: sealed as they are carried over.
    for text, digest in (("model_json", "model_sha256"), ("baseline_json", "baseline_sha256")):
        if digest not in kept.columns:
            derived[digest] = F.sha2(F.col(text), 256)
    if "history_max" not in kept.columns:
        derived["history_max"] = F.lit(None).cast("double")
    return kept.select(
        *[derived[c].alias(c) if c in derived else F.col(c) for c in results.columns]
    )


def groups_to_keep(
    history: DataFrame,
    previous: DataFrame,
    config: ForecastingConfig,
    run_date: dt.date,
    drifted: DataFrame | None,
) -> DataFrame:
    """Groups whose current model needs no retraining, with the reason (``only_needed`` mode).

    A group keeps its model when the data that model was trained on is unchanged (the fingerprint
    of its history before the model's training date, recomputed now, equals the stored one: no
    restated or late-arriving rows), ``monitor_drift`` did not flag it for this run date
    (``drifted``: the flagged groups' key strings in ``_group_key``, None before any drift run), and the
    model is at most ``forecasting.max_model_age_days`` old. New days of data alone do not force
    a retrain; new groups and groups without a usable model always train.
    """
    from pyspark.sql import functions as F

    fc = config
    keys = list(fc.group_keys)
    prev = previous.select(
        *keys, "trained_run_date", F.col("data_fingerprint").alias("_previous_fp")
    )
    fingerprints = None
    for (trained_on,) in prev.select("trained_run_date").distinct().collect():
        members = prev.filter(F.col("trained_run_date") == F.lit(trained_on)).select(*keys)
        part = fingerprint_groups(history.join(members, keys, "left_semi"), fc, trained_on)
        part = part.withColumn("trained_run_date", F.lit(trained_on))
        fingerprints = part if fingerprints is None else fingerprints.unionByName(part)
    if fingerprints is None:
        return prev.select(*keys, F.lit("").alias("keep_reason")).limit(0)
    age = F.datediff(F.lit(run_date), F.col("trained_run_date"))
    candidates = prev.join(fingerprints, [*keys, "trained_run_date"]).filter(
        (F.col("data_fingerprint") == F.col("_previous_fp")) & (age <= F.lit(fc.max_model_age_days))
    )
    if drifted is not None:
        key_text = F.concat_ws("|", *[F.col(k).cast("string") for k in keys])
        candidates = candidates.join(drifted, key_text == F.col("_group_key"), "left_anti")
    return candidates.select(
        *keys,
        F.concat(
            F.lit("no retrain needed: history before "), F.col("trained_run_date").cast("string"),
            F.lit(" unchanged, not drifted, model age "), age.cast("string"),
            F.lit(f" d <= {fc.max_model_age_days}"),
        ).alias("keep_reason"),
    )  # fmt: skip
