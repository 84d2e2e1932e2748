"""The nightly chain as a DAG of independent workloads, on a recording step executor (no Spark,
no MLflow): which steps run, which are held back and why, what each step is told is missing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest

from mlcore.config.loader import ConfigError
from mlcore.errors import JobFailed
from mlcore.pipelines import run_pipeline
from mlcore.pipelines.context import JobContext, JobRequest, JobResult
from mlcore.pipelines.run_pipeline import chain_graph

RUN_DATE = dt.date(2015, 7, 1)
# Every workload of the default chain; MLflow off, so the gated trainings always run (no champion).
OVERRIDES = ("mlflow.enabled=false",)


class NoTables:
    """A lake with no run_manifest yet (nothing to resume)."""

    engine_name = "delta-rs"

    def exists(self, table: str) -> bool:
        return False


@dataclass
class Executor:
    """Records each request; steps in ``failing`` fail (with ``affects`` where given)."""

    failing: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    requests: list[JobRequest] = field(default_factory=list)

    def __call__(self, request: JobRequest) -> JobResult:
        self.requests.append(request)
        if request.job in self.failing:
            error = JobFailed(f"{request.job} broke", affects=self.failing[request.job])
            return JobResult(1, error=error, reason=str(error))
        return JobResult(0)

    def ran(self) -> list[str]:
        return [r.job for r in self.requests]

    def request(self, job: str) -> JobRequest:
        return next(r for r in self.requests if r.job == job)


def chain_context(config, executor: Executor) -> JobContext:
    return JobContext(
        job="run_pipeline", config=config, spark=None, tables=NoTables(),  # type: ignore[arg-type]
        run_date=RUN_DATE, run_id="chain-run", overrides=OVERRIDES, run_step=executor,
    )  # fmt: skip


def test_the_default_chain_is_a_dag_of_its_declared_io(make_config):
    config = make_config(*OVERRIDES)
    graph = {node.step: node for node in chain_graph(list(config.pipeline.steps), config)}
    assert graph["ingest_sales"].after == ()
    assert set(graph["validate_inputs"].after) == {"ingest_sales", "ingest_bank", "ingest_rides"}
    # train_forecasts reads monitor_drift's per-store flags (which groups to refit).
    assert set(graph["train_forecasts"].after) == {"ingest_sales", "validate_inputs", "monitor_drift"}
    assert set(graph["make_forecasts"].after) == {"ingest_sales", "validate_inputs", "train_forecasts"}
    assert set(graph["train_classifier"].after) == {"ingest_bank", "validate_inputs", "monitor_drift"}
    assert set(graph["detect_anomalies"].after) == {"ingest_rides", "validate_inputs"}
    assert set(graph["score_batch"].after) == {
        "ingest_bank", "ingest_rides", "validate_inputs", "train_classifier", "train_anomaly_model",
    }  # fmt: skip
    assert "model:bank_classifier" in graph["score_batch"].inputs


def test_a_failed_workload_holds_back_only_the_steps_that_need_it(make_config):
    config = make_config(*OVERRIDES)
    executor = Executor(failing={"ingest_rides": None, "validate_inputs": ("rides",)})
    with pytest.raises(JobFailed) as failure:
        run_pipeline.run(chain_context(config, executor))

    # Everything that does not need rides ran, in the configured order.
    assert executor.ran() == [
        "ingest_sales", "ingest_bank", "ingest_rides", "validate_inputs", "monitor_drift",
        "train_forecasts", "train_classifier", "make_forecasts", "score_batch",
    ]  # fmt: skip
    # The steps that can leave part of their inputs out were told what is missing and why.
    assert dict(executor.request("validate_inputs").blocked) == {"rides": "ingest_rides failed"}
    assert set(executor.request("score_batch").blocked) == {"rides", "model:ride_anomaly_model"}
    assert dict(executor.request("train_forecasts").blocked) == {}
    # Typed requests: the chain's config, run date and run id, no argv.
    assert all(r.run_date == RUN_DATE and r.pipeline_run_id == "chain-run" for r in executor.requests)
    assert executor.request("ingest_sales").config is config

    message = str(failure.value)
    assert "step ingest_rides failed" in message and "step validate_inputs failed" in message
    assert "blocked by them: detect_anomalies, train_anomaly_model" in message
    assert "rerun run_pipeline for 2015-07-01 to resume" in message
    gates = failure.value.summary.gates
    assert gates["step:detect_anomalies"].startswith("blocked: needs rides (ingest_rides failed)")
    assert gates["step:train_anomaly_model"].startswith("blocked: needs rides")
    assert gates["step:train_forecasts"].startswith("succeeded")
    assert "left out model:ride_anomaly_model, rides" in gates["step:score_batch"]
    assert failure.value.summary.metrics["steps_failed"] == 2.0
    assert failure.value.summary.metrics["steps_blocked"] == 2.0


def test_a_failed_training_blocks_its_scoring_but_not_the_other_workloads(make_config):
    config = make_config(*OVERRIDES)
    executor = Executor(failing={"train_forecasts": None})
    with pytest.raises(JobFailed) as failure:
        run_pipeline.run(chain_context(config, executor))
    assert "make_forecasts" not in executor.ran()
    assert {"train_classifier", "detect_anomalies", "train_anomaly_model", "score_batch"} <= set(
        executor.ran()
    )
    assert "blocked by them: make_forecasts" in str(failure.value)


def test_a_step_with_all_its_inputs_missing_is_held_back_even_if_it_takes_part(make_config):
    config = make_config(*OVERRIDES, "pipeline.steps=[ingest_bank,validate_inputs]",
                         "validation.input_tables=[bank]")  # fmt: skip
    executor = Executor(failing={"ingest_bank": None})
    with pytest.raises(JobFailed, match="blocked by them: validate_inputs"):
        run_pipeline.run(chain_context(config, executor))
    assert executor.ran() == ["ingest_bank"]


def test_all_succeeding_returns_the_step_outcomes(make_config):
    config = make_config(*OVERRIDES)
    executor = Executor()
    summary = run_pipeline.run(chain_context(config, executor))
    assert executor.ran() == list(config.pipeline.steps)
    assert summary.metrics["steps_run"] == float(len(config.pipeline.steps))
    assert summary.metrics["steps_failed"] == 0.0


def test_a_step_listed_before_the_one_that_writes_what_it_needs_is_a_config_error(make_config):
    config = make_config(*OVERRIDES, "pipeline.steps=[ingest_sales,make_forecasts,train_forecasts]")
    with pytest.raises(ConfigError, match="make_forecasts needs forecast_models, which "
                       "train_forecasts writes later in the chain"):  # fmt: skip
        run_pipeline.run(chain_context(config, Executor()))
