"""MLflow runs for jobs (driver only).

One MLflow run per (job, env, run date, revision): a rerun for the same run date resumes the
same run instead of creating a duplicate, so output rows keep a stable ``run_id``. The embedded
default is a sqlite store and artifact folder under ``$MLCORE_HOME/mlflow``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from mlcore._version import __version__
from mlcore.config.models import MlcoreConfig
from mlcore.errors import MlcoreError

log = logging.getLogger(__name__)

TAG_JOB = "mlcore.job"
TAG_ENV = "mlcore.env"
TAG_RUN_DATE = "mlcore.run_date"
TAG_REVISION = "mlcore.revision"
TAG_VERSION = "mlcore.version"
TAG_GIT_SHA = "mlcore.git_sha"
TAG_ENGINE = "mlcore.delta_engine"
TAG_ATTEMPTS = "mlcore.attempts"
# Seconds each attempt of a resumed run took (``mlcore.attempt.2.seconds``) and their sum.
TAG_ATTEMPT_SECONDS = "mlcore.attempt.{}.seconds"
TAG_WORK_SECONDS = "mlcore.work_seconds"
TAG_STATUS = "mlcore.status"
TAG_DRY_RUN = "mlcore.dry_run"
_MAX_PARAM_LENGTH = 6000


@dataclass(frozen=True)
class TrackingUris:
    tracking_uri: str
    registry_uri: str
    artifact_location: str | None


def resolve_uris(config: MlcoreConfig) -> TrackingUris:
    """Configured URIs, or the embedded sqlite store under ``$MLCORE_HOME/mlflow`` (created from
    the migrated template when it does not exist yet: :mod:`mlcore.tracking.store_template`)."""
    settings = config.mlflow
    root = Path(config.mlcore_home) / "mlflow"
    tracking = settings.tracking_uri
    artifacts = settings.artifact_location
    if tracking is None:
        from mlcore.tracking.store_template import seed_store

        root.mkdir(parents=True, exist_ok=True)
        seed_store(root / "mlflow.db")  # a fresh store skips MLflow's ~0.9 s of migrations
        tracking = f"sqlite:///{root / 'mlflow.db'}"
        artifacts = artifacts or (root / "artifacts").as_uri()
    registry = settings.registry_uri or tracking
    return TrackingUris(tracking, registry, artifacts)


def configure_mlflow(config: MlcoreConfig) -> TrackingUris:
    import mlflow

    uris = resolve_uris(config)
    mlflow.set_tracking_uri(uris.tracking_uri)
    mlflow.set_registry_uri(uris.registry_uri)
    return uris


class TrackingUnavailable(MlcoreError, RuntimeError):
    """The tracking server could not be reached within ``mlflow.request_timeout_seconds``."""


# MLflow's HTTP client retries 7 times with exponential backoff (factor 2, capped at 120 s) and
# a 120 s timeout per request: over 8 minutes against a server that is down. These bound it.
_RETRIES = 3  # backoff 1 + 2 + 4 s between the 4 attempts


def apply_client_settings(config: MlcoreConfig, environ: dict[str, str] | None = None) -> None:
    """Set MLflow's process settings from config before MLflow is imported: telemetry off unless
    ``mlflow.telemetry``, and HTTP retries and timeouts that fit ``request_timeout_seconds``.
    Values the user set in the environment win."""
    env = os.environ if environ is None else environ
    if not config.mlflow.telemetry:
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    bound = config.mlflow.request_timeout_seconds
    backoff = 2**_RETRIES - 1  # 1 + 2 + 4
    per_request = max(1, (bound - backoff - 2) // (_RETRIES + 1))
    env.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(_RETRIES))
    env.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    env.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5")
    env.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(per_request))


def check_tracking_server(config: MlcoreConfig) -> None:
    """Fail fast, before any Spark or table work, when a remote tracking server is unreachable.

    Only HTTP(S) stores are probed (the embedded sqlite store and Databricks are not). The probe
    is one MLflow call with the bounded retries of :func:`apply_client_settings`, on a thread
    joined with ``request_timeout_seconds`` as a hard limit.
    """
    if not config.mlflow.enabled:
        return
    uris = {config.mlflow.tracking_uri, config.mlflow.registry_uri} - {None}
    remote = sorted(u for u in uris if u and u.lower().startswith(("http://", "https://")))
    if not remote:
        return
    from mlcore.logging_setup import redact

    bound = config.mlflow.request_timeout_seconds
    errors: list[BaseException] = []

    def probe() -> None:
        try:
            from mlflow.tracking import MlflowClient

            for uri in remote:
                MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
        except BaseException as exc:  # noqa: BLE001 - reported in the calling thread
            errors.append(exc)

    thread = threading.Thread(target=probe, name="mlcore-mlflow-probe", daemon=True)
    thread.start()
    thread.join(bound)
    where = ", ".join(redact(u) for u in remote)
    if thread.is_alive():
        raise TrackingUnavailable(
            f"MLflow tracking server {where} did not answer within {bound} s "
            "(mlflow.request_timeout_seconds); nothing was run or published"
        )
    if errors:
        first = str(errors[0]).strip().splitlines()
        reason = f"{type(errors[0]).__name__}: {first[0][:300] if first else ''}"
        raise TrackingUnavailable(
            f"MLflow tracking server {where} is unreachable or failing ({redact(reason)}); "
            "nothing was run or published"
        )


def warm_tracking_store(config: MlcoreConfig) -> threading.Thread | None:
    """Start building the tracking and registry stores on a thread; join it before ``job_run``.

    The first MLflow call of a process imports MLflow's store modules and, on a fresh sqlite
    store, runs its schema migrations: ~2 s measured here (0.9 s imports, 1.0 s migrations),
    which can overlap the Spark session's start (a JVM launch under spark-submit). MLflow caches
    the store per URI, so ``job_run`` then finds it built. Errors are left for ``job_run`` to
    raise in the main thread.
    """
    if not config.mlflow.enabled:
        return None

    def build() -> None:
        try:
            from mlflow.tracking import MlflowClient

            uris = resolve_uris(config)
            client = MlflowClient(tracking_uri=uris.tracking_uri, registry_uri=uris.registry_uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        except Exception:  # noqa: BLE001 - job_run reports store problems in the main thread
            log.debug("tracking store warm-up failed; job_run will retry", exc_info=True)

    thread = threading.Thread(target=build, name="mlcore-mlflow-warmup", daemon=True)
    thread.start()
    return thread


def experiment_name(config: MlcoreConfig, job: str) -> str:
    return f"{config.mlflow.experiment_root.rstrip('/')}/{job}"


def git_sha(repo_root: Path | None = None) -> str | None:
    """The code version if known: ``MLCORE_GIT_SHA`` (set by deploy scripts) or git itself."""
    if os.environ.get("MLCORE_GIT_SHA"):
        return os.environ["MLCORE_GIT_SHA"]
    root = repo_root or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def deterministic_run_id(job: str, env: str, run_date: date, revision: int) -> str:
    """Run id used when MLflow is disabled: stable for the same job run identity."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"mlcore/{env}/{job}/{run_date}/{revision}").hex


def safe_params(flat: Mapping[str, Any]) -> dict[str, str]:
    """Flattened config as MLflow params: credential keys left out, secret values redacted."""
    from mlcore.logging_setup import is_secret_key, redact

    params = {}
    for key, value in flat.items():
        if is_secret_key(key):
            continue
        text = "" if value is None else redact(value)
        params[key] = text[:_MAX_PARAM_LENGTH]
    return params


def _clean(value: Any) -> str:
    from mlcore.logging_setup import redact

    return redact(value)


class JobRun:
    """Handle the runner passes around: the run id plus driver-side logging helpers."""

    def __init__(self, run_id: str, enabled: bool) -> None:
        self.run_id = run_id
        self.enabled = enabled

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.enabled:
            import mlflow

            mlflow.set_tags({k: _clean(v) for k, v in tags.items() if v is not None})

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        if self.enabled and metrics:
            import mlflow

            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})

    def log_params(self, params: Mapping[str, str]) -> None:
        if not self.enabled:
            return
        import mlflow

        params = {k: _clean(v) for k, v in params.items()}
        existing = mlflow.get_run(self.run_id).data.params
        fresh = {k: v for k, v in params.items() if k not in existing}
        changed = sorted(k for k, v in params.items() if k in existing and existing[k] != v)
        if changed:
            # MLflow params are immutable: a resumed run with different config says so loudly.
            log.warning("config changed since this run's first attempt: %s", ", ".join(changed))
            mlflow.set_tag("mlcore.config_changed_keys", ",".join(changed)[:5000])
        items = list(fresh.items())
        for start in range(0, len(items), 100):
            mlflow.log_params(dict(items[start : start + 100]))

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Log a file; text files (csv, yml, html, json...) are redacted on the way."""
        if not self.enabled:
            return
        import mlflow

        from mlcore.logging_setup import secret_values

        source = Path(path)
        secrets = [s.encode() for s in secret_values()]
        if source.is_file() and secrets and any(s in source.read_bytes() for s in secrets):
            mlflow.log_text(
                _clean(source.read_text(errors="replace")),
                f"{artifact_path or ''}/{source.name}".lstrip("/"),
            )
            return
        mlflow.log_artifact(path, artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_text(_clean(text), artifact_file)


# Settings that change how a job runs, not what it publishes: a rerun may differ in them.
_RUNTIME_ONLY = ("spark.", "mlflow.", "storage.delta_engine", "conf_dir", "mlcore_home")


def published_config_diff(
    config: MlcoreConfig, job: str, run_date: date, params: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    """``(key, published, now)`` for every setting that differs from the config this job
    published this run date and revision with (its MLflow run finished); empty when it has not
    published yet, or with the same config. ``params`` is this run's ``safe_params``."""
    if not config.mlflow.enabled:
        return []
    try:
        return _published_config_diff(config, job, run_date, params)
    except Exception:  # noqa: BLE001 - a failing server is the job's own check to report
        log.debug("could not compare with the published config", exc_info=True)
        return []


def _published_config_diff(
    config: MlcoreConfig, job: str, run_date: date, params: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    from mlflow.tracking import MlflowClient

    embedded = Path(config.mlcore_home) / "mlflow" / "mlflow.db"
    if config.mlflow.tracking_uri is None and not embedded.is_file():
        return []  # no local store yet: nothing published (and nothing created here)
    uris = configure_mlflow(config)
    client = MlflowClient(tracking_uri=uris.tracking_uri, registry_uri=uris.registry_uri)
    experiment = client.get_experiment_by_name(experiment_name(config, job))
    if experiment is None:
        return []
    identity = run_identity(job, config.env, run_date, config.run.revision)
    identity += f" AND tags.`{TAG_STATUS}` = 'finished'"
    found = client.search_runs([experiment.experiment_id], filter_string=identity, max_results=1)
    if not found or found[0].data.tags.get(TAG_DRY_RUN) == "True":
        return []  # nothing finished, or only a dry run (which publishes nothing)
    published = _published_params(client, found[0])
    return [
        (key, published[key], _clean(value))
        for key, value in sorted(params.items())
        if key in published and published[key] != _clean(value) and not key.startswith(_RUNTIME_ONLY)
    ]


def _published_params(client: Any, run: Any) -> dict[str, str]:
    """The config the run's finishing attempt ran with: its ``config/resolved.yml`` (written
    by every successful attempt; MLflow params keep the first attempt's values), else the
    params when the run had one attempt only, else nothing to compare."""
    import tempfile

    import yaml

    from mlcore.config.loader import config_as_flat_dict

    try:
        with tempfile.TemporaryDirectory(prefix="mlcore-published-") as folder:
            path = client.download_artifacts(run.info.run_id, "config/resolved.yml", folder)
            resolved = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return safe_params(config_as_flat_dict(resolved))
    except Exception:  # noqa: BLE001 - no artifact (an older run): fall back to the params
        log.debug("no resolved config for run %s", run.info.run_id, exc_info=True)
    return dict(run.data.params) if run.data.tags.get(TAG_ATTEMPTS, "1") == "1" else {}


def run_identity(job: str, env: str, run_date: date, revision: int) -> str:
    """The MLflow search filter for the one run of a job, env, run date and revision."""
    return (
        f"tags.`{TAG_JOB}` = '{job}' AND tags.`{TAG_ENV}` = '{env}' AND "
        f"tags.`{TAG_RUN_DATE}` = '{run_date.isoformat()}' AND tags.`{TAG_REVISION}` = '{revision}'"
    )


def run_name(job: str, run_date: date, revision: int) -> str:
    """``train_forecasts-2015-06-14``, and ``...-r2`` for a republished revision."""
    return f"{job}-{run_date.isoformat()}" + (f"-r{revision}" if revision != 1 else "")


@contextlib.contextmanager
def job_run(config: MlcoreConfig, job: str, run_date: date) -> Iterator[JobRun]:
    """Open (or resume) the MLflow run for this job run; close it FINISHED or FAILED."""
    from mlcore.config.loader import config_as_flat_dict
    from mlcore.logging_setup import register_config_secrets

    register_config_secrets(config_as_flat_dict(config))
    revision = config.run.revision
    if not config.mlflow.enabled:
        yield JobRun(deterministic_run_id(job, config.env, run_date, revision), enabled=False)
        return

    import mlflow
    from mlflow.tracking import MlflowClient

    uris = configure_mlflow(config)
    name = experiment_name(config, job)
    client = MlflowClient(tracking_uri=uris.tracking_uri, registry_uri=uris.registry_uri)
    experiment = client.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(name, artifact_location=uris.artifact_location)
    )
    identity = run_identity(job, config.env, run_date, revision)
    previous = client.search_runs([experiment_id], filter_string=identity, max_results=1)
    # A job started by run_pipeline (same process) nests under the pipeline's run.
    nested = mlflow.active_run() is not None
    worked = 0.0  # seconds of the earlier attempts
    if previous:
        run = mlflow.start_run(run_id=previous[0].info.run_id, nested=nested)
        attempts = int(previous[0].data.tags.get(TAG_ATTEMPTS, "1")) + 1
        worked = float(previous[0].data.tags.get(TAG_WORK_SECONDS, "0"))
    else:
        run = mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name(job, run_date, revision), nested=nested
        )
        attempts = 1
    started = time.monotonic()
    handle = JobRun(run.info.run_id, enabled=True)
    handle.set_tags(
        {
            TAG_JOB: job,
            TAG_ENV: config.env,
            TAG_RUN_DATE: run_date.isoformat(),
            TAG_REVISION: revision,
            TAG_VERSION: __version__,
            TAG_GIT_SHA: git_sha(),
            TAG_ATTEMPTS: attempts,
            TAG_STATUS: "running",
        }
    )
    status = "FAILED"
    try:
        yield handle
        status = "FINISHED"
    finally:
        seconds = time.monotonic() - started
        handle.set_tags({
            TAG_STATUS: status.lower(), TAG_ATTEMPT_SECONDS.format(attempts): f"{seconds:.1f}",
            TAG_WORK_SECONDS: f"{worked + seconds:.1f}",
        })  # fmt: skip
        mlflow.end_run(status=status)
        if attempts > 1:
            # A resumed run would show first start -> last end (hours between attempts) as its
            # duration: it ends at its start plus the attempts' own time instead; each attempt's
            # seconds are in its tags.
            try:
                start_ms = client.get_run(handle.run_id).info.start_time
                end_ms = start_ms + int((worked + seconds) * 1000)
                client.set_terminated(handle.run_id, status, end_time=end_ms)
            except Exception:  # noqa: BLE001 - cosmetic: never mask the job's own outcome
                log.debug("could not set the resumed run's end time", exc_info=True)
