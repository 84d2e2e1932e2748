"""Per-group (per-store) forecasting: pure pandas logic run inside ``applyInPandas``.

* :mod:`~mlcore.forecasting.metrics`: MAE, RMSE, MAPE, sMAPE, WAPE, RMSPE, interval coverage.
* :mod:`~mlcore.forecasting.families`: the ``Forecaster`` protocol, the shipped families and a
  user's family by import path; :mod:`~mlcore.forecasting.gbm` (:class:`LightGBMForecaster`, the
  default), :mod:`~mlcore.forecasting.models` (:class:`ProphetForecaster`, the
  :class:`SeasonalNaiveForecaster` baseline), :mod:`~mlcore.forecasting.ensemble`.
* :mod:`~mlcore.forecasting.features`: the shared feature table (Spark, and its pandas twin for
  serving without Spark).
* :mod:`~mlcore.forecasting.history`: the data rules (:func:`prepare_history`: dates, duplicates,
  open flags, regressors, the history fingerprint).
* :mod:`~mlcore.forecasting.training`: :func:`train_group` (backtest, selection, final fit; one
  row per group, never raises).
* :mod:`~mlcore.forecasting.prediction`: :func:`forecast_group` (a stored model's forecast,
  checked) and :func:`default_future_calendar`.
* :mod:`~mlcore.forecasting.schemas`: the Spark schemas and column order of those results.

No Spark session, table IO or MLflow here (the feature table's Spark function takes and returns
DataFrames); Prophet and LightGBM are imported only when a model is fitted or loaded. Importing this package imports ``pyspark.sql.types`` (for the schemas) and nothing heavier.
"""

from mlcore.forecasting.ensemble import EnsembleForecaster
from mlcore.forecasting.families import Forecaster, check_families, load_model, resolve_family
from mlcore.forecasting.gbm import LightGBMForecaster
from mlcore.forecasting.history import (
    ForecastInputError,
    GroupSkipped,
    PreparedHistory,
    group_seed,
    normalize_dates,
    prepare_history,
)
from mlcore.forecasting.metrics import (
    METRIC_NAMES,
    compute_metrics,
    coverage,
    evaluation_mask,
    mae,
    mape,
    rmse,
    rmspe,
    smape,
    wape,
)
from mlcore.forecasting.models import ProphetForecaster, SeasonalNaiveForecaster
from mlcore.forecasting.prediction import default_future_calendar, forecast_group
from mlcore.forecasting.schemas import (
    FORECAST_COLUMNS,
    MODEL_COLUMNS,
    STATUS_FAILED,
    STATUS_FALLBACK,
    STATUS_OK,
    STATUS_SKIPPED,
    forecast_schema,
    key_fields,
    model_schema,
)
from mlcore.forecasting.training import train_group

__all__ = [
    "FORECAST_COLUMNS",
    "METRIC_NAMES",
    "MODEL_COLUMNS",
    "STATUS_FAILED",
    "STATUS_FALLBACK",
    "STATUS_OK",
    "STATUS_SKIPPED",
    "EnsembleForecaster",
    "ForecastInputError",
    "Forecaster",
    "GroupSkipped",
    "LightGBMForecaster",
    "PreparedHistory",
    "ProphetForecaster",
    "SeasonalNaiveForecaster",
    "check_families",
    "compute_metrics",
    "coverage",
    "default_future_calendar",
    "evaluation_mask",
    "forecast_group",
    "forecast_schema",
    "group_seed",
    "key_fields",
    "load_model",
    "mae",
    "mape",
    "model_schema",
    "normalize_dates",
    "prepare_history",
    "resolve_family",
    "rmse",
    "rmspe",
    "smape",
    "train_group",
    "wape",
]
