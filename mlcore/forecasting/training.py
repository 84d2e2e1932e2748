"""Per-group training and model selection, written for ``groupBy(keys).applyInPandas``.

Everything here is plain pandas/numpy on one group's rows: no Spark session, no table IO, no
MLflow. The functions are module-level (picklable), deterministic (same rows, keys and config
give the same models, metrics and JSON, whatever other groups run in the same process), import
Prophet lazily, and :func:`train_group` never raises: a bad group becomes a row with a
``status`` and a ``status_reason``. The history it fits on comes from
:func:`mlcore.forecasting.history.prepare_history` (the data rules are documented there).

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
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from mlcore.config.models import ForecastingConfig
from mlcore.forecasting.history import (
    ForecastInputError,
    GroupSkipped,
    PreparedHistory,
    as_date,
    counted,
    group_seed,
    plain_value,
    prepare_history,
)
from mlcore.forecasting.metrics import METRIC_NAMES, compute_metrics, evaluation_mask
from mlcore.forecasting.models import (
    ProphetForecaster,
    SeasonalNaiveForecaster,
    model_digest,
)
from mlcore.forecasting.schemas import (
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


def _reason(main: str, notes: list[str]) -> str:
    text = "; ".join([main, *notes]) if main else "; ".join(notes)
    return text[:MAX_REASON_CHARS]


def _error_fields(exc: BaseException | None) -> dict[str, str]:
    return {
        "error_class": type(exc).__name__,
        "error_message": (str(exc) or repr(exc))[:MAX_MESSAGE_CHARS],
    }




def _blank_row(keys: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {k: plain_value(v) for k, v in keys.items()}
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
                "backtest_window": self.window,
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
                "backtest_window": self.window,
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
        if m["model"] == model and m["metric"] == "wape" and m["backtest_window"] in windows
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


def seal_models(row: dict[str, Any]) -> dict[str, Any]:
    """Set ``model_sha256`` / ``baseline_sha256`` from the row's JSON (None where no JSON)."""
    for text_column, hash_column in (("model_json", "model_sha256"), ("baseline_json", "baseline_sha256")):
        text = row.get(text_column)
        row[hash_column] = model_digest(text) if text else None
    return row


@dataclass
class _Backtest:
    """Every model's predictions over the backtest windows, and Prophet's first failure."""

    results: list[_WindowResult] = field(default_factory=list)
    naive_windows: set[int] = field(default_factory=set)
    prophet_windows: set[int] = field(default_factory=set)
    prophet_error: BaseException | None = None
    prophet_error_where: str = ""


def _backtest(
    prep: PreparedHistory, config: ForecastingConfig, seed: int, constant: bool, notes: list[str]
) -> _Backtest:
    """Fit both models on the rows before each holdout window and predict the window; a window
    with too little training history or no holdout rows is left out (noted). Prophet stops at
    its first failure (the group falls back); a constant target does not fit Prophet at all."""
    out = _Backtest()
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
                f"{counted(n_fit, 'open training day')} < {config.min_history_days}"
            )
            continue
        tr = prep.train.loc[ds_train < hold_start]
        te = prep.frame.loc[(ds_all >= hold_start) & (ds_all <= hold_end)].reset_index(drop=True)
        if te.empty:
            notes.append(f"backtest window {w} left out: no rows in the holdout")
            continue
        try:
            naive = _new_naive(config).fit(tr)
            out.results.append(_WindowResult(w, SEASONAL_NAIVE, te, naive.predict(te)))
            out.naive_windows.add(w)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"seasonal naive failed in window {w}: {type(exc).__name__}: {exc}"[:200])
        if constant or out.prophet_error is not None:
            continue
        try:
            pm = ProphetForecaster(config.prophet, seed=seed).fit(tr)
            out.results.append(_WindowResult(w, PROPHET, te, pm.predict(te)))
            out.prophet_windows.add(w)
        except Exception as exc:  # noqa: BLE001 - Prophet failures become a fallback
            out.prophet_error, out.prophet_error_where = exc, f"backtest window {w}"
    return out


def _select(
    backtest: _Backtest, metrics: list[dict[str, Any]], selection_margin: float
) -> tuple[str, str]:
    """The champion and why: the baseline when its mean WAPE over the windows both models
    scored beats Prophet's by more than ``selection_margin``, else Prophet."""
    both = backtest.naive_windows & backtest.prophet_windows
    p_wape = _mean_wape(metrics, PROPHET, both)
    b_wape = _mean_wape(metrics, SEASONAL_NAIVE, both)
    if not (math.isfinite(p_wape) and math.isfinite(b_wape)):
        return PROPHET, "no scored backtest window: prophet by default"
    if b_wape < p_wape - selection_margin:
        return SEASONAL_NAIVE, (
            f"seasonal naive beats prophet by {p_wape - b_wape:.3f} WAPE "
            f"({b_wape:.3f} vs {p_wape:.3f})"
        )
    return PROPHET, f"prophet WAPE {p_wape:.3f} vs seasonal naive {b_wape:.3f}"


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

    t0 = time.perf_counter()
    backtest = _backtest(prep, config, seed, constant, notes)
    metrics = [m for r in backtest.results for m in r.metric_rows()]
    row["metrics"] = metrics
    row["backtest_points"] = [p for r in backtest.results for p in r.point_rows()]
    row["backtest_seconds"] = time.perf_counter() - t0
    prophet_error, prophet_error_where = backtest.prophet_error, backtest.prophet_error_where

    # ---- final fits
    t1 = time.perf_counter()
    naive_json: str | None = None
    naive_error: BaseException | None = None
    try:
        naive_json = _new_naive(config).fit(prep.train).to_json()
    except Exception as exc:  # noqa: BLE001
        naive_error = exc
    row["baseline_json"] = naive_json

    if constant:
        champion = SEASONAL_NAIVE
        main = (
            f"constant {config.target_column} {float(y_train[0]):g}: "
            "seasonal naive, prophet not fitted"
        )
    elif prophet_error is None:
        champion, main = _select(backtest, metrics, config.selection_margin)
    else:
        champion, main = PROPHET, ""

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
    row["train_start"] = as_date(ds.min())
    row["train_end"] = as_date(ds.max())
    row["train_rows"] = int(len(train))
