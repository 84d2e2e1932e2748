"""What a pipeline receives from the job runner, and what it returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from mlcore.config.models import MlcoreConfig
from mlcore.errors import JobFailed, MlcoreError

__all__ = [
    "JobContext",
    "JobFailed",
    "JobRequest",
    "JobResult",
    "JobSummary",
    "TableOutput",
]  # JobFailed: the pipelines raise it from here
from mlcore.io.engines import WriteResult
from mlcore.io.tables import WriteToken

if TYPE_CHECKING:
    from concurrent.futures import Future

    from pyspark.sql import Column, DataFrame, SparkSession

    from mlcore.io.delta import TableReader
    from mlcore.io.transform import ArrowTransform
    from mlcore.tracking.candidates import ModelCandidate


@dataclass
class JobContext:
    """Everything one job run needs; built on the driver by ``mlcore.runner``."""

    job: str
    config: MlcoreConfig
    spark: SparkSession
    tables: TableReader  # read-only: the runner alone writes
    run_date: date
    run_id: str
    dry_run: bool = False
    overrides: tuple[str, ...] = ()  # the run's --set values (run_pipeline passes them on)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> text, logged by the runner
    # MLflow artifact path (``plots/roc_curve.png``) -> local file of the same name
    artifact_files: dict[str, str] = field(default_factory=dict)
    # Input validation (mlcore.pipelines._validation): results, flagged rows, problems found.
    validation: list[Any] = field(default_factory=list)
    quarantine: list[tuple[str, Any]] = field(default_factory=list)
    validation_problems: list[str] = field(default_factory=list)
    # Set for the steps of a nightly chain: the chain's run id (in every step's run_manifest
    # row), the inputs an earlier step failed to produce tonight (table -> why; a step that can
    # work on part of its inputs leaves those out), and how the chain runs a step.
    pipeline_run_id: str | None = None
    blocked: Mapping[str, str] = field(default_factory=dict)
    run_step: Callable[[JobRequest], JobResult] | None = None
    # How a composite job (score_batch) runs one of its parts: the part's stage, then the
    # runner's publication of its outputs, in the caller's thread.
    run_part: Callable[[JobContext], JobSummary] | None = None

    def token(self, part: str = "") -> WriteToken:
        """Idempotency token for this job's writes for this run date (and config revision)."""
        return WriteToken.for_job(self.job, self.run_date, self.config.run.revision, part)

    def output_columns(self) -> dict[str, Any]:
        """Values every output row carries: the run id and the run date."""
        return {"run_id": self.run_id, "run_date": self.run_date}

    def run_columns(self) -> list[Column]:
        """:meth:`output_columns` as Spark literal columns (``run_id``, ``run_date``), to stamp a
        DataFrame's rows: ``df.select("*", *ctx.run_columns())``."""
        from pyspark.sql import functions as F

        return [F.lit(value).alias(name) for name, value in self.output_columns().items()]

    def stamp(self, frame: DataFrame) -> DataFrame:
        """``frame`` with the run columns set (added at the end, or replaced where present)."""
        from pyspark.sql import functions as F

        return frame.withColumns(
            {name: F.lit(value) for name, value in self.output_columns().items()}
        )


@dataclass
class TableOutput:
    """One output table of a stage, as the runner publishes it (``JobSpec.write_mode``: this
    run date's partition by replace-where, or the whole table as a snapshot; the job's
    idempotency token either way).

    ``frame`` gets the run columns from the runner (set where the stage placed them, appended
    otherwise). ``transform``: a per-partition Arrow transform the write applies (a fused
    scoring write; it must append the run columns itself, see ``JobContext.output_columns``).
    ``totals``: numeric columns summed over what was written. ``rows_line`` / ``total_lines``:
    the summary label and metric for the rows written and for each total, counted from the
    write (or the written version) so that they describe the table, not a recomputation.
    ``expected_rows``: a count the write must match (the rows validation counted).
    ``progress``: the label of the write's progress line where the write is the long stage
    (a fused scoring pass). ``spark_conf``: session settings for the duration of the write."""

    frame: DataFrame
    transform: ArrowTransform | None = None
    totals: tuple[str, ...] = ()
    merge_schema: bool = False
    expected_rows: int | None = None
    rows_line: tuple[str, str] | None = None
    total_lines: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    progress: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)


@dataclass
class JobSummary:
    """What a stage returns: metrics (logged to MLflow), rows for the closing table, the
    outputs the runner publishes (in order) after the stage returns and the models it then
    registers; ``writes`` are the results of those writes, filled in by the runner."""

    metrics: dict[str, float] = field(default_factory=dict)
    lines: list[tuple[str, str]] = field(default_factory=list)
    outputs: dict[str, TableOutput] = field(default_factory=dict)
    # Cached frames the outputs are computed from: released once they are published.
    cached: list[DataFrame] = field(default_factory=list)
    # Artifacts still rendering on a stage's thread while the runner writes: MLflow name ->
    # text, and MLflow folder -> local file (None: nothing drawn).
    pending_text: dict[str, Future[str]] = field(default_factory=dict)
    pending_files: dict[str, Future[str | None]] = field(default_factory=dict)
    # Models to register and gate, by the runner, once the outputs are written.
    candidates: list[ModelCandidate] = field(default_factory=list)
    writes: list[WriteResult] = field(default_factory=list)
    # Lineage for run_manifest: models used or produced, and gate outcomes (gate -> outcome).
    models: list[dict[str, Any]] = field(default_factory=list)
    gates: dict[str, str] = field(default_factory=dict)

    def use_model(self, name: str, version: Any, role: str, run_id: str | None = None) -> None:
        """Record a registered model version this run ``used`` (scoring) or ``produced``."""
        entry = {"name": name, "version": str(version), "role": role, "run_id": run_id}
        if entry not in self.models:
            self.models.append(entry)

    def add(self, label: str, value: Any, metric: str | None = None) -> None:
        self.lines.append((label, f"{value:,}" if isinstance(value, int) else str(value)))
        if metric is not None and isinstance(value, (int, float)):
            self.metrics[metric] = float(value)


@dataclass(frozen=True)
class JobRequest:
    """One job run, as the runner takes it from the command line or from the nightly chain:
    typed values, not argv (the chain passes its loaded config and run date as they are)."""

    job: str
    config: MlcoreConfig
    run_date: date
    overrides: tuple[str, ...] = ()  # the --set values that made ``config`` (recorded, passed on)
    dry_run: bool = False
    pipeline_run_id: str | None = None
    blocked: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class JobResult:
    """How a job run ended: its exit code, its summary when it finished, the expected error
    that stopped it (None for success or a crash), and the one-line reason when it failed."""

    exit_code: int
    summary: JobSummary | None = None
    error: MlcoreError | None = None
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def why_blocked(blocking: Mapping[str, str]) -> str:
    """``needs rides (ingest_rides failed), ...``: what a held-back step or scorer lacks tonight
    and the first cause of each (three named, the rest counted)."""
    shown = [f"{artifact} ({reason})" for artifact, reason in sorted(blocking.items())[:3]]
    more = f" +{len(blocking) - 3} more" if len(blocking) > 3 else ""
    return "needs " + ", ".join(shown) + more
