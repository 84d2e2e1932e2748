"""The fixed registry of jobs (no import-by-arbitrary-name from the command line)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobSpec:
    name: str
    module: str
    summary: str


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec(
            "ingest_sales",
            "mlcore.pipelines.ingest_sales",
            "Rossmann train.csv + store.csv -> Delta sales, stores (+ quarantine)",
        ),
        JobSpec(
            "ingest_bank",
            "mlcore.pipelines.ingest_bank",
            "UCI bank marketing CSV -> Delta bank (+ quarantine)",
        ),
        JobSpec(
            "ingest_rides",
            "mlcore.pipelines.ingest_rides",
            "NYC TLC yellow trip CSV -> Delta rides by pickup_date (+ quarantine)",
        ),
        JobSpec(
            "train_forecasts",
            "mlcore.pipelines.train_forecasts",
            "Per-store Prophet models (backtest, selection) -> forecast_models + MLflow registry",
        ),
        JobSpec(
            "make_forecasts",
            "mlcore.pipelines.make_forecasts",
            "Champion models forecast run_date .. run_date+H-1 -> Delta forecasts, forecast_status",
        ),
        JobSpec(
            "train_classifier",
            "mlcore.pipelines.train_classifier",
            "bank -> SMOTE + random forest, randomized search on Spark -> MLflow bank_classifier",
        ),
        JobSpec(
            "score_classifier",
            "mlcore.pipelines.score_classifier",
            "Champion bank_classifier scores a Delta table -> Delta bank_scores",
        ),
        JobSpec(
            "detect_anomalies",
            "mlcore.pipelines.detect_anomalies",
            "DBSCAN per daily batch of rides -> Delta ride_anomalies, ride_anomaly_batches (+ quarantine)",
        ),
        JobSpec(
            "train_anomaly_model",
            "mlcore.pipelines.train_anomaly_model",
            "IsolationForest on a reference window, gated against DBSCAN -> MLflow ride_anomaly_model",
        ),
        JobSpec(
            "score_anomalies",
            "mlcore.pipelines.score_anomalies",
            "Champion ride_anomaly_model scores rides -> Delta ride_anomaly_scores (+ quarantine)",
        ),
        JobSpec(
            "score_batch",
            "mlcore.pipelines.score_batch",
            "score_classifier and score_anomalies concurrently in one Spark application",
        ),
        JobSpec(
            "monitor_drift",
            "mlcore.pipelines.monitor_drift",
            "PSI/KS/chi-square drift vs each model's reference, realised forecast WAPE -> Delta drift_metrics",
        ),
        JobSpec(
            "validate_inputs",
            "mlcore.pipelines.validate_inputs",
            "Validation rules of validation.tables on the input tables -> Delta validation_results",
        ),
        JobSpec(
            "run_pipeline",
            "mlcore.pipelines.run_pipeline",
            "The nightly chain with gates; retrains only what needs it; resumable -> Delta run_manifest",
        ),
    )
}
