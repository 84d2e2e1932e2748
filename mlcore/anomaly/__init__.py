"""Ride anomaly detection: ride features and feature rules, DBSCAN per daily batch, outlier
detectors (IsolationForest) and their batch scoring. Pure logic on pandas or Spark DataFrames."""
