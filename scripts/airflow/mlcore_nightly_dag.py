"""Airflow DAG for the mlcore nightly chain, one BashOperator per job through ./spark-submit.sh.

    ingest_sales ─┐
    ingest_bank ──┼─> validate_inputs -> train_forecasts -> make_forecasts -> score_batch -> monitor_drift
    ingest_rides ─┘

Install: copy this file into the scheduler's DAGs folder (``$AIRFLOW_HOME/dags``). The workers
need a checkout of the repo (with ``conf/``) and a Spark client able to reach the cluster
(``spark-submit`` on PATH or ``$SPARK_HOME``, or a venv with pyspark). Airflow Variables, all
optional, read when a task runs (never at import):

- ``mlcore_repo``: the checkout on the workers (default ``/opt/mlcore``);
- ``mlcore_env``: the mlcore config env, ``conf/<env>/`` (default ``emr``);
- ``mlcore_spark_submit_args``: launcher options for ``spark-submit.sh`` (default: YARN cluster
  mode with the Delta SQL extension and catalog, as in ``scripts/emr/steps.json``).

The run date passed to every job (``--run-date``) is mlcore's "as of" date: jobs use inputs
strictly *before* it, so the 02:00 run on day X gets run date X and processes the days up to X-1.
That is ``{{ data_interval_end | ds }}`` on Airflow 2 and 3 alike (the same as Databricks'
``{{job.start_time.iso_date}}``); plain ``{{ ds }}`` would be X-1 on Airflow 2, whose cron
schedules have day-long data intervals, and X on Airflow 3. Trigger with
``{"run_date": "YYYY-MM-DD"}`` as run conf to run (or backfill) another date. Every job write is
idempotent per (job, run date), so task retries never duplicate outputs.

Importing this file builds the DAG and nothing else (no Variables, no connections, no I/O).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
try:  # Airflow 3 (and Airflow 2 with apache-airflow-providers-standard)
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

DAG_ID = "mlcore_nightly"

# job -> the jobs it waits for. Task ids are the job names.
UPSTREAM: dict[str, tuple[str, ...]] = {
    "ingest_sales": (),
    "ingest_bank": (),
    "ingest_rides": (),
    "validate_inputs": ("ingest_sales", "ingest_bank", "ingest_rides"),
    "train_forecasts": ("validate_inputs",),
    "make_forecasts": ("train_forecasts",),
    "score_batch": ("make_forecasts",),
    "monitor_drift": ("score_batch",),
}

DEFAULT_REPO = "/opt/mlcore"
DEFAULT_ENV = "emr"
DEFAULT_SUBMIT_ARGS = (
    "--master yarn --deploy-mode cluster"
    " --conf spark.scheduler.mode=FAIR"
    " --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension"
    " --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog"
)


def _variable(name: str, default: str) -> str:
    """Jinja reading an Airflow Variable when the task runs (not when the file is parsed)."""
    return "{{ var.value.get('" + name + "', '" + default + "') }}"


# Jinja, rendered when the task runs.
RUN_DATE = "{{ params.run_date or (data_interval_end | ds) }}"
REPO = _variable("mlcore_repo", DEFAULT_REPO)
ENV = _variable("mlcore_env", DEFAULT_ENV)
SUBMIT_ARGS = _variable("mlcore_spark_submit_args", DEFAULT_SUBMIT_ARGS)


def bash_command(job: str) -> str:
    """The templated shell command of one job's task."""
    return f"cd {REPO} && ./spark-submit.sh {SUBMIT_ARGS} {job} --env {ENV} --run-date {RUN_DATE}"


DEFAULT_ARGS = {
    "owner": "mlcore",
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=4),
}

with DAG(
    dag_id=DAG_ID,
    description="mlcore nightly: ingest, validate, train and make forecasts, score, monitor drift",
    schedule="0 2 * * *",
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={"run_date": None},
    tags=["mlcore"],
) as dag:
    tasks = {job: BashOperator(task_id=job, bash_command=bash_command(job)) for job in UPSTREAM}
    for job, upstream in UPSTREAM.items():
        for parent in upstream:
            tasks[parent] >> tasks[job]
