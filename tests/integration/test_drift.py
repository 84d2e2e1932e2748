"""monitor_drift on the bank table against the classifier champion's training version: identical
windows are not flagged, an injected numeric shift and a new category mix are, and the per-store
and forecast monitors are skipped (not failed) when their inputs do not exist."""

from __future__ import annotations

import numpy as np
import pytest
from deltalake import DeltaTable

from mlcore.drift.metrics import (
    chi_square_pvalue,
    ks_critical_value,
    ks_from_bins,
    psi,
    psi_noise_floor,
)
from mlcore.runner import run_job
from tests.conftest import CONF_DIR

ARGS = ["--env", "test", "--conf-dir", str(CONF_DIR)]
BANK_ONLY = ["--set", "drift.monitors=[bank_features]"]


def metrics(home, run_date: str):
    frame = DeltaTable(str(home / "lake" / "drift_metrics")).to_pandas()
    return frame[frame["run_date"].astype(str) == run_date]


def test_drift_metrics_from_counts():
    same = [10, 20, 30, 40]
    assert psi(same, same) == 0.0 and ks_from_bins(same, same) == 0.0 and chi_square_pvalue(same, same) == 1.0
    shifted = [40, 30, 20, 10]
    assert psi(same, shifted) > 0.5 and ks_from_bins(same, shifted) == pytest.approx(0.4)
    assert chi_square_pvalue(same, shifted) < 1e-6
    assert psi_noise_floor(10, 50, 50) == pytest.approx(3 * 9 * 0.04)
    assert ks_critical_value(50, 50, 0.01) > ks_critical_value(5000, 5000, 0.01)


def test_identical_windows_pass_and_injected_drift_is_flagged(spark, make_config, mlcore_home, capsys):
    from pyspark.sql import functions as F

    from mlcore.io import DeltaTables

    assert run_job("ingest_bank", [*ARGS, "--run-date", "2015-06-14"]) == 0
    assert run_job("train_classifier", [*ARGS, "--run-date", "2015-06-14"]) == 0
    capsys.readouterr()

    assert run_job("monitor_drift", [*ARGS, "--run-date", "2015-06-15"]) == 0
    out = capsys.readouterr().out
    assert "bank_features" in out and "sales_per_store      skipped" in out and "ride_features        skipped" in out
    same = metrics(mlcore_home, "2015-06-15")
    assert len(same) == 2 * 15 and not same["drifted"].any(), "the same table version never drifts"
    assert set(same["metric"]) == {"psi", "ks", "chi2_pvalue"}

    tables = DeltaTables(spark, make_config())
    bank = tables.read("bank")
    # Ages shifted by 15 years; half of the clients re-labelled as students.
    drifted = bank.withColumn("age", F.col("age") + 15).withColumn(
        "job", F.when(F.xxhash64("balance", "day", "duration") % 2 == 0, F.lit("student")).otherwise(F.col("job"))
    )
    tables.write(drifted, "bank", mode="overwrite")
    assert run_job("monitor_drift", [*ARGS, "--run-date", "2015-06-16", *BANK_ONLY]) == 0
    result = metrics(mlcore_home, "2015-06-16").set_index(["feature", "metric"])
    assert result.loc[("age", "psi"), "drifted"] and result.loc[("age", "ks"), "drifted"]
    assert result.loc[("job", "psi"), "drifted"] and result.loc[("job", "chi2_pvalue"), "drifted"]
    untouched = result.drop(index=["age", "job"], level="feature")
    assert not untouched["drifted"].any(), untouched[untouched["drifted"]]
    assert (result["reference_window"].str.startswith("bank@v0")).all() and (result["current_window"] == "bank@v1").all()

    # Idempotent per run date; the report is logged.
    before = DeltaTable(str(mlcore_home / "lake" / "drift_metrics")).version()
    assert run_job("monitor_drift", [*ARGS, "--run-date", "2015-06-16", *BANK_ONLY]) == 0
    assert DeltaTable(str(mlcore_home / "lake" / "drift_metrics")).version() == before
    assert np.isfinite(result["value"]).all()
