"""Per-group training and model selection, written for ``groupBy(keys).applyInPandas``.

Everything here is plain pandas/numpy on one group's rows: no Spark session, no table IO, no
MLflow. The functions are module-level (picklable), deterministic (same rows, keys and config
give the same models, metrics and JSON, whatever other groups run in the same process), import
Prophet lazily, and :func:`train_group` never raises: a bad group becomes a row with a
``status`` and a ``status_reason``. The history it fits on comes from
:func:`mlcore.forecasting.history.prepare_history` (the data rules are documented there).

Backtest: window ``w`` (``0 .. backtest_windows - 1``, default 3) holds out the ``horizon_days``
calendar days ending ``w * backtest_step_days`` days before the last history date; every family
is fitted on the training rows before the holdout (a window whose training part has fewer than
``min_history_days`` open days is left out, noted) and predicts the holdout rows with their
actual open flags, regressors, holidays and shared features (all known in advance in Rossmann).
An ``ensemble`` family is not refitted: its window prediction is the mean of its chosen members'
(:mod:`mlcore.forecasting.ensemble`). Metrics use the rule of
:func:`mlcore.forecasting.metrics.compute_metrics` (finite ``y > 0`` only); every family's
metrics and points, per window, are kept.

Selection: the default family (the first configured) keeps the group unless another family's
mean ``selection_metric`` (default RMSPE) over the windows all of them scored is lower by more
than ``selection_margin`` and it is better in every one of those windows (guards against
selection noise); the reason names the numbers. A
default family's exception (backtest or final fit) gives status ``fallback`` with the fallback
family as champion; when no model can be built at all the status is ``failed``.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from mlcore.config.models import ForecastingConfig, ForecastModelSpec
from mlcore.forecasting.ensemble import EnsembleForecaster, mean_prediction
from mlcore.forecasting.families import build_model, fallback_spec, family_name, resolve_family
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
from mlcore.forecasting.models import model_digest
from mlcore.forecasting.schemas import (
    MODEL_COLUMNS,
    STATUS_FAILED,
    STATUS_FALLBACK,
    STATUS_OK,
    STATUS_SKIPPED,
)

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class _Family:
    """A configured family as training uses it: its name (``champion``, backtest ``model``) and
    its spec (how to build a model)."""

    name: str
    spec: ForecastModelSpec

    @property
    def is_ensemble(self) -> bool:
        return self.name == EnsembleForecaster.family

    @property
    def label(self) -> str:
        """How reasons name it: ``seasonal naive`` for ``seasonal_naive``."""
        return self.name.replace("_", " ")


@dataclass(frozen=True)
class _Families:
    """The group's candidates: the default family (first configured), the others, and the
    fallback (fitted for every group; backtested first)."""

    default: _Family
    others: tuple[_Family, ...]
    fallback: _Family

    @classmethod
    def of(cls, config: ForecastingConfig) -> _Families:
        named = [_Family(family_name(spec), spec) for spec in config.models]
        fallback = fallback_spec(config)
        return cls(named[0], tuple(named[1:]), _Family(family_name(fallback), fallback))

    @property
    def candidates(self) -> tuple[_Family, ...]:
        return (self.default, *self.others)

    @property
    def backtested(self) -> tuple[_Family, ...]:
        """The families fitted in each window: the fallback first, then the candidates (each
        once) but the ensembles, which combine the others' predictions."""
        rest = tuple(
            f for f in self.candidates if f.name != self.fallback.name and not f.is_ensemble
        )
        return (self.fallback, *rest)

    @property
    def ensembles(self) -> tuple[_Family, ...]:
        return tuple(f for f in self.candidates if f.is_ensemble)

    def named(self, name: str) -> _Family:
        """The configured family called ``name`` (a family name or its config spelling)."""
        for family in (*self.candidates, self.fallback):
            if name in (family.name, family.spec.family):
                return family
        raise KeyError(name)


@dataclass
class _Backtest:
    """Every family's predictions over the backtest windows, and each candidate's first failure
    (a failing candidate is not backtested further)."""

    results: list[_WindowResult] = field(default_factory=list)
    scored: dict[str, set[int]] = field(default_factory=dict)
    errors: dict[str, tuple[BaseException, str]] = field(default_factory=dict)
    members: dict[str, list[_Family]] = field(default_factory=dict)  # an ensemble's chosen


def _backtest(
    prep: PreparedHistory,
    config: ForecastingConfig,
    families: _Families,
    seed: int,
    constant: bool,
    notes: list[str],
) -> _Backtest:
    """Fit every family on the rows before each holdout window and predict the window; a window
    with too little training history or no holdout rows is left out (noted). A candidate stops
    at its first failure (noted; the default family's failure makes the group fall back); the
    fallback's failure in one window is noted and the next window still tried. A constant target
    is backtested with the fallback only."""
    out = _Backtest(scored={f.name: set() for f in (*families.backtested, *families.ensembles)})
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
        for family in families.backtested:
            is_fallback = family.name == families.fallback.name
            if family.name in out.errors or (constant and not is_fallback):
                continue
            try:
                model = build_model(family.spec, config, seed).fit(tr)
                out.results.append(_WindowResult(w, family.name, te, model.predict(te)))
                out.scored[family.name].add(w)
            except Exception as exc:  # noqa: BLE001 - a family's failure is the group's data
                if is_fallback:
                    notes.append(f"{family.label} failed in window {w}: {type(exc).__name__}: {exc}"[:200])
                else:
                    out.errors[family.name] = (exc, f"backtest window {w}")
    if not constant:
        for ensemble in families.ensembles:
            try:
                _combine(out, ensemble, families, config)
            except Exception as exc:  # noqa: BLE001 - the ensemble's failure is the group's data
                out.errors[ensemble.name] = (exc, "backtest")
    for family in families.others:
        if family.name in out.errors:
            failure, where = out.errors[family.name]
            notes.append(f"{family.label} failed in {where} ({type(failure).__name__}): not selectable")
    return out


def _combine(
    out: _Backtest, ensemble: _Family, families: _Families, config: ForecastingConfig
) -> None:
    """The ensemble's backtest from its members' (no refit: the members are deterministic):
    the ``k`` members with the best mean ``selection_metric`` over the windows all usable
    members scored, averaged in each of those windows."""
    params = ensemble.spec.params
    listed = params.get("members")
    names = [families.named(str(m)).name for m in (listed if isinstance(listed, list) else [])]
    usable = [n for n in names if n not in out.errors and out.scored.get(n)]
    k = int(params.get("k") or len(names))  # type: ignore[arg-type]
    if len(usable) < min(k, 2):
        out.errors[ensemble.name] = (
            ValueError(f"{len(usable)} usable member(s) of {', '.join(names)}"),
            "backtest",
        )
        return
    windows = set.intersection(*(out.scored[n] for n in usable))
    by_key = {(r.model, r.window): r for r in out.results}

    def score(name: str) -> float:
        values = [
            compute_metrics(r.test["y"].to_numpy(), r.pred["yhat"].to_numpy())[config.selection_metric]
            for w in windows
            for r in [by_key[(name, w)]]
        ]
        finite = [v for v in values if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.inf

    chosen = sorted(usable, key=lambda n: (score(n), names.index(n)))[:k]
    out.members[ensemble.name] = [families.named(n) for n in chosen]
    for w in sorted(windows):
        first = by_key[(chosen[0], w)]
        pred = mean_prediction([by_key[(n, w)].pred for n in chosen])
        out.results.append(_WindowResult(w, ensemble.name, first.test, pred))
        out.scored[ensemble.name].add(w)


def _mean_metric(
    metrics: list[dict[str, Any]], model: str, metric: str, windows: set[int]
) -> float:
    values = [
        m["value"]
        for m in metrics
        if m["model"] == model and m["metric"] == metric and m["backtest_window"] in windows
    ]
    return float(np.mean(values)) if values else float("nan")


def _select(
    backtest: _Backtest,
    metrics: list[dict[str, Any]],
    families: _Families,
    config: ForecastingConfig,
) -> tuple[_Family, str]:
    """The champion and why: the default family, unless another family's mean
    ``selection_metric`` over the windows all of them scored beats it by more than
    ``selection_margin`` and (``selection_every_window``) it is also better in each of those
    windows; then the best such family. Both guard against a lucky window choosing a family."""
    default = families.default
    usable = [f for f in families.candidates if f.name not in backtest.errors]
    windows = set.intersection(*(backtest.scored.get(f.name, set()) for f in usable))
    metric = config.selection_metric
    means = {f.name: _mean_metric(metrics, f.name, metric, windows) for f in usable}
    rivals = [f for f in usable if f is not default and math.isfinite(means[f.name])]
    if not math.isfinite(means[default.name]) or not rivals:
        return default, f"no scored backtest window: {default.label} by default"
    name = metric.upper()
    ahead = sorted(
        (f for f in rivals if means[f.name] < means[default.name] - config.selection_margin),
        key=lambda f: means[f.name],
    )
    for best in ahead:
        lost = [
            w
            for w in sorted(windows)
            if _mean_metric(metrics, best.name, metric, {w})
            >= _mean_metric(metrics, default.name, metric, {w})
        ]
        if config.selection_every_window and lost:
            continue
        return best, (
            f"{best.label} beats {default.label} by {means[default.name] - means[best.name]:.3f} "
            f"{name} ({means[best.name]:.3f} vs {means[default.name]:.3f})"
        )
    versus = ", ".join(f"{f.label} {means[f.name]:.3f}" for f in rivals)
    kept = f"{default.label} {name} {means[default.name]:.3f} vs {versus}"
    if ahead:
        kept += f" ({ahead[0].label} better on the mean, not in every window)"
    return default, kept


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

    families = _Families.of(config)
    fallback = families.fallback
    notes = list(prep.notes)
    row["data_fingerprint"] = prep.fingerprint
    seed = group_seed(config.seed, keys)
    y_train = prep.train["y"].to_numpy()
    if len(y_train) and np.isfinite(y_train).any():
        row["history_max"] = float(np.nanmax(y_train))

    # degenerate target: the model families have nothing to learn
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
    backtest = _backtest(prep, config, families, seed, constant, notes)
    metrics = [m for r in backtest.results for m in r.metric_rows()]
    row["metrics"] = metrics
    row["backtest_points"] = [p for r in backtest.results for p in r.point_rows()]
    row["backtest_seconds"] = time.perf_counter() - t0
    error, error_where = backtest.errors.get(families.default.name, (None, ""))
    failed_family = families.default.label

    # ---- final fits
    t1 = time.perf_counter()
    fallback_json: str | None = None
    fallback_error: BaseException | None = None
    try:
        fallback_json = build_model(fallback.spec, config, seed).fit(prep.train).to_json()
    except Exception as exc:  # noqa: BLE001
        fallback_error = exc
    row["baseline_json"] = fallback_json

    champion = families.default
    main = ""
    if constant:
        champion = fallback
        skipped = [f.label for f in families.candidates if f.name != fallback.name]
        main = (
            f"constant {config.target_column} {float(y_train[0]):g}: {fallback.label}"
            + (f", {', '.join(skipped)} not fitted" if skipped else "")
        )
    elif error is None:
        champion, main = _select(backtest, metrics, families, config)

    if champion.is_ensemble and error is None:
        members = ", ".join(f.label for f in backtest.members[champion.name])
        main = f"{main} (members: {members})"
    if champion.name != fallback.name and error is None:
        try:
            final = _final_model(
                champion, config, seed, previous_model_json, backtest.members.get(champion.name)
            ).fit(prep.train)
            row["model_json"] = final.to_json()
            row["warm_started"] = bool(getattr(final, "warm_started_", False))
            if getattr(final, "warm_start_note_", None):
                notes.append(final.warm_start_note_)
        except Exception as exc:  # noqa: BLE001
            error, error_where, failed_family = exc, "final fit", champion.label

    if error is not None:
        reason = f"{failed_family} failed in {error_where} ({type(error).__name__})"
        row.update(**_error_fields(error))
        if fallback_json is not None:
            row.update(status=STATUS_FALLBACK, champion=fallback.name, model_json=fallback_json)
            row["status_reason"] = _reason(f"{reason}: {fallback.label} used", notes)
        else:
            row.update(status=STATUS_FAILED, champion=None, model_json=None)
            row["status_reason"] = _reason(
                f"{reason}; {fallback.label} failed too ({type(fallback_error).__name__})", notes
            )
    elif champion.name == fallback.name:
        if fallback_json is None:
            row.update(status=STATUS_FAILED, champion=None, **_error_fields(fallback_error))
            row["status_reason"] = _reason(f"{main}; but {fallback.label} final fit failed", notes)
        else:
            row.update(status=STATUS_OK, champion=fallback.name, model_json=fallback_json)
            row["status_reason"] = _reason(main, notes)
    else:
        row.update(status=STATUS_OK, champion=champion.name)
        if fallback_error is not None:
            notes.append(f"{fallback.label} final fit failed: {type(fallback_error).__name__}")
        row["status_reason"] = _reason(main, notes)
    if row["model_json"] is not None:
        _set_train_range(row, prep.train)
    row["fit_seconds"] = time.perf_counter() - t1


def _final_model(
    family: _Family,
    config: ForecastingConfig,
    seed: int,
    previous_model_json: str | None,
    members: list[_Family] | None = None,
) -> Any:
    """The champion family's final model; a family whose ``from_params`` takes ``init_json``
    (Prophet) warm-starts from the group's previous model when ``warm_start`` is on; an
    ensemble is made of the members its backtest chose for the group."""
    if family.is_ensemble and members:
        return EnsembleForecaster([build_model(m.spec, config, seed) for m in members])
    cls = resolve_family(family.spec.family)
    if config.warm_start and "init_json" in inspect.signature(cls.from_params).parameters:
        return build_model(family.spec, config, seed, init_json=previous_model_json)
    return build_model(family.spec, config, seed)


def _set_train_range(row: dict[str, Any], train: pd.DataFrame) -> None:
    if train is None or train.empty:
        return
    ds = train["ds"].to_numpy().astype("datetime64[D]")
    row["train_start"] = as_date(ds.min())
    row["train_end"] = as_date(ds.max())
    row["train_rows"] = int(len(train))
