"""The fixed registry of jobs (no import-by-arbitrary-name from the command line), with the
tables each job needs and writes: the runner checks the needed ones before it starts Spark, and
a missing one names the job that writes it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from mlcore.config.models import MlcoreConfig


@dataclass(frozen=True)
class JobSpec:
    """A job: its pipeline module, one line for ``--help``, and what it reads and writes.

    A table is a logical name (``sales``) or a config key naming one or a list of them
    (``classification.input_table``); a model is a config key naming a registered model.
    ``requires``: tables that must exist (checked before Spark starts); ``reads``: tables read
    when they exist; ``produces``: tables written; ``registers``: models it trains and gates;
    ``serves``: models whose champion it uses; ``parts``: jobs it runs inside (score_batch).
    ``partial``: it can run on part of its inputs when an earlier step of the nightly chain
    failed to produce the others (it leaves those out and says so). ``gate``: it passes or holds
    back the tables it reads (validate_inputs): in the chain, steps reading them come after it.

    ``write_mode`` says how the runner publishes what the stage returns (the stage writes
    nothing itself): ``run_date`` replaces this run date's rows (replace-where on ``run_date``)
    and leaves other dates alone; ``snapshot`` overwrites the whole table (ingest: the source is
    a full snapshot, older ones stay in Delta time travel). Both carry the job's idempotency
    token, so a replay commits nothing. ``may_produce``: tables written only under some config
    (ingest_sales's future calendar); a stage returning a table declared in neither is a bug."""

    name: str
    module: str
    summary: str
    requires: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    may_produce: tuple[str, ...] = ()
    write_mode: Literal["run_date", "snapshot"] = "run_date"
    reads: tuple[str, ...] = ()
    registers: tuple[str, ...] = ()
    serves: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    partial: bool = False
    gate: bool = False


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec(
            "ingest_sales",
            "mlcore.pipelines.ingest_sales",
            "Rossmann train.csv + store.csv -> Delta sales, stores (+ quarantine)",
            produces=("sales", "sales_quarantine", "stores", "stores_quarantine"),
            may_produce=("forecast_calendar", "forecast_calendar_quarantine"),
            write_mode="snapshot",
        ),
        JobSpec(
            "ingest_bank",
            "mlcore.pipelines.ingest_bank",
            "UCI bank marketing CSV -> Delta bank (+ quarantine)",
            produces=("bank", "bank_quarantine"),
            write_mode="snapshot",
        ),
        JobSpec(
            "ingest_rides",
            "mlcore.pipelines.ingest_rides",
            "NYC TLC yellow trip CSV -> Delta rides by pickup_date (+ quarantine)",
            produces=("rides", "rides_quarantine"),
            write_mode="snapshot",
        ),
        JobSpec(
            "train_forecasts",
            "mlcore.pipelines.train_forecasts",
            "Per-store models of the configured families (rolling backtests, selection) -> "
            "forecast_models + MLflow registry",
            requires=("sales",),
            produces=("forecast_models", "forecast_metrics", "forecast_backtest"),
            reads=("drift_metrics", "stores", "forecast_calendar"),
            registers=("forecasting.model_name",),
        ),
        JobSpec(
            "make_forecasts",
            "mlcore.pipelines.make_forecasts",
            "Champion models forecast run_date .. run_date+H-1 -> Delta forecasts, forecast_status",
            requires=("forecast_models",),
            produces=("forecasts", "forecast_status"),
            reads=("forecast_calendar", "sales", "stores"),
            serves=("forecasting.model_name",),
        ),
        JobSpec(
            "find_similar_stores",
            "mlcore.pipelines.find_similar_stores",
            "Store profiles (shape, seasonality, level, attributes) -> k nearest -> Delta store_neighbours",
            requires=("sales",),
            produces=("store_neighbours",),
            reads=("stores",),
        ),
        JobSpec(
            "train_classifier",
            "mlcore.pipelines.train_classifier",
            "bank -> SMOTE + random forest, randomized search on Spark -> MLflow bank_classifier",
            requires=("classification.input_table",),
            registers=("classification.model_name",),
        ),
        JobSpec(
            "score_classifier",
            "mlcore.pipelines.score_classifier",
            "Champion bank_classifier scores a Delta table -> Delta bank_scores",
            requires=("classification.score_table",),
            produces=("classification.output_table",),
            serves=("classification.model_name",),
        ),
        JobSpec(
            "detect_anomalies",
            "mlcore.pipelines.detect_anomalies",
            "DBSCAN per daily batch of rides -> Delta ride_anomalies, ride_anomaly_batches (+ quarantine)",
            requires=("anomaly.input_table",),
            produces=("ride_anomalies", "ride_anomaly_batches", "ride_anomalies_quarantine"),
        ),
        JobSpec(
            "train_anomaly_model",
            "mlcore.pipelines.train_anomaly_model",
            "IsolationForest on a reference window, gated against DBSCAN -> MLflow ride_anomaly_model",
            requires=("anomaly.input_table",),
            registers=("anomaly.model_name",),
        ),
        JobSpec(
            "score_anomalies",
            "mlcore.pipelines.score_anomalies",
            "Champion ride_anomaly_model scores rides -> Delta ride_anomaly_scores (+ quarantine)",
            requires=("anomaly.input_table",),
            produces=("ride_anomaly_scores", "ride_anomaly_scores_quarantine"),
            serves=("anomaly.model_name",),
        ),
        JobSpec(
            "score_batch",
            "mlcore.pipelines.score_batch",
            "score_classifier and score_anomalies concurrently in one Spark application",
            parts=("score_classifier", "score_anomalies"),
            partial=True,
        ),
        JobSpec(
            "monitor_drift",
            "mlcore.pipelines.monitor_drift",
            "PSI/KS/chi-square drift vs each model's reference, realised forecast WAPE -> Delta drift_metrics",
            produces=("drift_metrics",),
            reads=(
                "classification.input_table",
                "classification.output_table",
                "anomaly.input_table",
                "sales",
                "forecasts",
            ),
            partial=True,
        ),
        JobSpec(
            "validate_inputs",
            "mlcore.pipelines.validate_inputs",
            "Validation rules of validation.tables on the input tables -> Delta validation_results",
            produces=("validation_results",),
            reads=("validation.input_tables",),
            partial=True,
            gate=True,
        ),
        JobSpec(
            "run_pipeline",
            "mlcore.pipelines.run_pipeline",
            "The nightly chain with gates; retrains only what needs it; resumable -> Delta run_manifest",
        ),
    )
}


def declared_tables(names: tuple[str, ...], config: MlcoreConfig) -> list[str]:
    """Logical table names, config keys (``section.key``) resolved through ``config`` (a key
    may name a list of tables)."""
    tables: list[str] = []
    for name in names:
        if "." not in name:
            tables.append(name)
            continue
        section, key = name.split(".", 1)
        value = getattr(getattr(config, section), key)
        if isinstance(value, (list, tuple)):
            tables.extend(str(v) for v in value)
        else:
            tables.append(str(value))
    return list(dict.fromkeys(tables))


def declared_io_lines(spec: JobSpec) -> list[str]:
    """What a job reads and writes, for its ``--help`` (config keys shown as keys: their value
    depends on the env)."""
    writes = f"writes ({WRITE_MODES[spec.write_mode]})"
    rows = [
        ("needs", spec.requires), ("reads if present", spec.reads), (writes, spec.produces),
        ("writes when configured", spec.may_produce), ("registers", spec.registers),
        ("uses the champion of", spec.serves), ("runs", spec.parts),
    ]  # fmt: skip
    return [f"{label}: {', '.join(names)}" for label, names in rows if names]


WRITE_MODES = {
    "run_date": "this run date's rows replaced, idempotent per run date",
    "snapshot": "whole table replaced by the source's snapshot, idempotent per run date",
}


def published_tables(job: str, config: MlcoreConfig) -> list[str]:
    """Every table ``job``'s stage may return for the runner to publish, in declared order."""
    spec = JOBS[job]
    return declared_tables((*spec.produces, *spec.may_produce), config)


def model_artifact(name: str) -> str:
    """How a registered model appears among a step's inputs and outputs (beside table names)."""
    return f"model:{name}"


def _artifacts(
    job: str, config: MlcoreConfig, tables: tuple[str, ...], models: tuple[str, ...]
) -> set[str]:
    """The named JobSpec fields' tables and models of ``job`` and of its parts."""
    spec = JOBS[job]
    found = set(declared_tables(sum((getattr(spec, f) for f in tables), ()), config))
    found |= {model_artifact(m) for f in models for m in declared_tables(getattr(spec, f), config)}
    for part in spec.parts:
        found |= _artifacts(part, config, tables, models)
    return found


def step_inputs(job: str, config: MlcoreConfig) -> set[str]:
    """Every table and model ``job`` reads (its parts' too): what the nightly chain checks
    against what earlier steps failed to produce."""
    return _artifacts(job, config, ("requires", "reads"), ("serves",))


def step_needs(job: str, config: MlcoreConfig) -> set[str]:
    """The tables and models ``job`` cannot run without (its parts' too)."""
    return _artifacts(job, config, ("requires",), ("serves",))


def step_outputs(job: str, config: MlcoreConfig) -> set[str]:
    """Every table ``job`` writes and model it registers (its parts' too)."""
    return _artifacts(job, config, ("produces", "may_produce"), ("registers",))


def writer_of(table: str, config: MlcoreConfig) -> str | None:
    """The job that writes ``table`` under ``config``, if one does."""
    for spec in JOBS.values():
        if table in declared_tables((*spec.produces, *spec.may_produce), config):
            return spec.name
    return None


def _local_table(table: str, config: MlcoreConfig) -> Path | None:
    """The local folder of a declared table, None where it cannot be checked without the
    engine (a catalog or object-store table) or its config is bad (the loader and the job
    report that in their own words)."""
    from mlcore.io.tables import local_path, resolve_table

    try:
        return local_path(resolve_table(config, table))
    except (KeyError, ValueError):
        return None


def missing_input(job: str, config: MlcoreConfig) -> str | None:
    """One line for the first table ``job`` needs that does not exist, else None. Checked
    without Spark where the table is a local path (a catalog or object-store table is checked
    by the engine when the job reads it)."""
    for table in declared_tables(JOBS[job].requires, config):
        path = _local_table(table, config)
        if path is not None and not (path / "_delta_log").is_dir():
            writer = writer_of(table, config)
            hint = f": run {writer} first" if writer else ""
            return f"input table {table!r} does not exist at {path}{hint}"
    return None


def outputs_published(job: str, config: MlcoreConfig, run_date: date) -> bool | None:
    """Whether every table ``job`` declares it writes already holds this run date's publication
    at the configured revision (its idempotency token in the Delta log, read with delta-rs, no
    Spark): a rerun would then write nothing. None when the job declares no tables or one
    cannot be read here (a catalog or object-store table)."""
    from mlcore.io.tables import WriteToken

    tables = declared_tables(JOBS[job].produces, config)
    if not tables:
        return None
    for table in tables:
        path = _local_table(table, config)
        if path is None:
            return None
        if not (path / "_delta_log").is_dir():
            return False
        token = WriteToken.for_job(job, run_date, config.run.revision, table)
        try:
            from deltalake import DeltaTable

            applied = DeltaTable(str(path)).transaction_version(token.app_id)
        except Exception:  # noqa: BLE001 - unreadable here: the engine will say why
            return None
        if applied is None or applied < token.version:
            return False
    return True
