"""Drift comparisons: reference vs current frames, feature by feature (and group by group),
into metric rows with thresholds and flags (PSI + KS for numerics, PSI + chi-square for
categoricals). Pure functions of Spark DataFrames and the drift config; which tables a monitor
compares is decided by ``mlcore.pipelines.monitor_drift``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlcore.config.models import DriftConfig
from mlcore.drift.binned import categorical_counts, merge_bins, numeric_counts
from mlcore.drift.metrics import (
    chi_square_pvalue,
    ks_critical_value,
    ks_from_bins,
    psi,
    psi_noise_floor,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass
class Comparison:
    """One monitor's reference and current frames, the features to compare, the windows' labels
    and the group keys (empty: overall)."""

    monitor: str
    table: str
    reference: DataFrame
    current: DataFrame
    reference_window: str
    current_window: str
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    group_keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Distribution:
    """One ungrouped feature's reference and current shares per bin (numeric: the reference's
    quantile bins, so reference shares are about equal and current shares show the shift;
    categorical: per category): what the report draws."""

    monitor: str
    feature: str
    labels: list[str]
    reference: list[float]
    current: list[float]
    psi: float
    drifted: bool


@dataclass
class ComparisonResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    too_small: int = 0  # groups with fewer rows than drift.min_rows on either side
    distributions: list[Distribution] = field(default_factory=list)


def _shares(counts: list[float]) -> list[float]:
    total = float(sum(counts))
    return [float(c) / total if total else 0.0 for c in counts]


def compare(comparison: Comparison, cfg: DriftConfig) -> ComparisonResult:
    """Metric rows for every feature (and group), how many groups were too small to compare, and
    the ungrouped features' distributions.

    All counting is Spark aggregation (the driver sees per-bin counts only); each threshold is
    raised to what sampling noise alone produces at the compared sizes."""
    from pyspark import StorageLevel

    ref = comparison.reference.persist(StorageLevel.MEMORY_AND_DISK)
    cur = comparison.current.persist(StorageLevel.MEMORY_AND_DISK)
    result = ComparisonResult()
    rows = result.rows

    def emit(
        feature: str,
        group: str | None,
        metric: str,
        value: float,
        threshold: float,
        drifted: bool,
        n: tuple[int, int],
    ) -> None:
        rows.append(
            {
                "monitor": comparison.monitor, "source_table": comparison.table, "feature": feature,
                "group_key": group, "metric": metric, "value": float(value), "threshold": float(threshold),
                "drifted": bool(drifted), "n_reference": n[0], "n_current": n[1],
                "reference_window": comparison.reference_window, "current_window": comparison.current_window,
            }
        )  # fmt: skip

    try:
        for feature in comparison.numeric:
            fine = numeric_counts(ref, cur, feature, comparison.group_keys, cfg.ks_bins)
            if cfg.ks_bins % cfg.psi_bins == 0:  # decile edges are among the finer quantile edges
                coarse = {
                    g: (merge_bins(r, cfg.psi_bins), merge_bins(c, cfg.psi_bins), nr, nc)
                    for g, (r, c, nr, nc) in fine.items()
                }
            else:
                coarse = numeric_counts(ref, cur, feature, comparison.group_keys, cfg.psi_bins)
            for group, (r, c, n_ref, n_cur) in sorted(coarse.items(), key=lambda kv: str(kv[0])):
                if min(n_ref, n_cur) < cfg.min_rows:
                    result.too_small += 1
                    continue
                # Effective thresholds never sit below what sampling noise alone produces, so
                # small groups (a store's few weeks) are not flagged for noise.
                value = psi(r, c)
                limit = max(cfg.psi_threshold, psi_noise_floor(cfg.psi_bins, n_ref, n_cur))
                emit(feature, group, "psi", value, limit, value > limit, (n_ref, n_cur))
                if group is None:
                    labels = [f"q{i + 1}" for i in range(len(r))]
                    result.distributions.append(Distribution(
                        comparison.monitor, feature, labels, _shares(r), _shares(c), value, value > limit
                    ))  # fmt: skip
                fr, fc, _, _ = fine[group]
                value = ks_from_bins(fr, fc)
                limit = max(cfg.ks_threshold, ks_critical_value(n_ref, n_cur, cfg.chi2_pvalue))
                emit(feature, group, "ks", value, limit, value > limit, (n_ref, n_cur))
        for feature in comparison.categorical:
            counts = categorical_counts(ref, cur, feature, comparison.group_keys)
            for group, (r, c, n_ref, n_cur, names) in sorted(counts.items(), key=lambda kv: str(kv[0])):
                if min(n_ref, n_cur) < cfg.min_rows:
                    result.too_small += 1
                    continue
                value = psi(r, c)
                limit = max(cfg.psi_threshold, psi_noise_floor(len(r), n_ref, n_cur))
                emit(feature, group, "psi", value, limit, value > limit, (n_ref, n_cur))
                if group is None:
                    result.distributions.append(Distribution(
                        comparison.monitor, feature, [str(n) for n in names], _shares(r), _shares(c),
                        value, value > limit,
                    ))  # fmt: skip
                p = chi_square_pvalue(r, c)
                emit(
                    feature,
                    group,
                    "chi2_pvalue",
                    p,
                    cfg.chi2_pvalue,
                    p < cfg.chi2_pvalue,
                    (n_ref, n_cur),
                )
    finally:
        ref.unpersist()
        cur.unpersist()
    return result
