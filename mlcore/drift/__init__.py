"""Drift metrics: PSI and KS for numeric features, PSI and chi-square for categoricals,
computed from binned counts that Spark aggregates (no raw rows reach the driver)."""
