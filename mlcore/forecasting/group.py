"""Per-group training and forecasting, written for ``groupBy(keys).applyInPandas``.

Everything here is plain pandas/numpy on one group's rows: no Spark session, no table IO, no
MLflow. The functions are module-level (picklable), deterministic (same rows, keys and config
give the same models, metrics and JSON, whatever other groups run in the same process), import
Prophet lazily, and :func:`train_group` never raises: a bad group becomes a row with a
``status`` and a ``status_reason``.

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
* **Fingerprint**: sha256 over the group's rows with date < run_date, each row written as the
  canonical text of the used columns (ISO date, float values, codes) *before* any cleaning, the
  rows sorted. Row order, dtype (int vs float) and unused columns do not change it; any used value
  does.

Backtest: window ``w`` (``0 .. backtest_windows - 1``) holds out the ``horizon_days`` calendar
days ending ``w * backtest_step_days`` days before the last history date; both models are fitted
on the training rows before the holdout (a window whose training part has fewer than
``min_history_days`` open days is left out, noted) and predict the holdout rows with their actual
open flags, regressors and holidays (all known in advance in Rossmann). Metrics use the rule of
:func:`mlcore.forecasting.metrics.compute_metrics` (finite ``y > 0`` only).

Selection: the seasonal-naive baseline becomes champion when its mean WAPE over the windows
(windows where both are defined) is lower than Prophet's by more than ``selection_margin``;
otherwise Prophet. A Prophet exception (backtest or final fit) gives status ``fallback`` with the
baseline as champion; when no model can be built at all the status is ``failed``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

import numpy as np
import pandas as pd

from mlcore.config.models import ForecastingConfig
from mlcore.forecasting.metrics import METRIC_NAMES, compute_metrics, evaluation_mask
from mlcore.forecasting.models import (
    ProphetForecaster,
    SeasonalNaiveForecaster,
    load_model,
)
from mlcore.forecasting.schemas import (
    FORECAST_COLUMNS,
    MODEL_COLUMNS,
    STATUS_FAILED,
    STATUS_FALLBACK,
    STATUS_OK,
    STATUS_SKIPPED,
)

logger = logging.getLogger(__name__)

PROPHET: Final[str] = ProphetForecaster.model_type
SEASONAL_NAIVE: Final[str] = SeasonalNaiveForecaster.model_type
NAIVE_SEASONS: Final[int] = 4  # seasons averaged by the seasonal-naive baseline
MAX_MESSAGE_CHARS: Final[int] = 500
MAX_REASON_CHARS: Final[int] = 1000
_DAY: Final = np.timedelta64(1, "D")


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
    regressors (float) and the holidays column (str). ``train``: the rows the models are fitted
    on (open days with a finite target). ``notes``: what the data rules changed.
    """

    frame: pd.DataFrame
    train: pd.DataFrame
    fingerprint: str | None
    notes: list[str] = field(default_factory=list)
    rows_after_run_date: int = 0


# --------------------------------------------------------------------------------------------
# small helpers


def _plain(value: Any) -> Any:
    """numpy scalar -> Python scalar (Arrow- and JSON-friendly)."""
    return value.item() if isinstance(value, np.generic) else value


def _to_day(value: Any) -> np.datetime64:
    """A run date (``date``, ``datetime``, ``Timestamp``, ISO string) as ``datetime64[D]``."""
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    return np.datetime64(ts.date(), "D")


def _as_date(day: np.datetime64 | None) -> dt.date | None:
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


def _numeric(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _codes(values: pd.Series) -> np.ndarray:
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
    text = "|".join([str(int(seed))] + [f"{k}={_plain(keys[k])!s}" for k in sorted(keys)])
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


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _reason(main: str, notes: list[str]) -> str:
    text = "; ".join([main, *notes]) if main else "; ".join(notes)
    return text[:MAX_REASON_CHARS]


def _error_fields(exc: BaseException | None) -> dict[str, str]:
    return {
        "error_class": type(exc).__name__,
        "error_message": (str(exc) or repr(exc))[:MAX_MESSAGE_CHARS],
    }


# --------------------------------------------------------------------------------------------
# data preparation


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
    cut = _to_day(run_date)
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
    raw["y"] = _numeric(sub[config.target_column])
    if config.open_column:
        raw["open"] = _numeric(sub[config.open_column])
    for name in regressors:
        raw[name] = _numeric(sub[name])
    if hcol:
        raw[hcol] = _codes(sub[hcol])
    fp_names = ["ds", "y", *(["open"] if config.open_column else []), *regressors]
    fp_names += [hcol] if hcol else []
    fingerprint = _fingerprint(used, [raw[n] for n in fp_names]) if len(sub) else None

    notes: list[str] = []
    if bad_dates:
        notes.append(f"dropped {_n(bad_dates, 'row')} with an unparsable date")
    empty = PreparedHistory(pd.DataFrame(), pd.DataFrame(), fingerprint, notes, after)
    if not len(sub) and after:
        raise GroupSkipped(f"all dates on/after run date {cut} ({_n(after, 'row')})", empty)
    if after:
        notes.append(f"ignored {_n(after, 'row')} on/after run date {cut}")
    if not len(sub):
        raise GroupSkipped(f"insufficient history: 0 open days < {config.min_history_days}", empty)

    frame = pd.DataFrame({n: raw[n] for n in fp_names})
    frame["ds"] = frame["ds"].astype("datetime64[ns]")

    # duplicate dates: identical rows are dropped, conflicting rows skip the group
    if frame["ds"].duplicated().any():
        exact = frame.duplicated(keep="first")
        n_exact = int(exact.sum())
        if n_exact:
            frame = frame.loc[~exact]
            notes.append(f"dropped {_n(n_exact, 'exact duplicate row')}")
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
                f"treated {_n(n_missing, 'missing ' + config.open_column + ' value')} as open"
            )
    for name in regressors:
        values = frame[name].to_numpy()
        bad = ~np.isfinite(values)
        if bad.any():
            frame[name] = np.where(bad, 0.0, values)
            notes.append(
                f"filled {_n(int(bad.sum()), 'missing/non-finite ' + name + ' value')} with 0"
            )

    y = frame["y"].to_numpy()
    is_open = (frame["open"].to_numpy() != 0) if config.open_column else np.ones(len(frame), bool)
    finite = np.isfinite(y)
    n_bad_y = int((is_open & ~finite).sum())
    if n_bad_y:
        notes.append(
            f"dropped {_n(n_bad_y, 'open day')} with a missing/non-finite {config.target_column}"
        )
    keep = finite & (is_open if config.drop_closed_days else True)
    train = frame.loc[keep].reset_index(drop=True)
    prepared = PreparedHistory(frame, train, fingerprint, notes, after)
    n_open = int((finite & is_open).sum())
    if n_open < config.min_history_days or len(train) < 2:
        raise GroupSkipped(
            f"insufficient history: {_n(n_open, 'open day')} < {config.min_history_days}", prepared
        )
    return prepared


# --------------------------------------------------------------------------------------------
# training


def _blank_row(keys: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {k: _plain(v) for k, v in keys.items()}
    row.update(
        status=STATUS_FAILED,
        status_reason=None,
        error_class=None,
        error_message=None,
        champion=None,
        model_json=None,
        baseline_json=None,
        model_sha256=None,
        baseline_sha256=None,
        history_max=None,
        train_start=None,
        train_end=None,
        train_rows=0,
        data_fingerprint=None,
        warm_started=False,
        fit_seconds=0.0,
        backtest_seconds=0.0,
        metrics=[],
        backtest_points=[],
    )
    return row


def _ordered(row: dict[str, Any], keys: Mapping[str, Any]) -> dict[str, Any]:
    return {c: row[c] for c in [*keys.keys(), *MODEL_COLUMNS]}


def _new_naive(config: ForecastingConfig) -> SeasonalNaiveForecaster:
    return SeasonalNaiveForecaster(
        season_length=config.seasonal_period_days,
        n_seasons=NAIVE_SEASONS,
        interval_width=config.prophet.interval_width,
    )


@dataclass
class _WindowResult:
    window: int
    model: str
    test: pd.DataFrame
    pred: pd.DataFrame

    def metric_rows(self) -> list[dict[str, Any]]:
        y = self.test["y"].to_numpy()
        yhat = self.pred["yhat"].to_numpy()
        values = compute_metrics(
            y, yhat, self.pred["yhat_lower"].to_numpy(), self.pred["yhat_upper"].to_numpy()
        )
        n_obs = int(evaluation_mask(y, yhat).sum())
        return [
            {
                "window": self.window,
                "model": self.model,
                "metric": name,
                "value": float(values[name]),
                "n_obs": n_obs,
            }
            for name in METRIC_NAMES
        ]

    def point_rows(self) -> list[dict[str, Any]]:
        dates = [d.date() for d in pd.to_datetime(self.test["ds"].to_numpy())]
        cols = [
            self.pred[c].to_numpy(dtype=np.float64) for c in ("yhat", "yhat_lower", "yhat_upper")
        ]
        y = self.test["y"].to_numpy(dtype=np.float64)
        return [
            {
                "window": self.window,
                "model": self.model,
                "ds": d,
                "y": float(yv),
                "yhat": float(a),
                "yhat_lower": float(b),
                "yhat_upper": float(c),
            }
            for d, yv, a, b, c in zip(dates, y, *cols, strict=True)
        ]


def _mean_wape(metrics: list[dict[str, Any]], model: str, windows: set[int]) -> float:
    values = [
        m["value"]
        for m in metrics
        if m["model"] == model and m["metric"] == "wape" and m["window"] in windows
    ]
    return float(np.mean(values)) if values else float("nan")


def train_group(
    history: pd.DataFrame,
    keys: Mapping[str, Any],
    config: ForecastingConfig,
    run_date: dt.date,
    previous_model_json: str | None = None,
) -> dict[str, Any]:
    """Backtest, select and fit one group's model; returns ONE result row (never raises).

    ``history``: the group's rows (any column order, extra columns ignored). ``keys``: the group
    key values (copied into the row). ``previous_model_json``: the group's previous champion
    JSON, used to warm-start the final Prophet fit when ``config.warm_start`` is on and it is
    compatible. The row follows :func:`mlcore.forecasting.schemas.model_schema` column order.
    """
    row = _blank_row(keys)
    try:
        _train(row, history, keys, config, run_date, previous_model_json)
    except Exception as exc:  # noqa: BLE001 - the contract is one row per group, never an exception
        logger.exception("train_group failed unexpectedly for %s", dict(keys))
        row.update(status=STATUS_FAILED, champion=None, model_json=None, **_error_fields(exc))
        row["status_reason"] = f"unexpected error: {type(exc).__name__}"
    seal_models(row)
    return _ordered(row, keys)


def model_digest(text: str) -> str:
    """The content hash stored beside a model's JSON and checked before it is loaded."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal_models(row: dict[str, Any]) -> dict[str, Any]:
    """Set ``model_sha256`` / ``baseline_sha256`` from the row's JSON (None where no JSON)."""
    for text_column, hash_column in (("model_json", "model_sha256"), ("baseline_json", "baseline_sha256")):
        text = row.get(text_column)
        row[hash_column] = model_digest(text) if text else None
    return row


def _train(
    row: dict[str, Any],
    history: pd.DataFrame,
    keys: Mapping[str, Any],
    config: ForecastingConfig,
    run_date: Any,
    previous_model_json: str | None,
) -> None:
    try:
        prep = prepare_history(history, config, run_date)
    except ForecastInputError as exc:
        row.update(
            status=STATUS_FAILED, status_reason=f"invalid input: {exc}", **_error_fields(exc)
        )
        return
    except GroupSkipped as skip:
        row["status"] = STATUS_SKIPPED
        if skip.prepared is not None:
            row["data_fingerprint"] = skip.prepared.fingerprint
            row["status_reason"] = _reason(skip.reason, skip.prepared.notes)
        else:
            row["status_reason"] = skip.reason
        return

    notes = list(prep.notes)
    row["data_fingerprint"] = prep.fingerprint
    seed = group_seed(config.seed, keys)
    y_train = prep.train["y"].to_numpy()
    if len(y_train) and np.isfinite(y_train).any():
        row["history_max"] = float(np.nanmax(y_train))

    # degenerate target: Prophet has nothing to learn
    if y_train.min() == y_train.max():
        value = float(y_train[0])
        if value <= 0:
            row.update(
                status=STATUS_SKIPPED,
                status_reason=_reason(
                    f"constant {config.target_column} {value:g}: nothing to forecast", notes
                ),
            )
            return
        constant = True
    else:
        constant = False

    # ---- backtest
    t0 = time.perf_counter()
    results: list[_WindowResult] = []
    prophet_error: BaseException | None = None
    prophet_error_where = ""
    naive_windows: set[int] = set()
    prophet_windows: set[int] = set()
    last = prep.frame["ds"].to_numpy()[-1].astype("datetime64[D]")
    ds_all = prep.frame["ds"].to_numpy().astype("datetime64[D]")
    ds_train = prep.train["ds"].to_numpy().astype("datetime64[D]")
    for w in range(config.backtest_windows):
        hold_end = last - w * config.backtest_step_days * _DAY
        hold_start = hold_end - (config.horizon_days - 1) * _DAY
        n_fit = int((ds_train < hold_start).sum())
        if n_fit < config.min_history_days:
            notes.append(
                f"backtest window {w} left out: "
                f"{_n(n_fit, 'open training day')} < {config.min_history_days}"
            )
            continue
        tr = prep.train.loc[ds_train < hold_start]
        te = prep.frame.loc[(ds_all >= hold_start) & (ds_all <= hold_end)].reset_index(drop=True)
        if te.empty:
            notes.append(f"backtest window {w} left out: no rows in the holdout")
            continue
        try:
            naive = _new_naive(config).fit(tr)
            results.append(_WindowResult(w, SEASONAL_NAIVE, te, naive.predict(te)))
            naive_windows.add(w)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"seasonal naive failed in window {w}: {type(exc).__name__}: {exc}"[:200])
        if constant or prophet_error is not None:
            continue
        try:
            pm = ProphetForecaster(config.prophet, seed=seed).fit(tr)
            results.append(_WindowResult(w, PROPHET, te, pm.predict(te)))
            prophet_windows.add(w)
        except Exception as exc:  # noqa: BLE001 - Prophet failures become a fallback
            prophet_error, prophet_error_where = exc, f"backtest window {w}"
    metrics = [m for r in results for m in r.metric_rows()]
    row["metrics"] = metrics
    row["backtest_points"] = [p for r in results for p in r.point_rows()]
    row["backtest_seconds"] = time.perf_counter() - t0

    # ---- final fits
    t1 = time.perf_counter()
    naive_json: str | None = None
    naive_error: BaseException | None = None
    try:
        naive_json = _new_naive(config).fit(prep.train).to_json()
    except Exception as exc:  # noqa: BLE001
        naive_error = exc
    row["baseline_json"] = naive_json

    champion = PROPHET
    main = ""
    if constant:
        champion = SEASONAL_NAIVE
        main = (
            f"constant {config.target_column} {float(y_train[0]):g}: "
            "seasonal naive, prophet not fitted"
        )
    elif prophet_error is None:
        both = naive_windows & prophet_windows
        p_wape = _mean_wape(metrics, PROPHET, both)
        b_wape = _mean_wape(metrics, SEASONAL_NAIVE, both)
        if math.isfinite(p_wape) and math.isfinite(b_wape):
            if b_wape < p_wape - config.selection_margin:
                champion = SEASONAL_NAIVE
                main = (
                    f"seasonal naive beats prophet by {p_wape - b_wape:.3f} WAPE "
                    f"({b_wape:.3f} vs {p_wape:.3f})"
                )
            else:
                main = f"prophet WAPE {p_wape:.3f} vs seasonal naive {b_wape:.3f}"
        else:
            main = "no scored backtest window: prophet by default"

    if champion == PROPHET and prophet_error is None:
        try:
            init = previous_model_json if config.warm_start else None
            final = ProphetForecaster(config.prophet, seed=seed, init_json=init).fit(prep.train)
            row["model_json"] = final.to_json()
            row["warm_started"] = bool(final.warm_started_)
            if final.warm_start_note_:
                notes.append(final.warm_start_note_)
        except Exception as exc:  # noqa: BLE001
            prophet_error, prophet_error_where = exc, "final fit"

    if prophet_error is not None:
        reason = f"prophet failed in {prophet_error_where} ({type(prophet_error).__name__})"
        row.update(**_error_fields(prophet_error))
        if naive_json is not None:
            row.update(status=STATUS_FALLBACK, champion=SEASONAL_NAIVE, model_json=naive_json)
            row["status_reason"] = _reason(f"{reason}: seasonal naive used", notes)
        else:
            row.update(status=STATUS_FAILED, champion=None, model_json=None)
            row["status_reason"] = _reason(
                f"{reason}; seasonal naive failed too ({type(naive_error).__name__})", notes
            )
    elif champion == SEASONAL_NAIVE:
        if naive_json is None:
            row.update(status=STATUS_FAILED, champion=None, **_error_fields(naive_error))
            row["status_reason"] = _reason(f"{main}; but seasonal naive final fit failed", notes)
        else:
            row.update(status=STATUS_OK, champion=SEASONAL_NAIVE, model_json=naive_json)
            row["status_reason"] = _reason(main, notes)
    else:
        row.update(status=STATUS_OK, champion=PROPHET)
        if naive_error is not None:
            notes.append(f"seasonal naive final fit failed: {type(naive_error).__name__}")
        row["status_reason"] = _reason(main, notes)
    if row["model_json"] is not None:
        _set_train_range(row, prep.train)
    row["fit_seconds"] = time.perf_counter() - t1


def _set_train_range(row: dict[str, Any], train: pd.DataFrame) -> None:
    if train is None or train.empty:
        return
    ds = train["ds"].to_numpy().astype("datetime64[D]")
    row["train_start"] = _as_date(ds.min())
    row["train_end"] = _as_date(ds.max())
    row["train_rows"] = int(len(train))


# --------------------------------------------------------------------------------------------
# forecasting


def _canonical_future(future: pd.DataFrame, config: ForecastingConfig) -> pd.DataFrame:
    """``ds``, ``open``, regressors, holidays column of a future frame (one row per date)."""
    days = normalize_dates(future[config.date_column])
    frame = pd.DataFrame({"ds": days.astype("datetime64[ns]")})
    if config.open_column and config.open_column in future.columns:
        frame["open"] = np.nan_to_num(_numeric(future[config.open_column]), nan=1.0)
    for name in config.prophet.regressors:
        if name in future.columns:
            values = _numeric(future[name])
            frame[name] = np.where(np.isfinite(values), values, 0.0)
        else:
            frame[name] = 0.0
    hcol = config.prophet.holidays_column
    if hcol:
        frame[hcol] = _codes(future[hcol]) if hcol in future.columns else "0"
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
    are used. Each candidate (the champion, then the seasonal-naive baseline) is used only if
    its JSON matches the content hash stored at training, it loads and predicts, and its forecast
    is plausible (finite, at most ``config.max_forecast_multiple`` x the group's historical
    maximum). The first usable one gives the rows: ``ok`` for the champion, ``fallback`` (with
    why) for the baseline, ``failed`` when neither is usable. ``future``: one row per date with
    the date column, the open flag (missing -> open), the regressors (missing -> 0) and the
    holidays column; duplicate dates are forecast once. Closed days get 0. Rows are sorted by
    date; ``ds`` holds ``datetime.date`` values. A future frame without the date column is a
    schema error (:class:`ForecastInputError` is raised).
    """
    key_values = {k: _plain(v) for k, v in keys.items()}
    columns = [*key_values, *FORECAST_COLUMNS]
    empty = pd.DataFrame(columns=columns)
    if config.date_column not in future.columns:
        raise ForecastInputError(f"future frame lacks the date column {config.date_column!r}")
    canon = _canonical_future(future, config)
    if canon.empty:
        return GroupForecast(empty, STATUS_FAILED, "no future calendar rows", None)
    champion = _get(model_row, "champion")
    candidates = [(champion or "champion", "model_json", "model_sha256")]
    if champion != SEASONAL_NAIVE:
        candidates.append((SEASONAL_NAIVE, "baseline_json", "baseline_sha256"))
    history_max = _get(model_row, "history_max")
    history_max = float(history_max) if history_max is not None else None
    rejected: list[str] = []
    for name, text_column, hash_column in candidates:
        try:
            model = load_model(_checked_json(model_row, text_column, hash_column))
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
        out["model_type"] = model.model_type
        if rejected:
            reason = f"{'; '.join(rejected)}; {model.model_type} used"
            return GroupForecast(out[columns], STATUS_FALLBACK, reason, model.model_type)
        return GroupForecast(out[columns], STATUS_OK, None, model.model_type)
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
    start = pd.Timestamp(_to_day(last_date)) + pd.Timedelta(days=1)
    dates = pd.date_range(start, periods=int(horizon_days), freq="D")
    frame = pd.DataFrame({config.date_column: [d.date() for d in dates]})
    if config.open_column:
        frame[config.open_column] = np.where(dates.weekday.isin(closed_weekdays), 0, 1)
    for name in config.prophet.regressors:
        frame[name] = 0
    if config.prophet.holidays_column:
        frame[config.prophet.holidays_column] = "0"
    return frame
