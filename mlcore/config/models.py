"""Typed configuration objects.

Every section is a frozen dataclass so that a job receives validated, immutable values and
executor code only ever sees plain picklable data. The loader (``loader.py``) maps YAML onto
these classes field by field, so an unknown key or a wrong type fails before any work starts.
Adding a key means adding a field here: there is no free-form section except Spark conf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

DeltaEngineName = Literal["auto", "spark", "deltars"]
IfMissing = Literal["synthetic", "error"]
ScalarValue = str | int | float | bool


@dataclass(frozen=True)
class SparkConfig:
    """How to obtain the Spark session.

    ``master`` is only honoured for embedded local runs; under spark-submit or on Databricks the
    session comes from ``getOrCreate`` and the cluster decides.
    """

    master: str | None = None
    app_name_prefix: str = "mlcore"
    log_level: str = "WARN"
    conf: dict[str, ScalarValue] = field(default_factory=dict)
    # Embedded sessions load the cached Delta jars (mlcore.delta_jars) when they are there, so
    # storage.delta_engine auto runs native Delta; false never loads them.
    delta_jars: bool = True
    # A Spark Connect server (sc://host:port), as on Databricks serverless: the job is a Connect
    # client with no JVM of its own. $SPARK_REMOTE does the same; master is then ignored.
    remote: str | None = None


@dataclass(frozen=True)
class TableConfig:
    """Where a logical table lives.

    ``path`` is relative to ``storage.lake_root`` unless absolute or a URI. ``catalog_name``
    (``catalog.schema.table``) is used by the native Spark engine instead of a path when set.
    """

    path: str | None = None
    catalog_name: str | None = None
    partition_by: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StorageConfig:
    """Delta storage: lake root, engine choice, writer tuning."""

    lake_root: str = "{mlcore_home}/lake"
    delta_engine: DeltaEngineName = "auto"
    rows_per_row_group: int = 1_000_000
    max_rows_per_file: int = 5_000_000
    commit_retries: int = 1
    # Write leases (mlcore.io.write_leases): a writer on another machine whose heartbeat is older
    # than write_lease_timeout_seconds is dead, and the next write removes its orphan files.
    write_lease_timeout_seconds: int = 900
    write_lease_heartbeat_seconds: int = 30
    # ``catalog.schema`` (e.g. spark_catalog.mlcore): every table without its own catalog_name is
    # also registered in that Spark catalog schema as ``<catalog.schema>.<table>``, an external
    # table at its lake path (so path readers, delta-rs and the catalog see one table). Native
    # Delta only; the schema is created when missing.
    catalog_schema: str | None = None


@dataclass(frozen=True)
class MlflowConfig:
    """Tracking and registry locations. ``None`` means the embedded sqlite store."""

    tracking_uri: str | None = None
    registry_uri: str | None = None
    artifact_location: str | None = None
    experiment_root: str = "mlcore"
    enabled: bool = True
    # MLflow's usage telemetry (an HTTP call home from every job) is off unless asked for.
    telemetry: bool = False
    # Longest a job waits on an unreachable or failing tracking server (preflight and each call,
    # retries included) before it fails with one line.
    request_timeout_seconds: int = 60


@dataclass(frozen=True)
class SalesSourceConfig:
    """Rossmann-format sources: daily sales per store and store attributes."""

    train_path: str | None = None
    store_path: str | None = None
    calendar_path: str | None = None  # test.csv format; optional, never synthesised
    if_missing: IfMissing = "synthetic"
    # K > 0: each store's sales are published as K item series (mlcore.ingest.items), and the
    # future calendar per store x item; 0 keeps the store level.
    items_per_store: int = 0
    items_seed: int = 0


@dataclass(frozen=True)
class FileSourceConfig:
    """A single delimited source file."""

    path: str | None = None
    if_missing: IfMissing = "synthetic"


@dataclass(frozen=True)
class SourcesConfig:
    """Input files for the ingest jobs. ``None`` paths use the bundled synthetic generator."""

    datasets_dir: str | None = None
    sales: SalesSourceConfig = field(default_factory=SalesSourceConfig)
    bank: FileSourceConfig = field(default_factory=FileSourceConfig)
    rides: FileSourceConfig = field(default_factory=FileSourceConfig)


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes of the synthetic demo data (used when real files are absent)."""

    seed: int = 42
    stores: int = 20
    start_date: str = "2013-01-01"
    end_date: str = "2015-07-31"
    bank_rows: int = 5_000
    rides_rows: int = 20_000
    rides_start_date: str = "2019-01-01"
    rides_days: int = 31


@dataclass(frozen=True)
class IngestConfig:
    """Validation budget and limits for the ingest jobs."""

    bad_row_budget: float = 0.01
    max_days_outside_period: int = 7
    max_ride_hours: float = 24.0
    limit_rows: int | None = None
    # Plausible dates of every dated source (sales, calendar, rides): not before min_date
    # (YYYY-MM-DD) and not more than max_days_after_run_date after the run date.
    min_date: str = "1900-01-01"
    max_days_after_run_date: int = 1830


@dataclass(frozen=True)
class ProphetConfig:
    """Prophet settings per group model (plain values, shipped to executors as-is)."""

    growth: Literal["linear", "flat"] = "linear"
    yearly_seasonality: bool = True
    weekly_seasonality: bool = True
    daily_seasonality: bool = False
    seasonality_mode: Literal["additive", "multiplicative"] = "multiplicative"
    changepoint_prior_scale: float = 0.05
    seasonality_prior_scale: float = 10.0
    holidays_prior_scale: float = 10.0
    n_changepoints: int = 25
    interval_width: float = 0.8
    uncertainty_samples: int = 200
    regressors: list[str] = field(default_factory=lambda: ["promo", "school_holiday"])
    holidays_column: str | None = "state_holiday"
    # MAP fit: "inprocess" (mlcore.forecasting.prophet_map, the same posterior without a CmdStan
    # process per fit) or "cmdstan" (Prophet's own backend)
    optimizer: Literal["inprocess", "cmdstan"] = "inprocess"


ForecastMetric = Literal["wape", "rmspe", "smape", "mae", "rmse"]


@dataclass(frozen=True)
class ForecastFeaturesConfig:
    """The shared feature table (:mod:`mlcore.forecasting.features`), built in Spark before the
    grouped stages from the sales calendar, the future calendar and the ``stores`` table.

    ``event_window_days`` caps every days-since / days-until feature (holidays, closures, promo
    runs): an event further away than that, or none at all, reads as the cap;
    ``long_closure_window_days`` caps the distance to a long closure (``long_closure_days`` or
    more closed days in a row: refurbishments, whose effect on sales lasts weeks). ``stores_table``:
    the logical table with the store attributes (null: no store features), joined on
    ``stores_key``."""

    enabled: bool = True
    promo_column: str | None = "promo"
    school_holiday_column: str | None = "school_holiday"
    event_window_days: int = 15
    long_closure_days: int = 3  # a closure of at least this many days in a row: refurbishment
    long_closure_window_days: int = 60
    stores_table: str | None = "stores"
    stores_key: str = "store"


@dataclass(frozen=True)
class ForecastModelSpec:
    """One model family a group may be forecast with: a shipped family's name (``prophet``,
    ``seasonal_naive``) or a user's class by import path (``my_pkg.models:MyForecaster``), with
    the parameters its ``from_params`` takes (checked when a job starts: a bad one is a config
    error). Prophet's parameters are the ``forecasting.prophet`` section; ``params`` override it."""

    family: str
    params: dict[str, ScalarValue | list[ScalarValue] | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ForecastingConfig:
    """Per-group forecasting: grouping, data handling, backtest, selection and promotion."""

    group_keys: list[str] = field(default_factory=lambda: ["store"])
    date_column: str = "date"
    target_column: str = "sales"
    open_column: str | None = "open"
    drop_closed_days: bool = True
    horizon_days: int = 48
    min_history_days: int = 90
    backtest_windows: int = 3
    backtest_step_days: int = 48
    seasonal_period_days: int = 7
    # The families every group is backtested with; the first is the default family, which
    # keeps the group unless another beats it by more than selection_margin (selection_metric,
    # mean over the backtest windows all of them scored). The fallback family is fitted for
    # every group too: it forecasts when the champion cannot (failed fit, implausible forecast).
    models: list[ForecastModelSpec] = field(
        default_factory=lambda: [ForecastModelSpec("lightgbm"), ForecastModelSpec("seasonal_naive")]
    )
    fallback: str = "seasonal_naive"
    selection_metric: ForecastMetric = "rmspe"
    selection_margin: float = 0.02
    selection_every_window: bool = True  # ... and better than the default in every window
    failure_budget: float = 0.05
    # make_forecasts: a forecast above this multiple of the group's historical maximum is
    # implausible (a damaged or tampered model) and falls back to the baseline.
    max_forecast_multiple: float = 3.0
    warm_start: bool = False
    only_changed: bool = False
    only_needed: bool = False
    max_model_age_days: int = 30
    limit_groups: int | None = None
    group_partitions: int | None = None
    seed: int = 0
    model_name: str = "store_forecaster"
    promotion_metric: ForecastMetric = "wape"
    promotion_tolerance: float = 0.0
    plot_groups: int = 4
    prophet: ProphetConfig = field(default_factory=ProphetConfig)
    features: ForecastFeaturesConfig = field(default_factory=ForecastFeaturesConfig)


@dataclass(frozen=True)
class SearchDistribution:
    """A continuous or integer range in a search space (``randint`` includes ``high``)."""

    distribution: Literal["randint", "uniform", "loguniform"]
    low: float
    high: float


SearchSpace = dict[str, list[ScalarValue | None] | SearchDistribution]
EstimatorName = Literal["random_forest", "extra_trees", "gradient_boosting", "logistic_regression"]


@dataclass(frozen=True)
class ClassificationConfig:
    """Propensity classifier: features, pipeline, search, promotion and scoring."""

    input_table: str = "bank"
    score_table: str = "bank"
    output_table: str = "bank_scores"
    label_column: str = "y"
    positive_label: str = "yes"
    categorical_columns: list[str] = field(default_factory=list)
    numeric_columns: list[str] = field(default_factory=list)
    excluded_columns: list[str] = field(default_factory=lambda: ["duration"])
    key_columns: list[str] = field(default_factory=list)
    estimator: EstimatorName = "random_forest"
    estimator_params: dict[str, ScalarValue | None] = field(default_factory=dict)
    search_spaces: dict[str, SearchSpace] = field(default_factory=dict)
    n_iter: int = 10
    cv_folds: int = 3
    scoring: Literal["f1", "precision", "recall", "roc_auc", "average_precision"] = "f1"
    search_backend: Literal["spark", "local"] = "spark"
    seed: int = 42
    holdout_fraction: float = 0.2
    max_training_rows: int | None = None
    smote: bool = True
    smote_k_neighbors: int = 5
    final_fit_n_jobs: int = -1
    model_name: str = "bank_classifier"
    promotion_metric: Literal["f1", "precision", "recall", "roc_auc", "pr_auc"] = "f1"
    promotion_tolerance: float = 0.0
    importance_rows: int = 5000
    score_alias: str = "champion"
    score_version: int | None = None
    score_batch_rows: int = 100_000
    direct_scan: bool = True


RideFeatureName = Literal[
    "distance_miles", "duration_minutes", "speed_mph", "fare_amount", "fare_per_mile", "pickup_hour"
]


@dataclass(frozen=True)
class AnomalyConfig:
    """Ride anomalies: batches, feature rules, DBSCAN, the outlier detector and its promotion."""

    input_table: str = "rides"
    date_column: str = "pickup_date"
    batch_days: int = 1
    batch_keys: list[str] = field(default_factory=list)
    features: list[RideFeatureName] = field(
        default_factory=lambda: ["distance_miles", "duration_minutes", "speed_mph"]
    )
    min_distance_miles: float = 0.0
    max_duration_hours: float = 6.0
    max_speed_mph: float = 100.0
    eps: float | None = None
    eps_quantile: float = 0.95
    min_samples: int = 10
    min_batch_rows: int = 30
    max_batch_rows: int = 200_000
    silhouette_rows: int = 2000
    min_cluster_share: float = 0.05
    batch_failure_budget: float = 0.05
    detector: Literal["isolation_forest", "local_outlier_factor"] = "isolation_forest"
    detector_params: dict[str, ScalarValue | None] = field(default_factory=dict)
    reference_days: int = 28
    holdout_days: int = 7
    max_training_rows: int = 200_000
    model_name: str = "ride_anomaly_model"
    promotion_tolerance: float = 0.0
    score_alias: str = "champion"
    score_version: int | None = None
    seed: int = 42


@dataclass(frozen=True)
class ScoreBatchConfig:
    """score_batch: which scorers run, and whether concurrently (fair-scheduler pools) or one by one."""

    scorers: list[Literal["classifier", "anomaly"]] = field(
        default_factory=lambda: ["classifier", "anomaly"]
    )
    mode: Literal["parallel", "sequential"] = "parallel"


DriftMonitorName = Literal[
    "bank_features", "bank_scores", "ride_features", "sales_per_store", "forecast_accuracy"
]


@dataclass(frozen=True)
class DriftConfig:
    """monitor_drift: which monitors run, binning, and the thresholds that turn metrics into flags."""

    monitors: list[DriftMonitorName] = field(
        default_factory=lambda: [
            "bank_features",
            "bank_scores",
            "ride_features",
            "sales_per_store",
            "forecast_accuracy",
        ]
    )
    psi_bins: int = 10
    ks_bins: int = 50
    psi_threshold: float = 0.2
    ks_threshold: float = 0.1
    chi2_pvalue: float = 0.01
    min_rows: int = 30
    sales_window_days: int = 56
    forecast_wape_threshold: float = 0.25
    report_rows: int = 200


ColumnTypeName = Literal[
    "int", "bigint", "double", "float", "string", "date", "timestamp", "boolean"
]


@dataclass(frozen=True)
class RangeRule:
    """Inclusive bounds of a numeric column; either may be open."""

    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class TableRules:
    """Validation rules of one logical table (``validation.tables.<name>``).

    ``columns`` is the schema contract (name -> type); empty means the table's ingest contract,
    when it has one. Row rules (not_null, ranges, allowed_values) quarantine single rows; the
    batch rules (schema, unique_keys, freshness, row-count change, row_budget) stop the job.
    """

    columns: dict[str, ColumnTypeName] = field(default_factory=dict)
    allow_extra_columns: bool = True
    not_null: list[str] = field(default_factory=list)
    ranges: dict[str, RangeRule] = field(default_factory=dict)
    allowed_values: dict[str, list[ScalarValue]] = field(default_factory=dict)
    unique_keys: list[str] = field(default_factory=list)
    freshness_column: str | None = None
    max_staleness_days: int | None = None
    max_row_count_change: float | None = None
    row_budget: float = 0.01


@dataclass(frozen=True)
class ValidationConfig:
    """Input validation for every job (``mlcore.validation``); switching it off is recorded."""

    enabled: bool = True
    input_tables: list[str] = field(default_factory=lambda: ["sales", "stores", "bank", "rides"])
    sample_reasons: int = 3
    tables: dict[str, TableRules] = field(default_factory=dict)


PipelineStepName = Literal[
    "ingest_sales",
    "ingest_bank",
    "ingest_rides",
    "validate_inputs",
    "monitor_drift",
    "train_forecasts",
    "train_classifier",
    "detect_anomalies",
    "train_anomaly_model",
    "make_forecasts",
    "score_batch",
]


@dataclass(frozen=True)
class PipelineConfig:
    """run_pipeline: the nightly chain and the policy for retraining only what needs it."""

    # Default: every step, in the order of PipelineStepName.
    steps: list[PipelineStepName] = field(default_factory=lambda: list(get_args(PipelineStepName)))
    max_model_age_days: int = 30
    retrain_on_drift: bool = True
    incremental_forecasting: bool = True


@dataclass(frozen=True)
class RunConfig:
    """Per-run knobs.

    ``revision`` is part of every output write's idempotency token: re-running a job for the same
    run date with the same revision is a no-op; bump it to republish deliberately.
    """

    revision: int = 1


@dataclass(frozen=True)
class SimilarityConfig:
    """find_similar_stores: profile each store over ``lookback_days`` of sales before the run
    date and keep its ``k`` nearest stores. ``weights``: each profile block's share of the
    distance (``shape``, ``seasonality``, ``level``, ``attributes``); a store needs ``min_days``
    days in the window to be compared."""

    k: int = 10
    lookback_days: int = 365
    min_days: int = 56
    weights: dict[str, float] = field(
        default_factory=lambda: {"shape": 1.0, "seasonality": 1.0, "level": 1.0, "attributes": 0.5}
    )


@dataclass(frozen=True)
class ServiceConfig:
    """The planners' service (``mlcore serve``): where it listens, who may call it, how much it
    keeps in memory and how far a request may reach.

    ``auth_required``: every data endpoint wants ``Authorization: Bearer <token>``, the token
    read from the environment variable ``token_env`` (never from config or a file in the repo).
    ``refresh_seconds``: how often new Delta table versions and a new champion are looked for.
    ``cache_entries``: responses kept (LRU), keyed by request and table versions;
    ``model_cache_size``: champion models held for on-demand forecasts (LRU);
    ``forecast_runs_cached``: forecast run dates held in memory. ``max_range_days``,
    ``max_batch_stores``, ``max_history_weeks``, ``max_neighbours``: request bounds;
    ``on_demand_days``: how far past the champion's training date an on-demand forecast may go.
    ``cors_origins``: browser origins allowed to call the API (empty: CORS off)."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    auth_required: bool = True
    token_env: str = "MLCORE_SERVICE_TOKEN"
    refresh_seconds: float = 30.0
    cache_entries: int = 4096
    model_cache_size: int = 64
    forecast_runs_cached: int = 4
    max_range_days: int = 120
    max_batch_stores: int = 50
    max_history_weeks: int = 104
    max_neighbours: int = 20
    on_demand_days: int = 180
    cors_origins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MlcoreConfig:
    """The whole configuration of one job run."""

    env: str
    conf_dir: str
    mlcore_home: str
    spark: SparkConfig = field(default_factory=SparkConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    tables: dict[str, TableConfig] = field(default_factory=dict)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    forecasting: ForecastingConfig = field(default_factory=ForecastingConfig)
    classification: ClassificationConfig = field(default_factory=ClassificationConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    score_batch: ScoreBatchConfig = field(default_factory=ScoreBatchConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    similarity: SimilarityConfig = field(default_factory=SimilarityConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    run: RunConfig = field(default_factory=RunConfig)


# Sections a YAML file may set; env, conf_dir and mlcore_home come from the loader.
CONFIG_SECTIONS = (
    "spark",
    "storage",
    "tables",
    "mlflow",
    "sources",
    "synthetic",
    "ingest",
    "forecasting",
    "classification",
    "anomaly",
    "score_batch",
    "drift",
    "validation",
    "pipeline",
    "similarity",
    "service",
    "run",
)
