"""Result schemas of the per-group forecasting functions (for ``applyInPandas``).

The group key columns come first in every schema and are configurable, so each schema is built
from the key fields: ``model_schema(key_fields)`` and ``forecast_schema(key_fields)``. The
column order of a result is ``[*keys, *MODEL_COLUMNS]`` / ``[*keys, *FORECAST_COLUMNS]``; the
dicts returned by :func:`mlcore.forecasting.training.train_group` and the frames returned by
:func:`~mlcore.forecasting.prediction.forecast_group` follow exactly that order, with Python
values that Arrow converts to these types (``datetime.date`` for dates, lists of dicts for the
nested arrays, ``None`` for nulls, ``NaN`` for an undefined metric).

Model table (one row per group and training run):

====================  =======================================  ============================================
column                type                                     meaning
====================  =======================================  ============================================
status                string, not null                         ok | fallback | skipped | failed
status_reason         string                                   why, plus data-hygiene notes
error_class           string                                   exception class (fallback/failed)
error_message         string                                   exception text, <= 500 characters
champion              string                                   prophet | seasonal_naive | null
model_json            string                                   champion's final model (``to_json``)
baseline_json         string                                   seasonal-naive final model
model_sha256          string                                   sha256 of model_json, checked at load
baseline_sha256       string                                   sha256 of baseline_json, checked at load
history_max           double                                   largest target value the model saw
train_start           date                                     first final training date (null: no model)
train_end             date                                     last final training date, < run date
train_rows            int, not null                            rows the final model was fitted on (0: none)
data_fingerprint      string                                   sha256 of the usable input rows
warm_started          boolean, not null                        final Prophet fit was warm-started
fit_seconds           double, not null                         final fits + serialisation
backtest_seconds      double, not null                         backtest fits, predictions, metrics
metrics               array<struct<window, model, metric,      per backtest window and model
                      value, n_obs>>
backtest_points       array<struct<window, model, ds, y,       the holdout days of every window
                      yhat, yhat_lower, yhat_upper>>
====================  =======================================  ============================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

STATUS_OK: Final[str] = "ok"
STATUS_FALLBACK: Final[str] = "fallback"
STATUS_SKIPPED: Final[str] = "skipped"
STATUS_FAILED: Final[str] = "failed"
STATUSES: Final[tuple[str, ...]] = (STATUS_OK, STATUS_FALLBACK, STATUS_SKIPPED, STATUS_FAILED)

METRIC_FIELDS: Final[StructType] = StructType(
    [
        StructField("backtest_window", IntegerType(), False),
        StructField("model", StringType(), False),
        StructField("metric", StringType(), False),
        StructField("value", DoubleType(), True),
        StructField("n_obs", IntegerType(), False),
    ]
)
BACKTEST_POINT_FIELDS: Final[StructType] = StructType(
    [
        StructField("backtest_window", IntegerType(), False),
        StructField("model", StringType(), False),
        StructField("ds", DateType(), False),
        StructField("y", DoubleType(), True),
        StructField("yhat", DoubleType(), True),
        StructField("yhat_lower", DoubleType(), True),
        StructField("yhat_upper", DoubleType(), True),
    ]
)

MODEL_FIELDS: Final[tuple[StructField, ...]] = (
    StructField("status", StringType(), False),
    StructField("status_reason", StringType(), True),
    StructField("error_class", StringType(), True),
    StructField("error_message", StringType(), True),
    StructField("champion", StringType(), True),
    StructField("model_json", StringType(), True),
    StructField("baseline_json", StringType(), True),
    StructField("model_sha256", StringType(), True),
    StructField("baseline_sha256", StringType(), True),
    StructField("history_max", DoubleType(), True),
    StructField("train_start", DateType(), True),
    StructField("train_end", DateType(), True),
    StructField("train_rows", IntegerType(), False),
    StructField("data_fingerprint", StringType(), True),
    StructField("warm_started", BooleanType(), False),
    StructField("fit_seconds", DoubleType(), False),
    StructField("backtest_seconds", DoubleType(), False),
    StructField("metrics", ArrayType(METRIC_FIELDS, containsNull=False), False),
    StructField("backtest_points", ArrayType(BACKTEST_POINT_FIELDS, containsNull=False), False),
)
MODEL_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in MODEL_FIELDS)
METRIC_COLUMNS: Final[tuple[str, ...]] = tuple(METRIC_FIELDS.names)
BACKTEST_POINT_COLUMNS: Final[tuple[str, ...]] = tuple(BACKTEST_POINT_FIELDS.names)

FORECAST_FIELDS: Final[tuple[StructField, ...]] = (
    StructField("ds", DateType(), False),
    StructField("yhat", DoubleType(), False),
    StructField("yhat_lower", DoubleType(), False),
    StructField("yhat_upper", DoubleType(), False),
    StructField("model_type", StringType(), False),
)
FORECAST_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in FORECAST_FIELDS)

# What happened to one group in make_forecasts (``forecast_status``; one row per group).
FORECAST_STATUS_FIELDS: Final[tuple[StructField, ...]] = (
    StructField("status", StringType(), False),  # ok | fallback | skipped | failed
    StructField("status_reason", StringType(), True),
    StructField("model_type", StringType(), True),  # the model whose rows were published
    StructField("forecast_rows", IntegerType(), False),
)
FORECAST_STATUS_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in FORECAST_STATUS_FIELDS)

# Rossmann: one integer store key.
DEFAULT_KEY_FIELDS: Final[tuple[StructField, ...]] = (StructField("store", IntegerType(), False),)


def key_fields(names: Sequence[str], types: dict[str, DataType] | None = None) -> list[StructField]:
    """Non-nullable key fields in ``names`` order; types default to ``IntegerType``.

    Pass the key types of the input table, e.g. ``{f.name: f.dataType for f in df.schema}``.
    """
    types = types or {}
    return [StructField(n, types.get(n, IntegerType()), False) for n in names]


def _check_keys(keys: Sequence[StructField], reserved: Sequence[str]) -> list[StructField]:
    keys = list(keys)
    clash = sorted({k.name for k in keys} & set(reserved))
    if clash:
        raise ValueError(f"group key name(s) clash with result columns: {', '.join(clash)}")
    return keys


def model_schema(keys: Sequence[StructField] = DEFAULT_KEY_FIELDS) -> StructType:
    """Schema of :func:`~mlcore.forecasting.training.train_group` rows: keys, then MODEL_COLUMNS."""
    return StructType([*_check_keys(keys, MODEL_COLUMNS), *MODEL_FIELDS])


def forecast_schema(keys: Sequence[StructField] = DEFAULT_KEY_FIELDS) -> StructType:
    """Schema of :func:`~mlcore.forecasting.prediction.forecast_group` frames: keys, FORECAST_COLUMNS."""
    return StructType([*_check_keys(keys, FORECAST_COLUMNS), *FORECAST_FIELDS])


def forecast_status_schema(keys: Sequence[StructField] = DEFAULT_KEY_FIELDS) -> StructType:
    """One group's make_forecasts outcome: keys, FORECAST_STATUS_COLUMNS."""
    return StructType([*_check_keys(keys, FORECAST_STATUS_COLUMNS), *FORECAST_STATUS_FIELDS])


def model_columns(key_names: Sequence[str]) -> list[str]:
    return [*key_names, *MODEL_COLUMNS]


def forecast_columns(key_names: Sequence[str]) -> list[str]:
    return [*key_names, *FORECAST_COLUMNS]
