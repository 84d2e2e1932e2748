"""One group's history under the data rules: what every model is fitted on.

Plain pandas/numpy on one group's rows (no Spark, table IO or MLflow), deterministic, shared by
training (:mod:`mlcore.forecasting.training`) and prediction (:mod:`mlcore.forecasting.prediction`),
so that a history and a future frame are read under the same rules.

Data rules (applied by :func:`prepare_history`, the same for every group):

* **Columns**: ``date_column``, ``target_column``, ``open_column`` (when set), every regressor
  and ``holidays_column`` (when set) must exist. A missing column is a schema error, not a data
  problem of one group: status ``failed``.
* **Dates**: anything ``pandas.to_datetime`` understands, plus ``datetime.date`` objects.
  Time-zone-aware values keep their *local* calendar date (the time zone is dropped, not
  converted to UTC: a store's day is its local day); times of day are truncated. Rows whose date
  cannot be parsed are dropped (noted).
* **Run date**: only rows with date strictly before ``run_date`` are used, for the backtest and
  the final fit alike. If no row is left: ``skipped`` ("all dates on/after run date ...").
* **Duplicate dates**: rows identical in every used column are dropped (re-delivered rows are
  harmless, noted). Several *different* rows for one date are ambiguous (no way to know which is
  right, and summing could double-count): the group is ``skipped`` with the dates in the reason.
  Duplicates are never aggregated.
* **Open flag**: a missing ``open`` value counts as open (1), as in Kaggle practice (noted).
  With ``drop_closed_days`` the rows with ``open == 0`` are not fitted on.
* **Target**: non-finite values (NaN, +-inf, unparsable) are dropped from the training rows
  (noted). Fewer than ``min_history_days`` remaining open days: ``skipped`` ("insufficient
  history: N open days < M"). A constant target (all fitted values equal) is not sent to
  Prophet: a positive constant gives the seasonal-naive model (status ``ok``), a constant <= 0
  is ``skipped``.
* **Regressors**: missing or non-finite values are filled with 0 (the "no promo / no school
  holiday" value), in the history and in the future frame alike; the number filled is noted in
  ``status_reason``. A regressor *column* that is absent is a schema error (``failed``) in the
  history; in a future frame it is taken as all 0.
* **Holidays**: ``holidays_column`` codes other than ``'0'`` become Prophet holidays ('a' ->
  'public', 'b' -> 'easter', 'c' -> 'christmas'), from the training rows for fitting and from
  the future rows for prediction (see :class:`~mlcore.forecasting.models.ProphetForecaster`).
* **Shared features** (:mod:`mlcore.forecasting.features`, built in Spark before the grouped
  stage): carried as float columns (NaN where null) when present; a family that needs one that
  is absent fails for the group and the fallback takes over. They are not fingerprinted: they
  are functions of the calendar columns (fingerprinted) and the ``stores`` attributes.
* **Fingerprint**: sha256 over the group's rows with date < run_date, each row written as the
  canonical text of the used columns (ISO date, float values, codes) *before* any cleaning, the
  rows sorted. Row order, dtype (int vs float) and unused columns do not change it; any used value
  does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from mlcore.config.models import ForecastingConfig
from mlcore.forecasting.features import feature_columns


class ForecastInputError(ValueError):
    """The group's frame does not have the configured columns (a schema error: ``failed``)."""


class GroupSkipped(Exception):
    """Insufficient or invalid data for one group (``skipped``)."""

    def __init__(self, reason: str, prepared: PreparedHistory | None = None):
        super().__init__(reason)
        self.reason = reason
        self.prepared = prepared


@dataclass
class PreparedHistory:
    """One group's history after the data rules, in canonical columns.

    ``frame``: every usable row before the run date (closed days included), sorted by ``ds``,
    columns ``ds`` (datetime64), ``y`` (float), ``open`` (float, when configured), the
    regressors (float), the holidays column (str) and the shared features present (float). ``train``: the rows the models are fitted
    on (open days with a finite target). ``notes``: what the data rules changed.
    """

    frame: pd.DataFrame
    train: pd.DataFrame
    fingerprint: str | None
    notes: list[str] = field(default_factory=list)
    rows_after_run_date: int = 0




def plain_value(value: Any) -> Any:
    """numpy scalar -> Python scalar (Arrow- and JSON-friendly)."""
    return value.item() if isinstance(value, np.generic) else value


def to_day(value: Any) -> np.datetime64:
    """A run date (``date``, ``datetime``, ``Timestamp``, ISO string) as ``datetime64[D]``."""
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    return np.datetime64(ts.date(), "D")


def as_date(day: np.datetime64 | None) -> dt.date | None:
    if day is None or np.isnat(day):
        return None
    return pd.Timestamp(day).date()


def _naive_timestamp(value: Any) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return pd.NaT
    if ts is pd.NaT:
        return pd.NaT
    return ts.tz_localize(None) if ts.tzinfo is not None else ts


def normalize_dates(values: pd.Series) -> np.ndarray:
    """Calendar days (``datetime64[D]``, ``NaT`` when unparsable) of a date-like column.

    Time-zone-aware values keep their local date (the zone is dropped, not converted).
    """
    s: pd.Series | None = values
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        s = values.dt.tz_localize(None)
    elif not pd.api.types.is_datetime64_dtype(values.dtype):
        with warnings.catch_warnings():  # mixed offsets: a FutureWarning now, an error later
            warnings.simplefilter("ignore")
            try:
                s = pd.to_datetime(values, errors="coerce")
            except (TypeError, ValueError, OverflowError):
                s = None
        if s is not None and isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_localize(None)
        if (
            s is None
            or not pd.api.types.is_datetime64_dtype(s.dtype)
            or int(s.isna().sum()) > int(values.isna().sum())
        ):
            # mixed time zones (pandas coerces or rejects some of them) or mixed types:
            # convert value by value, keeping each value's local date
            s = pd.Series([_naive_timestamp(v) for v in values], dtype="datetime64[ns]")
    return np.asarray(cast(pd.Series, s).to_numpy(dtype="datetime64[ns]")).astype("datetime64[D]")


def as_floats(values: pd.Series) -> np.ndarray:
    if values.dtype.kind == "f":  # already floats (the shared features): no parsing
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def as_codes(values: pd.Series) -> np.ndarray:
    """Holiday codes as strings; null -> '0' (no holiday); 0/0.0 -> '0'."""
    out = values.astype(object).to_numpy()
    result = np.empty(out.shape[0], dtype=object)
    for i, v in enumerate(out):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            result[i] = "0"
        elif isinstance(v, (int, float, np.integer, np.floating)) and float(v) == 0.0:
            result[i] = "0"
        else:
            result[i] = str(v).strip()
    return result


def group_seed(seed: int, keys: Mapping[str, Any]) -> int:
    """Per-group seed from the configured seed and the key values (independent of run order)."""
    text = "|".join([str(int(seed))] + [f"{k}={plain_value(keys[k])!s}" for k in sorted(keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def _used_columns(config: ForecastingConfig) -> list[str]:
    cols = [config.date_column, config.target_column]
    if config.open_column:
        cols.append(config.open_column)
    cols.extend(config.prophet.regressors)
    if config.prophet.holidays_column:
        cols.append(config.prophet.holidays_column)
    return list(dict.fromkeys(cols))


def _fingerprint(columns: list[str], parts: list[np.ndarray]) -> str:
    """sha256 of the sorted canonical row texts (order-independent, dtype-independent)."""
    texts = []
    for arr in parts:
        if arr.dtype.kind == "M":
            texts.append(np.datetime_as_string(arr, unit="D"))
        elif arr.dtype.kind == "f":
            texts.append(arr.astype(str))
        else:
            texts.append(np.asarray(["\\N" if v is None else str(v) for v in arr], dtype=object))
    rows = sorted("\x1f".join(t) for t in zip(*texts, strict=True))
    digest = hashlib.sha256()
    digest.update(("\x1f".join(columns) + "\n").encode())
    digest.update("\n".join(rows).encode())
    return digest.hexdigest()


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"




def prepare_history(
    history: pd.DataFrame, config: ForecastingConfig, run_date: Any
) -> PreparedHistory:
    """Apply the module's data rules to one group's rows.

    Raises :class:`ForecastInputError` for missing columns and :class:`GroupSkipped` (carrying
    the partial result, fingerprint included) when the group cannot be trained.
    """
    used = _used_columns(config)
    missing = [c for c in used if c not in history.columns]
    if missing:
        raise ForecastInputError(f"missing column(s): {', '.join(missing)}")
    cut = to_day(run_date)
    regressors = list(config.prophet.regressors)
    hcol = config.prophet.holidays_column

    days = normalize_dates(history[config.date_column])
    valid_date = ~np.isnat(days)
    before = valid_date & (days < cut)
    after = int((valid_date & (days >= cut)).sum())
    bad_dates = int((~valid_date).sum())

    # canonical raw values of the usable rows (before cleaning): these are fingerprinted
    sub = history.loc[before]
    raw: dict[str, np.ndarray] = {"ds": days[before]}
    raw["y"] = as_floats(sub[config.target_column])
    if config.open_column:
        raw["open"] = as_floats(sub[config.open_column])
    for name in regressors:
        raw[name] = as_floats(sub[name])
    if hcol:
        raw[hcol] = as_codes(sub[hcol])
    fp_names = ["ds", "y", *(["open"] if config.open_column else []), *regressors]
    fp_names += [hcol] if hcol else []
    fingerprint = _fingerprint(used, [raw[n] for n in fp_names]) if len(sub) else None

    notes: list[str] = []
    if bad_dates:
        notes.append(f"dropped {counted(bad_dates, 'row')} with an unparsable date")
    empty = PreparedHistory(pd.DataFrame(), pd.DataFrame(), fingerprint, notes, after)
    if not len(sub) and after:
        raise GroupSkipped(f"all dates on/after run date {cut} ({counted(after, 'row')})", empty)
    if after:
        notes.append(f"ignored {counted(after, 'row')} on/after run date {cut}")
    if not len(sub):
        raise GroupSkipped(f"insufficient history: 0 open days < {config.min_history_days}", empty)

    frame = pd.DataFrame({n: raw[n] for n in fp_names})
    for name in feature_columns(config):  # the shared features: carried, not fingerprinted
        if name in sub.columns:
            frame[name] = as_floats(sub[name])
    frame["ds"] = frame["ds"].astype("datetime64[ns]")

    # duplicate dates: identical rows are dropped, conflicting rows skip the group
    if frame["ds"].duplicated().any():
        exact = frame.duplicated(keep="first")
        n_exact = int(exact.sum())
        if n_exact:
            frame = frame.loc[~exact]
            notes.append(f"dropped {counted(n_exact, 'exact duplicate row')}")
        conflict = frame["ds"].duplicated(keep=False)
        if conflict.any():
            dates = sorted({str(d)[:10] for d in frame.loc[conflict, "ds"]})
            shown = ", ".join(dates[:3]) + (", ..." if len(dates) > 3 else "")
            raise GroupSkipped(
                f"conflicting duplicate dates: {len(dates)} dates with differing rows ({shown})",
                empty,
            )
    frame = frame.sort_values("ds", kind="mergesort").reset_index(drop=True)

    if config.open_column:
        n_missing = int(frame["open"].isna().sum())
        if n_missing:
            frame["open"] = frame["open"].fillna(1.0)
            notes.append(
                f"treated {counted(n_missing, 'missing ' + config.open_column + ' value')} as open"
            )
    for name in regressors:
        values = frame[name].to_numpy()
        bad = ~np.isfinite(values)
        if bad.any():
            frame[name] = np.where(bad, 0.0, values)
            notes.append(
                f"filled {counted(int(bad.sum()), 'missing/non-finite ' + name + ' value')} with 0"
            )

    y = frame["y"].to_numpy()
    is_open = (frame["open"].to_numpy() != 0) if config.open_column else np.ones(len(frame), bool)
    finite = np.isfinite(y)
    n_bad_y = int((is_open & ~finite).sum())
    if n_bad_y:
        notes.append(
            f"dropped {counted(n_bad_y, 'open day')} with a missing/non-finite {config.target_column}"
        )
    keep = finite & (is_open if config.drop_closed_days else True)
    train = frame.loc[keep].reset_index(drop=True)
    prepared = PreparedHistory(frame, train, fingerprint, notes, after)
    n_open = int((finite & is_open).sum())
    if n_open < config.min_history_days or len(train) < 2:
        raise GroupSkipped(
            f"insufficient history: {counted(n_open, 'open day')} < {config.min_history_days}", prepared
        )
    return prepared
