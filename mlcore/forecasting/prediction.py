"""Per-group prediction with a stored model: a forecast frame for one group's future days.

Plain pandas/numpy (no Spark, table IO or MLflow). The future frame is read under the same rules
as the history (:mod:`mlcore.forecasting.history`: dates, open flags, regressors filled with 0,
holiday codes); a model's JSON is checked against its stored digest before it is loaded, and a
forecast that is implausible against the group's history falls back to the stored baseline.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlcore.config.models import ForecastingConfig
from mlcore.forecasting.families import fallback_spec, family_name, load_model
from mlcore.forecasting.features import feature_columns
from mlcore.forecasting.history import (
    ForecastInputError,
    as_codes,
    as_floats,
    normalize_dates,
    plain_value,
    to_day,
)
from mlcore.forecasting.models import model_digest
from mlcore.forecasting.schemas import (
    FORECAST_COLUMNS,
    STATUS_FAILED,
    STATUS_FALLBACK,
    STATUS_OK,
)

logger = logging.getLogger(__name__)





def _canonical_future(future: pd.DataFrame, config: ForecastingConfig) -> pd.DataFrame:
    """``ds``, ``open``, regressors, holidays column and shared features of a future frame (one
    row per date)."""
    days = normalize_dates(future[config.date_column])
    frame = pd.DataFrame({"ds": days.astype("datetime64[ns]")})
    if config.open_column and config.open_column in future.columns:
        frame["open"] = np.nan_to_num(as_floats(future[config.open_column]), nan=1.0)
    for name in config.prophet.regressors:
        if name in future.columns:
            values = as_floats(future[name])
            frame[name] = np.where(np.isfinite(values), values, 0.0)
        else:
            frame[name] = 0.0
    hcol = config.prophet.holidays_column
    if hcol:
        frame[hcol] = as_codes(future[hcol]) if hcol in future.columns else "0"
    for name in feature_columns(config):  # absent: the family that needs it fails (fallback)
        if name in future.columns:
            frame[name] = as_floats(future[name])
    frame = frame.loc[~np.isnat(days)]
    frame = frame.drop_duplicates("ds", keep="first").sort_values("ds", kind="mergesort")
    return frame.reset_index(drop=True)


def _get(model_row: Any, name: str) -> Any:
    try:
        value = model_row[name]
    except (KeyError, IndexError, TypeError):
        value = getattr(model_row, name, None)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


@dataclass(frozen=True)
class GroupForecast:
    """One group's forecast and its fate: the FORECAST rows (empty when nothing was usable),
    ``status`` (ok | fallback | failed), why, and which model produced the rows."""

    frame: pd.DataFrame
    status: str
    reason: str | None
    model_type: str | None


def _checked_json(model_row: Any, text_column: str, hash_column: str) -> str:
    """The stored JSON after its content hash matched; ValueError says why it cannot be used."""
    text = _get(model_row, text_column)
    if not text:
        raise ValueError("no stored model")
    stored = _get(model_row, hash_column)
    if not stored:
        raise ValueError("no content hash stored with the model (retrain the group)")
    if model_digest(text) != stored:
        raise ValueError("content hash mismatch: the stored model JSON was changed after training")
    return text


def _implausible(pred: pd.DataFrame, history_max: float | None, multiple: float) -> str | None:
    """Why a forecast cannot be published as is (non-finite values, or far above anything the
    group has ever sold), or None."""
    yhat = pred["yhat"].to_numpy(dtype=np.float64)
    bounds = pred[["yhat_lower", "yhat_upper"]].to_numpy(dtype=np.float64)
    if not np.isfinite(yhat).all() or not np.isfinite(bounds).all():
        return "non-finite forecast values"
    if history_max is not None and history_max > 0 and multiple > 0:
        limit = multiple * history_max
        peak = float(np.abs(yhat).max()) if len(yhat) else 0.0
        if peak > limit:
            return (
                f"forecast {peak:.4g} exceeds {multiple:g} x the historical maximum "
                f"{history_max:.4g} (forecasting.max_forecast_multiple)"
            )
    return None


def forecast_group_checked(
    model_row: Any,
    future: pd.DataFrame,
    keys: Mapping[str, Any],
    config: ForecastingConfig,
) -> GroupForecast:
    """Forecast one group's ``future`` rows with its champion, checked, never raising on a model.

    ``model_row``: a :func:`train_group` row (dict, ``pd.Series`` or ``Row``): ``champion``,
    ``model_json``/``model_sha256``, ``baseline_json``/``baseline_sha256`` and ``history_max``
    are used. Each candidate (the champion, then the fallback family's model) is used only if
    its JSON matches the content hash stored at training, it loads and predicts, and its forecast
    is plausible (finite, at most ``config.max_forecast_multiple`` x the group's historical
    maximum). The first usable one gives the rows: ``ok`` for the champion, ``fallback`` (with
    why) for the baseline, ``failed`` when neither is usable. ``future``: one row per date with
    the date column, the open flag (missing -> open), the regressors (missing -> 0) and the
    holidays column; duplicate dates are forecast once. Closed days get 0. Rows are sorted by
    date; ``ds`` holds ``datetime.date`` values. A future frame without the date column is a
    schema error (:class:`ForecastInputError` is raised).
    """
    key_values = {k: plain_value(v) for k, v in keys.items()}
    columns = [*key_values, *FORECAST_COLUMNS]
    empty = pd.DataFrame(columns=columns)
    if config.date_column not in future.columns:
        raise ForecastInputError(f"future frame lacks the date column {config.date_column!r}")
    canon = _canonical_future(future, config)
    if canon.empty:
        return GroupForecast(empty, STATUS_FAILED, "no future calendar rows", None)
    champion = _get(model_row, "champion")
    fallback = family_name(fallback_spec(config))
    candidates = [(champion or "champion", "model_json", "model_sha256")]
    if champion != fallback:
        candidates.append((fallback, "baseline_json", "baseline_sha256"))
    history_max = _get(model_row, "history_max")
    history_max = float(history_max) if history_max is not None else None
    rejected: list[str] = []
    for name, text_column, hash_column in candidates:
        try:
            model = load_model(_checked_json(model_row, text_column, hash_column), config)
            pred = model.predict(canon)
        except Exception as exc:  # noqa: BLE001 - this candidate is unusable: try the next
            rejected.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        problem = _implausible(pred, history_max, config.max_forecast_multiple)
        if problem:
            rejected.append(f"{name}: {problem}")
            continue
        out = pd.DataFrame({k: [v] * len(pred) for k, v in key_values.items()})
        out["ds"] = [d.date() for d in pd.to_datetime(pred["ds"].to_numpy())]
        for c in ("yhat", "yhat_lower", "yhat_upper"):
            out[c] = pred[c].to_numpy(dtype=np.float64)
        out["model_type"] = model.family
        if rejected:
            reason = f"{'; '.join(rejected)}; {model.family} used"
            return GroupForecast(out[columns], STATUS_FALLBACK, reason, model.family)
        return GroupForecast(out[columns], STATUS_OK, None, model.family)
    logger.warning("no usable model for %s: %s", key_values, "; ".join(rejected))
    return GroupForecast(empty, STATUS_FAILED, "; ".join(rejected) or "no stored model", None)


def forecast_group(
    model_row: Any,
    future: pd.DataFrame,
    keys: Mapping[str, Any],
    config: ForecastingConfig,
) -> pd.DataFrame:
    """The rows of :func:`forecast_group_checked` (FORECAST schema; empty without a usable
    model)."""
    return forecast_group_checked(model_row, future, keys, config).frame


def default_future_calendar(
    last_date: Any,
    horizon_days: int,
    config: ForecastingConfig | None = None,
    closed_weekdays: tuple[int, ...] = (6,),
) -> pd.DataFrame:
    """A future calendar for when no future-regressor table exists.

    Days ``last_date + 1 .. last_date + horizon_days`` with documented defaults: open (1) except
    on ``closed_weekdays`` (Monday = 0; default Sunday), regressors 0 (no promo, no school
    holiday), holidays column ``'0'`` (no holiday). Column names come from ``config``
    (``ForecastingConfig()`` defaults when ``None``); dates are ``datetime.date`` values.
    """
    config = config or ForecastingConfig()
    start = pd.Timestamp(to_day(last_date)) + pd.Timedelta(days=1)
    dates = pd.date_range(start, periods=int(horizon_days), freq="D")
    frame = pd.DataFrame({config.date_column: [d.date() for d in dates]})
    if config.open_column:
        frame[config.open_column] = np.where(dates.weekday.isin(closed_weekdays), 0, 1)
    for name in config.prophet.regressors:
        frame[name] = 0
    if config.prophet.holidays_column:
        frame[config.prophet.holidays_column] = "0"
    return frame
