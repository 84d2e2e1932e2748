"""MLflow tracking and registry helpers (driver only; executors never call MLflow)."""

from mlcore.tracking.runs import JobRun, configure_mlflow, job_run, resolve_uris

__all__ = ["JobRun", "configure_mlflow", "job_run", "resolve_uris"]
