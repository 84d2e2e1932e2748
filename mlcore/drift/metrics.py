"""Drift statistics from per-bin counts (pure numpy/scipy; the counts come from Spark).

PSI = sum((c - r) * ln(c / r)) over bins of the reference (r) and current (c) shares, with a small
floor so empty bins do not explode. KS is the largest gap between the two cumulative shares over
the bins: with bins at reference quantiles it approximates the two-sample KS statistic, exact at
the bin edges. Chi-square compares the category counts of both windows (a 2 x K table).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPSILON = 1e-4


def shares(counts: Sequence[float]) -> np.ndarray:
    values = np.asarray(counts, dtype=float)
    total = values.sum()
    return values / total if total > 0 else np.zeros_like(values)


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    r = np.clip(shares(reference), EPSILON, None)
    c = np.clip(shares(current), EPSILON, None)
    return float(np.sum((c - r) * np.log(c / r)))


def ks_from_bins(reference: Sequence[float], current: Sequence[float]) -> float:
    return float(np.max(np.abs(np.cumsum(shares(reference)) - np.cumsum(shares(current))))) if len(reference) else 0.0


def chi_square_pvalue(reference: Sequence[float], current: Sequence[float]) -> float:
    """p-value of the chi-square test that both windows share one category distribution."""
    from scipy.stats import chi2_contingency

    table = np.vstack([np.asarray(reference, float), np.asarray(current, float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(chi2_contingency(table)[1])


def psi_noise_floor(bins: int, n_reference: int, n_current: int) -> float:
    """About three times the PSI that pure sampling noise gives between two same-distribution
    samples ((bins - 1) * (1/n + 1/m) in expectation): below it a PSI says nothing."""
    return 3.0 * (bins - 1) * (1.0 / max(n_reference, 1) + 1.0 / max(n_current, 1))


def ks_critical_value(n_reference: int, n_current: int, alpha: float) -> float:
    """Two-sample KS critical value at level ``alpha`` (asymptotic)."""
    c = float(np.sqrt(-0.5 * np.log(alpha / 2.0)))
    n, m = max(n_reference, 1), max(n_current, 1)
    return c * float(np.sqrt((n + m) / (n * m)))
