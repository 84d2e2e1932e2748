"""Model families: the one protocol every per-group forecaster follows, the shipped families, and
a user's own family named by import path in config.

A family is a class with:

- ``family`` (class attribute): the name stored as the champion / ``model_type`` of its rows;
- ``from_params(params, config, seed)`` (classmethod): a new, unfitted model from its config
  ``params`` (``forecasting.models[i].params``) and the forecasting config; unknown or bad
  parameters raise ``ValueError`` / ``TypeError`` (a config error when a job starts);
- ``features``: the columns beyond ``ds``, ``y`` and ``open`` it reads in ``fit`` and
  ``predict`` (a subset of the regressors and holidays column the history rules provide);
- ``fit(history) -> self``, ``predict(future) -> ds, yhat, yhat_lower, yhat_upper`` (one row per
  future row, in order; closed rows 0), ``to_json()`` and ``from_json(text)`` (never pickle).

Config names a shipped family by its name and a user's by ``module:Class``; the user's module
must be importable where the job runs (the driver and, on a cluster, the executors). A stored
model is loaded by the ``model_type`` in its JSON: a shipped family, or one of the configured
user families whose ``family`` it names.
"""

from __future__ import annotations

import importlib
import json
from typing import Any, ClassVar, Protocol

import pandas as pd

from mlcore.config.models import ForecastingConfig, ForecastModelSpec
from mlcore.forecasting.ensemble import EnsembleForecaster
from mlcore.forecasting.features import feature_columns, feature_problems
from mlcore.forecasting.gbm import LightGBMForecaster
from mlcore.forecasting.models import ProphetForecaster, SeasonalNaiveForecaster


class Forecaster(Protocol):
    """What training, backtests, ``make_forecasts`` and the registered pyfunc need of a model."""

    family: ClassVar[str]

    @property
    def features(self) -> tuple[str, ...]: ...

    def fit(self, history: pd.DataFrame) -> Forecaster: ...

    def predict(self, future: pd.DataFrame) -> pd.DataFrame: ...

    def to_json(self) -> str: ...


SHIPPED: dict[str, Any] = {
    LightGBMForecaster.family: LightGBMForecaster,
    ProphetForecaster.family: ProphetForecaster,
    SeasonalNaiveForecaster.family: SeasonalNaiveForecaster,
    EnsembleForecaster.family: EnsembleForecaster,
}


class FamilyError(ValueError):
    """A family that cannot be resolved or built from its config (a config error at job start)."""


def resolve_family(name: str) -> Any:
    """The class of a shipped family (``prophet``) or of a user's (``my_pkg.models:MyForecaster``)."""
    if name in SHIPPED:
        return SHIPPED[name]
    module_name, sep, class_name = name.partition(":")
    if not sep or not module_name or not class_name:
        raise FamilyError(
            f"unknown model family {name!r}: use one of {', '.join(sorted(SHIPPED))} "
            "or a class by import path (my_pkg.models:MyForecaster)"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FamilyError(f"model family {name!r}: cannot import {module_name!r} ({exc})") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise FamilyError(f"model family {name!r}: {module_name!r} has no {class_name!r}")
    missing = [
        attr
        for attr in ("family", "from_params", "fit", "predict", "to_json", "from_json")
        if not hasattr(cls, attr)
    ]
    if missing:
        raise FamilyError(
            f"model family {name!r} does not follow the Forecaster protocol: no {', '.join(missing)}"
        )
    return cls


def family_name(spec: ForecastModelSpec) -> str:
    """The name a family's models carry (``champion``, ``model_type``, backtest ``model``)."""
    return str(resolve_family(spec.family).family)


def configured_families(config: ForecastingConfig) -> list[str]:
    """The names of the configured families, the fallback's last when it is not among them."""
    names = [family_name(spec) for spec in config.models]
    fallback = family_name(fallback_spec(config))
    return names if fallback in names else [*names, fallback]


def build_model(
    spec: ForecastModelSpec, config: ForecastingConfig, seed: int, **options: Any
) -> Any:
    """A new, unfitted model of ``spec``'s family (``options``: e.g. Prophet's ``init_json``)."""
    return resolve_family(spec.family).from_params(dict(spec.params), config, seed, **options)


def fallback_spec(config: ForecastingConfig) -> ForecastModelSpec:
    """The fallback family's spec: its entry in ``models`` (with its params) or a bare one."""
    for spec in config.models:
        if spec.family == config.fallback or _safe_name(spec) == config.fallback:
            return spec
    return ForecastModelSpec(config.fallback)


def _safe_name(spec: ForecastModelSpec) -> str | None:
    try:
        return family_name(spec)
    except FamilyError:
        return None


def check_families(config: ForecastingConfig) -> list[str]:
    """Every problem with the configured families: unknown or unimportable, parameters their
    ``from_params`` refuses, two entries with the same family name, no families at all; and
    with the shared features they read (``forecasting.features``)."""
    problems: list[str] = feature_problems(config)
    if not config.models:
        problems.append("forecasting.models is empty: name at least one model family")
    if config.fallback == EnsembleForecaster.family:
        problems.append("forecasting.fallback: the ensemble cannot be the fallback (it needs its members)")
    seen: dict[str, int] = {}
    specs = [(f"forecasting.models[{i}]", spec) for i, spec in enumerate(config.models)]
    specs.append(("forecasting.fallback", fallback_spec(config)))
    for index, (where, spec) in enumerate(specs):
        try:
            name = family_name(spec)
        except FamilyError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if where != "forecasting.fallback":
            if name in seen:
                problems.append(f"{where}: family {name!r} is already forecasting.models[{seen[name]}]")
            seen.setdefault(name, index)
        try:
            model = build_model(spec, config, seed=0)
        except (TypeError, ValueError) as exc:
            problems.append(f"{where} ({spec.family}): bad params: {exc}")
            continue
        provided = available_features(config)
        lacking = [f for f in getattr(model, "features", ()) if f not in provided]
        if lacking:
            problems.append(
                f"{where} ({spec.family}) needs feature(s) {', '.join(lacking)} that the history "
                f"does not provide (available: {', '.join(provided) or 'none'}; regressors come "
                "from forecasting.prophet.regressors and holidays_column, the shared features "
                "from forecasting.features)"
            )
    return problems


def available_features(config: ForecastingConfig) -> tuple[str, ...]:
    """The feature columns the history rules give every family: the configured regressors, the
    holidays column and the shared features when on (``ds``, ``y`` and ``open`` always)."""
    holidays = (config.prophet.holidays_column,) if config.prophet.holidays_column else ()
    return (*config.prophet.regressors, *holidays, *feature_columns(config))


def load_model(text: str, config: ForecastingConfig | None = None) -> Any:
    """A stored model, by the ``model_type`` in its JSON: a shipped family, else a configured
    user family of that name."""
    model_type = json.loads(text).get("model_type")
    cls = SHIPPED.get(model_type)
    if cls is None and config is not None:
        for spec in config.models:
            try:
                candidate = resolve_family(spec.family)
            except FamilyError:
                continue
            if candidate.family == model_type:
                cls = candidate
                break
    if cls is None:
        raise ValueError(f"unknown model_type {model_type!r} (not a shipped or configured family)")
    if cls is EnsembleForecaster:  # its members may be user families: they need the config
        return EnsembleForecaster.from_json(text, config)
    return cls.from_json(text)
