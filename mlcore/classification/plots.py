"""PNG reports for a trained classifier (ROC, precision-recall, feature importance)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_png(y_true: np.ndarray, proba: np.ndarray, threshold: float, folder: Path) -> list[Path]:
    """ROC and precision-recall curves on the holdout, the stored threshold marked."""
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    plt = _pyplot()
    paths = []
    fpr, tpr, roc_thresholds = roc_curve(y_true, proba)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"ROC AUC {roc_auc_score(y_true, proba):.3f}")
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    at = int(np.argmin(np.abs(roc_thresholds - threshold)))
    ax.plot(fpr[at], tpr[at], "ro", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (holdout)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    paths.append(folder / "roc_curve.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    precision, recall, pr_thresholds = precision_recall_curve(y_true, proba)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, label=f"PR AUC {average_precision_score(y_true, proba):.3f}")
    ax.axhline(float(np.mean(y_true)), color="k", linestyle="--", linewidth=0.8, label="base rate")
    if len(pr_thresholds):
        at = int(np.argmin(np.abs(pr_thresholds - threshold)))
        ax.plot(recall[at], precision[at], "ro", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (holdout)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    paths.append(folder / "pr_curve.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    return paths


def importance_png(importance: pd.DataFrame, folder: Path) -> Path:
    """Horizontal bars of permutation importance (mean +- std) per input column."""
    plt = _pyplot()
    ordered = importance.sort_values("importance_mean")
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(ordered) + 1.2))
    ax.barh(ordered["feature"], ordered["importance_mean"], xerr=ordered["importance_std"], color="tab:blue")
    ax.set(xlabel="drop in holdout average precision when shuffled", title="Permutation importance")
    fig.tight_layout()
    path = folder / "feature_importance.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
