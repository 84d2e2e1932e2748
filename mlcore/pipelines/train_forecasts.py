"""train_forecasts: one model per group from the configured families, backtested, stored, registered.

Reads ``sales`` strictly before the run date (plus the planned calendar of the days after it, for
the shared features: :mod:`mlcore.pipelines._calendar`), adds the shared features inside the
grouped stage, trains every group with a grouped Arrow/pandas UDF (pure per-group function: rolling
backtests of every family, selection, final fit; one status row per group), then on the driver: checks the failure budget and
returns ``forecast_models`` / ``forecast_metrics`` / ``forecast_backtest`` and a
``store_forecaster`` candidate. The runner publishes the tables (one partition per run date,
idempotent), then registers the candidate with the written versions in its tags (challenger;
champion when no worse than the current champion on the same groups).
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, astuple
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcore.config.errors import ConfigError
from mlcore.forecasting.distributed import (
    GroupFaults,
    fingerprint_groups,
    group_partitions,
    train_groups,
)
from mlcore.forecasting.families import check_families, configured_families
from mlcore.forecasting.features import calendar_columns
from mlcore.forecasting.plots import backtest_plot
from mlcore.forecasting.promotion import GateComparison, compare_on_common_groups
from mlcore.forecasting.report import drawn_examples, forecast_report_html
from mlcore.forecasting.results import (
    NESTED,
    CollectedResults,
    aggregate_metrics,
    collect_results,
    pooled_metrics,
)
from mlcore.forecasting.retrain import groups_to_keep, kept_rows
from mlcore.io.faults import forecast_group_faults
from mlcore.pipelines._calendar import featurizer, lookahead, planned_calendar
from mlcore.pipelines._models import replayed_candidate
from mlcore.pipelines._progress import StageReporter
from mlcore.pipelines._validation import check_inputs
from mlcore.pipelines.context import JobContext, JobFailed, JobSummary, TableOutput
from mlcore.spark_classic import default_parallelism
from mlcore.tracking.candidates import ModelCandidate, PyfuncModel

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

MODELS, METRICS, BACKTEST = "forecast_models", "forecast_metrics", "forecast_backtest"


def select_history(ctx: JobContext) -> tuple[DataFrame, list[Any]]:
    """Training input: rows strictly before the run date, limited to the first N groups."""
    from pyspark.sql import functions as F

    fc = ctx.config.forecasting
    sales = check_inputs(ctx, {"sales": ctx.tables.read("sales")})["sales"]
    wanted = {fc.date_column, fc.target_column, *fc.group_keys, *calendar_columns(fc)}
    missing = sorted(wanted - set(sales.columns))
    if missing:
        raise JobFailed(f"sales table lacks columns {missing} needed by forecasting config")
    history = sales.select(*sorted(wanted)).filter(F.col(fc.date_column) < F.lit(ctx.run_date))
    keys = history.select(*fc.group_keys).distinct().orderBy(*fc.group_keys)
    if fc.limit_groups is not None:
        keys = keys.limit(fc.limit_groups)
    key_rows = [tuple(r) for r in keys.collect()]
    if not key_rows:
        raise JobFailed(f"no sales history before {ctx.run_date}")
    if fc.limit_groups is not None:
        key_df = ctx.spark.createDataFrame(key_rows, keys.schema)
        history = history.join(F.broadcast(key_df), fc.group_keys)
    return history, key_rows


def with_lookahead(ctx: JobContext, history: DataFrame) -> DataFrame:
    """The history plus the planned calendar of the days just after it (target null): the
    last days' days-until features read them; the featurizer drops the rows again."""
    planned = planned_calendar(ctx, ctx.run_date, ctx.run_date + lookahead(ctx))
    if planned is None:
        return history
    present = [c for c in planned.columns if c in history.columns]
    return history.unionByName(planned.select(*present), allowMissingColumns=True)


def latest_models(ctx: JobContext) -> DataFrame | None:
    """Each group's most recent trained model from earlier run dates (None if there is none)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not ctx.tables.exists(MODELS):
        return None
    keys = ctx.config.forecasting.group_keys
    models = ctx.tables.read(MODELS).filter(
        (F.col("run_date") < F.lit(ctx.run_date)) & F.col("model_json").isNotNull()
    )
    order = Window.partitionBy(*keys).orderBy(F.col("run_date").desc())
    return models.withColumn("_rank", F.row_number().over(order)).filter("_rank = 1").drop("_rank")


def model_rows(ctx: JobContext, results: DataFrame) -> DataFrame:
    """``forecast_models`` rows: the per-group results without the nested backtest columns."""
    from pyspark.sql import functions as F

    models = results.drop(*NESTED).withColumn(
        "model_name", F.lit(ctx.config.forecasting.model_name)
    )
    return ctx.stamp(models.withColumn("created_at", F.current_timestamp()))


def exploded_outputs(ctx: JobContext, collected: CollectedResults) -> dict[str, DataFrame]:
    """``forecast_metrics`` and ``forecast_backtest`` rows: the exploded arrays of every group
    (keys, the array's fields, ``is_champion``, the run columns), written by the executors."""
    from pyspark.sql import functions as F

    keys = list(ctx.config.forecasting.group_keys)
    out = {}
    for name, frame in ((METRICS, collected.metrics), (BACKTEST, collected.points)):
        fields = [c for c in frame.columns if c not in (*keys, "champion", "action")]
        out[name] = frame.select(
            *keys, *fields, (F.col("model") == F.col("champion")).alias("is_champion")
        ).withColumns({"run_id": F.lit(ctx.run_id), "run_date": F.lit(ctx.run_date)})
    return out


def shown_points(
    ctx: JobContext, collected: CollectedResults, keys: list[str], plot_groups: int
) -> pd.DataFrame:
    """The backtest points of the groups the plot and the report draw (the first
    ``plot_groups`` trained groups; the best, median, p90 and worst by WAPE): a few hundred
    rows collected, whatever the number of groups."""
    import pandas as pd
    from pyspark.sql import functions as F

    groups = collected.groups
    drawn = groups[groups["status"].isin(["ok", "fallback"])].sort_values(keys).head(max(plot_groups, 0))
    trained = groups[groups["action"] == "trained"].dropna(subset=["champion_wape"])
    wanted = pd.concat([drawn[keys], drawn_examples(trained, keys, REPORT_EXAMPLES)[keys]])
    rows = wanted.drop_duplicates().astype(object).to_numpy().tolist()
    points = collected.points.drop("action")
    if not rows:
        return points.limit(0).toPandas()
    chosen = ctx.spark.createDataFrame(rows, points.select(*keys).schema)
    return points.join(F.broadcast(chosen), keys).toPandas()


def _model_code_file(module: Any) -> str:
    """A real file with the module's source (under spark-submit it is imported from a zip)."""
    import inspect

    path = Path(module.__file__)
    if path.is_file():
        return str(path)
    target = Path(tempfile.mkdtemp(prefix="mlcore_model_code_")) / path.name
    target.write_text(inspect.getsource(module), encoding="utf-8")
    return str(target)


BACKTEST_VERSION_TAG = "mlcore.forecast_backtest_version"
REPORT_EXAMPLES = 4  # the groups the report draws (forecast_report_html: example_groups)


def champion_comparison(ctx: JobContext, challenger: DataFrame) -> GateComparison | None:
    """This run's champion points (``challenger``: keys, y, yhat) against the registered
    champion's own backtest points on the groups both backtested. The champion's points are
    read at the ``forecast_backtest`` version it recorded, else that run date's rows as the
    table holds them now; measured now, before this run publishes. None when there is no
    champion or nothing to read."""
    from pyspark.sql import functions as F

    from mlcore.tracking.registry import ModelRegistry
    from mlcore.tracking.runs import TAG_RUN_DATE

    fc = ctx.config.forecasting
    if not ctx.config.mlflow.enabled or not ctx.tables.exists(BACKTEST):
        return None
    champion = ModelRegistry().champion(fc.model_name)
    if champion is None or TAG_RUN_DATE not in champion.tags:
        return None
    trained_on = champion.tags[TAG_RUN_DATE]
    version = champion.tags.get(BACKTEST_VERSION_TAG)
    keys = list(fc.group_keys)
    where = {"run_date": dt.date.fromisoformat(trained_on)}
    for at in ([int(version)] if version else []) + [None]:
        try:  # the recorded version may have been vacuumed away: then the rows as they are now
            rows = ctx.tables.read(BACKTEST, version=at, where=where, record_input=False)
            theirs = rows.filter(F.col("is_champion")).select(*keys, "y", "yhat")
            return compare_on_common_groups(challenger, theirs, keys, fc.promotion_metric)
        except Exception as exc:  # noqa: BLE001 - an unreadable version: try the next source
            log.warning("champion backtest unreadable at version %s: %s", at, exc)
    return None


def forecaster_candidate(
    ctx: JobContext, metric_value: float, comparison: GateComparison | None
) -> ModelCandidate:
    """The store_forecaster version serving this run's models: a pyfunc that reads
    ``forecast_models`` at the version this run writes, tagged with its pooled metric and the
    table versions it was built from; the gate compares ``comparison`` (both sides on the same
    groups) when there is a champion to compare with."""
    from mlcore.serving import store_forecaster
    from mlcore.serving.signature import forecaster_input_example, forecaster_signature
    from mlcore.tracking.registry import METRIC_TAG, gate_tags

    fc = ctx.config.forecasting
    stores = fc.features.stores_table if fc.features.enabled else None
    sales = ctx.tables.read("sales", record_input=False)
    column_types = {f.name: f.dataType.simpleString() for f in sales.schema.fields}
    first = sales.select(*fc.group_keys).limit(1).collect()
    example = forecaster_input_example(fc, first[0].asDict(), ctx.run_date) if first else None
    model = PyfuncModel(
        artifact_name="store_forecaster",
        code_path=_model_code_file(store_forecaster),
        model_config={
            "forecasting": asdict(fc),
            "table_uri": ctx.tables.ref(MODELS).uri,
            "table_version": None,  # the version this run writes (config_versions)
            "run_date": ctx.run_date.isoformat(),
            # the serving side of the shared features (mlcore.serving.store_forecaster)
            "calendar_uris": {
                name: ctx.tables.ref(name).uri for name in ("sales", "forecast_calendar")
            },
            "stores_uri": ctx.tables.ref(stores).uri if stores else None,
            "stores_version": ctx.tables.version(stores) if stores else None,
        },
        signature=forecaster_signature(fc, column_types),
        input_example=example,
        pip_requirements=("mlcore", "deltalake", "prophet", "lightgbm", "pandas", "pyarrow"),
        config_versions={"table_version": MODELS},
    )
    tags = {METRIC_TAG.format(fc.promotion_metric): f"{metric_value:.6f}"}
    gate: dict[str, Any] = {}
    if comparison is not None:
        tags.update(gate_tags(*astuple(comparison)))
        gate = {"champion_value": comparison.champion_value, "groups": comparison.groups}
    return ModelCandidate(
        fc.model_name,
        model,
        fc.promotion_metric,
        comparison.challenger_value if comparison is not None else metric_value,
        fc.promotion_tolerance,
        lower_is_better=True,
        tags=tags,
        version_tags={"mlcore.forecast_models_version": MODELS, BACKTEST_VERSION_TAG: BACKTEST},
        **gate,
    )


def drifted_groups(ctx: JobContext) -> DataFrame | None:
    """Groups that ``monitor_drift`` flagged (sales_per_store) for this run date, as key strings."""
    from pyspark.sql import functions as F

    from mlcore.pipelines.monitor_drift import drift_flags

    flags = drift_flags(ctx, ["sales_per_store"])
    if flags is None:
        return None
    return (
        flags.where(F.col("group_key").isNotNull())
        .select(F.col("group_key").alias("_group_key"))
        .distinct()
    )


def _published(ctx: JobContext, tokens: dict[str, Any]) -> bool:
    """True when every output and the registry version of this run already exist."""
    if not all(ctx.tables.already_written(name, token) for name, token in tokens.items()):
        return False
    if not ctx.config.mlflow.enabled:
        return True
    from mlcore.tracking.registry import ModelRegistry

    model_name = ctx.config.forecasting.model_name
    return ModelRegistry().version_for_run(model_name, ctx.run_id) is not None


def run(ctx: JobContext) -> JobSummary:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    fc = ctx.config.forecasting
    problems = check_families(fc)
    if problems:  # before any Spark work: a family that cannot be built is the config's fault
        raise ConfigError("; ".join(problems))
    keys = list(fc.group_keys)
    summary = JobSummary()
    tokens = {name: ctx.token(name) for name in (MODELS, METRICS, BACKTEST)}
    if not ctx.dry_run and _published(ctx, tokens):
        summary.add("status", "already published for this run date: nothing to do")
        # The aliases may not have moved (driver lost after registering): the gate is re-applied
        # from the version's stored metric; a no-op when they already did.
        replay = replayed_candidate(
            ctx, summary, fc.model_name, fc.promotion_metric, fc.promotion_tolerance,
            lower_is_better=True,
        )  # fmt: skip
        if replay is not None:
            summary.candidates.append(replay)
        return summary

    started = time.perf_counter()
    history, key_rows = select_history(ctx)
    total = len(key_rows)
    previous = latest_models(ctx) if (fc.warm_start or fc.only_changed or fc.only_needed) else None
    kept = unchanged = None
    to_train = history
    if fc.only_changed and previous is not None:
        fingerprints = fingerprint_groups(history, fc, ctx.run_date)
        unchanged = (
            fingerprints.join(
                previous.select(*keys, F.col("data_fingerprint").alias("_previous_fp")), keys
            )
            .filter(F.col("data_fingerprint") == F.col("_previous_fp"))
            .select(*keys)
        )
        unchanged = unchanged.persist()
        kept = previous.join(unchanged, keys, "left_semi")
        to_train = history.join(unchanged, keys, "left_anti")
    elif fc.only_needed and previous is not None:
        unchanged = groups_to_keep(
            history, previous, ctx.config.forecasting, ctx.run_date, drifted_groups(ctx)
        ).persist()
        kept = previous.join(unchanged, keys)
        to_train = history.join(unchanged.select(*keys), keys, "left_anti")

    parallelism = default_parallelism(ctx.spark)
    partitions = group_partitions(parallelism, fc, total)
    faults = GroupFaults(*forecast_group_faults())  # a test's plan; none in production
    features = featurizer(ctx, None, ctx.run_date)
    if features is not None:
        to_train = with_lookahead(ctx, to_train)
    results = train_groups(to_train, fc, ctx.run_date, partitions, previous, faults, features)
    results = results.withColumn("action", F.lit("trained")).withColumn(
        "trained_run_date", F.lit(ctx.run_date)
    )
    if kept is not None:
        results = results.unionByName(kept_rows(kept, results, keys))

    with StageReporter(ctx.spark, "training", total, "groups"):
        # On disk only: each row carries its fitted models' JSON (~100-150 KB a series with the
        # default LightGBM), so at 30,000 series the in-memory columnar cache outgrew a 4 GB
        # local heap (OutOfMemoryError while building it). Later reads are sequential scans.
        results = results.persist(StorageLevel.DISK_ONLY)
        trained = results.filter("action = 'trained'").count()
    train_seconds = time.perf_counter() - started
    collected = collect_results(results, keys)
    groups = collected.groups
    trained_points = collected.points.filter(F.col("action") == "trained")
    statuses = groups["status"].value_counts().to_dict()
    failed = statuses.get("failed", 0)
    summary.add("groups", total, metric="groups_total")
    summary.add("groups trained", trained, metric="groups_trained")
    if kept is not None:
        label = (
            "groups kept (no retrain needed)"
            if fc.only_needed and not fc.only_changed
            else "groups kept (input unchanged)"
        )
        summary.add(label, total - trained, metric="groups_kept")
    for status in ("ok", "fallback", "skipped", "failed"):
        summary.add(f"status {status}", statuses.get(status, 0), metric=f"groups_{status}")
    summary.metrics["groups_per_second"] = trained / train_seconds if train_seconds else 0.0
    summary.add("groups/s (training stage)", f"{summary.metrics['groups_per_second']:.2f}")

    failures = groups[groups["status"].isin(["failed", "fallback", "skipped"])]
    failures = failures.sort_values(keys)[
        [*keys, "status", "status_reason", "error_class", "error_message"]
    ]
    ctx.artifacts["failures.csv"] = failures.to_csv(index=False)
    if trained and failed / trained > fc.failure_budget:
        results.unpersist()
        raise JobFailed(
            f"{failed} of {trained} groups failed ({failed / trained:.1%} > failure budget "
            f"{fc.failure_budget:.1%}); nothing published. See failures.csv in the MLflow run"
        )

    trained_groups = groups[groups["action"] == "trained"]
    aggregates = aggregate_metrics(trained_groups, pooled_metrics(trained_points) if trained else {})
    summary.metrics.update(aggregates)
    families = configured_families(fc)
    for name in families:
        summary.add(f"champion {name.replace('_', ' ')}", int(aggregates.get(f"champion_{name}", 0)))
    for metric in ("wape", "rmspe"):
        for model in ("champion", *families):
            key = f"pooled_{metric}_{model}"
            if key in aggregates:
                summary.add(f"pooled {metric.upper()} {model}", f"{aggregates[key]:.4f}")
    for metric in ("wape", "rmspe"):
        if f"{metric}_median" in aggregates:
            summary.add(
                f"median group {metric.upper()} (champion)", f"{aggregates[f'{metric}_median']:.4f}"
            )

    per_group = groups[
        [*keys, "status", "champion", "action", "trained_run_date", "train_rows", "fit_seconds"]
    ]
    ctx.artifacts["group_summary.csv"] = per_group.to_csv(index=False)
    # The gate compares this run with the champion on the groups both backtested: the
    # champion's points are read now, before this run's rows replace a same-date partition.
    challenger_points = trained_points.filter(F.col("model") == F.col("champion"))
    comparison = champion_comparison(ctx, challenger_points.select(*keys, "y", "yhat"))
    points = shown_points(ctx, collected, keys, fc.plot_groups)
    # The plot and the report render on a driver thread while the runner writes the tables
    # (executor and delta-rs work that leaves the driver's interpreter mostly waiting): ~1 s
    # off the job at any scale. The runner collects them after the writes.
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlcore-plot")
    summary.pending_files["plots"] = background.submit(
        backtest_plot, groups, points, keys, fc.plot_groups, fc.target_column
    )
    summary.pending_text["reports/forecast_report.html"] = background.submit(
        forecast_report_html, groups, points, keys, aggregates, ctx.run_date, fc.model_name,
        fc.target_column,
    )  # fmt: skip
    background.shutdown(wait=False)  # the thread ends with its last task
    # forecast_models written before content hashes gains those columns: merge_schema
    summary.outputs[MODELS] = TableOutput(model_rows(ctx, results), merge_schema=True)
    for name, frame in exploded_outputs(ctx, collected).items():
        summary.outputs[name] = TableOutput(frame)
    summary.cached.extend(f for f in (results, unchanged) if f is not None)

    metric_key = f"pooled_{fc.promotion_metric}_champion"
    if metric_key in aggregates and ctx.config.mlflow.enabled:
        summary.candidates.append(forecaster_candidate(ctx, aggregates[metric_key], comparison))
    return summary
