"""Point and interval forecast metrics on numpy arrays.

Two layers:

* The metric functions (:func:`mae`, :func:`rmse`, :func:`mape`, :func:`smape`, :func:`wape`,
  :func:`rmspe`, :func:`coverage`) take aligned arrays and return a plain ``float``. They use
  every pair whose values are all finite (NaN/inf pairs are ignored) and return ``NaN`` when
  the metric is undefined (no usable point, or a zero denominator). Percentage metrics are
  returned as fractions (0.1 = 10 %), not multiplied by 100.
* :func:`compute_metrics` is what the forecasting code reports. It first applies the
  **evaluation rule: only points with a finite, strictly positive actual are scored**, i.e. open
  days with sales > 0 (closed days have sales 0 and a forecast of 0 by construction, so scoring
  them would flatter every model; this is also the Kaggle Rossmann rule). Pooled metrics over
  many groups computed with :func:`compute_metrics` therefore agree with the per-group ones.
* :func:`scored_wape` is the same WAPE, under the same rule, as a Spark aggregate: the realised
  WAPE that drift monitoring computes over the forecasts table is the backtest's WAPE.

Definitions (``e = y - yhat``):

=========  ====================================================================================
mae        ``mean(|e|)``
rmse       ``sqrt(mean(e**2))``
mape       ``mean(|e| / |y|)`` over points with ``y != 0``
smape      ``mean(2 |e| / (|y| + |yhat|))``; a pair with ``y == yhat == 0`` counts as 0. Range [0, 2]
wape       ``sum(|e|) / sum(|y|)`` (weighted absolute percentage error; NaN if ``sum(|y|) == 0``)
rmspe      ``sqrt(mean((e / y)**2))`` over points with ``y > 0`` (Kaggle Rossmann metric)
coverage   share of points with ``lower <= y <= upper``
=========  ====================================================================================
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pyspark.sql import Column

ArrayLike = npt.ArrayLike

METRIC_NAMES: Final[tuple[str, ...]] = (
    "mae",
    "rmse",
    "mape",
    "smape",
    "wape",
    "rmspe",
    "coverage",
)
NAN: Final[float] = float("nan")


def _pairs(*arrays: ArrayLike) -> tuple[np.ndarray, ...]:
    """Float64 copies of aligned arrays, keeping only positions where all values are finite."""
    arrs = [np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays]
    n = arrs[0].shape[0]
    for a in arrs[1:]:
        if a.shape[0] != n:
            raise ValueError(f"arrays have different lengths: {[x.shape[0] for x in arrs]}")
    keep = np.ones(n, dtype=bool)
    for a in arrs:
        keep &= np.isfinite(a)
    return tuple(a[keep] for a in arrs)


def mae(y: ArrayLike, yhat: ArrayLike) -> float:
    """Mean absolute error."""
    yv, fv = _pairs(y, yhat)
    return float(np.mean(np.abs(yv - fv))) if yv.size else NAN


def rmse(y: ArrayLike, yhat: ArrayLike) -> float:
    """Root mean squared error."""
    yv, fv = _pairs(y, yhat)
    return float(math.sqrt(np.mean((yv - fv) ** 2))) if yv.size else NAN


def mape(y: ArrayLike, yhat: ArrayLike) -> float:
    """Mean absolute percentage error (fraction) over points with ``y != 0``."""
    yv, fv = _pairs(y, yhat)
    nz = yv != 0
    if not nz.any():
        return NAN
    return float(np.mean(np.abs(yv[nz] - fv[nz]) / np.abs(yv[nz])))


def smape(y: ArrayLike, yhat: ArrayLike) -> float:
    """Symmetric MAPE (fraction, range [0, 2]); ``0/0`` terms count as 0."""
    yv, fv = _pairs(y, yhat)
    if not yv.size:
        return NAN
    denom = np.abs(yv) + np.abs(fv)
    num = 2.0 * np.abs(yv - fv)
    terms = np.divide(num, denom, out=np.zeros_like(num), where=denom > 0)
    return float(np.mean(terms))


def wape(y: ArrayLike, yhat: ArrayLike) -> float:
    """Weighted absolute percentage error: ``sum|y - yhat| / sum|y|``."""
    yv, fv = _pairs(y, yhat)
    denom = float(np.sum(np.abs(yv)))
    if not yv.size or denom == 0.0:
        return NAN
    return float(np.sum(np.abs(yv - fv)) / denom)


def rmspe(y: ArrayLike, yhat: ArrayLike) -> float:
    """Root mean squared percentage error over points with ``y > 0`` (Kaggle Rossmann)."""
    yv, fv = _pairs(y, yhat)
    pos = yv > 0
    if not pos.any():
        return NAN
    rel = (yv[pos] - fv[pos]) / yv[pos]
    return float(math.sqrt(np.mean(rel**2)))


def coverage(y: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Share of points with ``lower <= y <= upper`` (bounds inclusive)."""
    yv, lo, hi = _pairs(y, lower, upper)
    if not yv.size:
        return NAN
    return float(np.mean((yv >= lo) & (yv <= hi)))


def evaluation_mask(y: ArrayLike, yhat: ArrayLike) -> np.ndarray:
    """Boolean mask of the points that are scored: finite ``y > 0`` with a finite forecast."""
    yv = np.asarray(y, dtype=np.float64).reshape(-1)
    fv = np.asarray(yhat, dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        return np.isfinite(yv) & np.isfinite(fv) & (yv > 0)


def compute_metrics(
    y: ArrayLike,
    yhat: ArrayLike,
    lower: ArrayLike | None = None,
    upper: ArrayLike | None = None,
) -> dict[str, float]:
    """All metrics of :data:`METRIC_NAMES` over the scored points (finite ``y > 0``).

    ``coverage`` is ``NaN`` when no interval is given. Every value is ``NaN`` when no point is
    scored; the number of scored points is ``int(evaluation_mask(y, yhat).sum())``.
    """
    yv = np.asarray(y, dtype=np.float64).reshape(-1)
    fv = np.asarray(yhat, dtype=np.float64).reshape(-1)
    mask = evaluation_mask(yv, fv)
    yv, fv = yv[mask], fv[mask]
    out = {
        "mae": mae(yv, fv),
        "rmse": rmse(yv, fv),
        "mape": mape(yv, fv),
        "smape": smape(yv, fv),
        "wape": wape(yv, fv),
        "rmspe": rmspe(yv, fv),
        "coverage": NAN,
    }
    if lower is not None and upper is not None:
        lo = np.asarray(lower, dtype=np.float64).reshape(-1)[mask]
        hi = np.asarray(upper, dtype=np.float64).reshape(-1)[mask]
        out["coverage"] = coverage(yv, lo, hi)
    return out


def scored_wape(y: str, yhat: str) -> Column:
    """:func:`wape` under the evaluation rule as a Spark aggregate over columns ``y``, ``yhat``:
    ``sum(|y - yhat|) / sum(y)`` over rows with ``y > 0`` and a non-null, non-NaN forecast
    (null when no row is scored)."""
    from pyspark.sql import functions as F

    actual, forecast = F.col(f"`{y}`").cast("double"), F.col(f"`{yhat}`").cast("double")
    scored = (actual > 0) & forecast.isNotNull() & ~F.isnan(forecast)
    return F.sum(F.when(scored, F.abs(actual - forecast))) / F.sum(F.when(scored, actual))
