#!/usr/bin/env python
"""Benchmark: batch scoring throughput of score_classifier, and the search on Spark vs in-process.

On a fresh MLCORE_HOME: ingest the real UCI bank data (ingest_bank), train a champion with a
small search (train_classifier), then build N rows by resampling the real bank rows with a fixed
seed (xxhash64 of a unique ``client_id`` and the seed picks a bank row, i.e. sampling with
replacement), written by the platform's Delta writer as table ``bank_bench``. Then, in one run:

(a) baseline: the champion loaded in this process, ``predict_proba`` on the same N rows in chunks
    of 100k rows, single process and single thread (rows/s of one core; only predict_proba is
    timed, the Arrow -> pandas -> feature_frame conversion is not, so the baseline is favourable);
(b) job: score_classifier through run_job in this process, scoring ``bank_bench`` keyed by
    ``client_id`` (wall time measured around run_job: model download and checks, Spark scoring,
    Delta write, read-back count, MLflow run); the output row count must equal N.
    efficiency = job rows/s / (baseline rows/s x cores), target 0.8;
(c) search: the job's randomized search on the real bank training rows (same split as the job,
    same candidates and folds) with ``search_local`` vs ``search_on_spark``; the per-candidate mean
    scores must be identical.

    .venv/bin/python scripts/bench_scoring.py                        # 5,000,000 rows
    .venv/bin/python scripts/bench_scoring.py --rows 200000 --search-iter 2

Caveat: figures are of this machine (local[2] Spark, cores possibly shared with other work);
the efficiency compares the job against one core of the same machine measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import logging
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH_TABLE = "bank_bench"
CHUNK_ROWS = 100_000
TARGET_EFFICIENCY = 0.8


def quiet() -> None:
    for name in ("py4j", "mlflow", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


def build_bench_table(spark, tables, rows: int, seed: int, files: int) -> int:
    """``bank_bench``: ``rows`` bank rows drawn with replacement, keyed by a unique ``client_id``.

    The bank rows are numbered in a deterministic order (same table version -> same numbering);
    row ``client_id`` takes bank row ``pmod(xxhash64(client_id, seed), n_bank)``. Written with
    the platform's writer from ``files`` Spark partitions (so ``files`` data files).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    bank = tables.read("bank").drop("run_id", "run_date")
    columns = [F.col(f"`{c}`") for c in bank.columns]
    order = Window.orderBy(F.xxhash64(*columns), *columns)
    indexed = bank.withColumn("_idx", (F.row_number().over(order) - 1).cast("long"))
    n_bank = indexed.count()
    picks = spark.range(0, rows, 1, numPartitions=files).withColumnRenamed("id", "client_id")
    picks = picks.withColumn("_idx", F.pmod(F.xxhash64("client_id", F.lit(seed)), F.lit(n_bank)))
    bench = picks.join(F.broadcast(indexed), "_idx").select("client_id", *columns)
    tables.write(bench, BENCH_TABLE, mode="overwrite")
    return n_bank


def load_champion(config):
    """(version, model, metadata) of the champion, loaded like score_classifier loads it."""
    from mlflow.tracking import MlflowClient

    from mlcore.pipelines._models import load_version
    from mlcore.tracking.registry import resolve_version
    from mlcore.tracking.runs import configure_mlflow

    cc = config.classification
    configure_mlflow(config)
    version = resolve_version(MlflowClient(), cc.model_name, cc.score_alias)
    loaded = load_version(cc.model_name, str(version.version))
    return loaded.version, loaded.model, loaded.info


def baseline(model, spec, table_uri: str) -> tuple[int, float, float]:
    """(rows, predict_proba seconds, seconds incl. conversion): one process, one thread."""
    from deltalake import DeltaTable
    from threadpoolctl import threadpool_limits

    from mlcore.classification.features import feature_frame

    estimator = model.steps[-1][1]
    if "n_jobs" in estimator.get_params():
        if estimator.n_jobs not in (None, 1):
            print(f"note: stored model has n_jobs={estimator.n_jobs}; set to 1 for the baseline")
        estimator.set_params(n_jobs=1)
    data = DeltaTable(table_uri).to_pyarrow_table(columns=spec.columns)
    predict = total = 0.0
    with threadpool_limits(limits=1):
        for offset in range(0, data.num_rows, CHUNK_ROWS):
            started = time.perf_counter()
            X = feature_frame(data.slice(offset, CHUNK_ROWS).to_pandas(), spec)
            mid = time.perf_counter()
            model.predict_proba(X)
            done = time.perf_counter()
            predict += done - mid
            total += done - started
    return data.num_rows, predict, total


def count_scores(table_uri: str, run_date: str) -> tuple[int, int]:
    """(rows, distinct client_id) of ``bank_scores`` for the run date."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    scores = DeltaTable(table_uri).to_pyarrow_table(
        columns=["client_id"], filters=[("run_date", "=", dt.date.fromisoformat(run_date))]
    )
    return scores.num_rows, int(pc.count_distinct(scores.column("client_id")).as_py())


class JobPhases:
    """Wall seconds of the job's main phases, timed by wrapping a few functions in this process
    (the job itself is unchanged). Phases may nest: the scores write includes its commit."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def _wrap(self, owner, attr: str, label) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                name = label(*args, **kwargs) if callable(label) else label
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        self._restore.append((owner, attr, original))
        setattr(owner, attr, timed)

    @contextlib.contextmanager
    def recording(self, output_table: str):
        import mlcore.pipelines.score_classifier as job
        from mlcore.io import deltars_writer
        from mlcore.io.delta import DeltaTables

        def write_label(*args, **kwargs) -> str:  # DeltaTables.write(self, df, name, ...)
            name = args[2] if len(args) > 2 else kwargs.get("name")
            return "scores write (score + write + commit)" if name == output_table else "bookkeeping writes"

        self._restore: list = []
        self._wrap(job, "resolve_for_scoring", "model lookup + download + load (driver)")
        self._wrap(job, "check_inputs", "input validation")
        self._wrap(DeltaTables, "write", write_label)
        self._wrap(DeltaTables, "merge", "bookkeeping writes")
        self._wrap(deltars_writer.DeltaRsArrowWriter, "commit", "  of which Delta commit")
        try:
            yield self
        finally:
            for owner, attr, original in reversed(self._restore):
                setattr(owner, attr, original)

    def report(self, wall: float) -> list[str]:
        order = [
            "model lookup + download + load (driver)",
            "input validation",
            "scores write (score + write + commit)",
            "  of which Delta commit",
            "bookkeeping writes",
        ]
        top = sum(v for k, v in self.seconds.items() if not k.startswith(" "))
        lines = [f"  {name:<38} {self.seconds[name]:8.1f} s" for name in order if name in self.seconds]
        lines.append(f"  {'other (MLflow run, reads, summary)':<38} {wall - top:8.1f} s")
        return lines


def search_comparison(spark, config, tables, n_iter: int, folds: int) -> bool:
    """Time search_local vs search_on_spark on the job's training rows; True when scores agree."""
    from sklearn.model_selection import train_test_split

    from mlcore.classification.distributed import search_on_spark
    from mlcore.classification.features import feature_frame, feature_spec, label_vector
    from mlcore.classification.search import (
        SCORES,
        SearchSettings,
        plan,
        search_local,
        validate_candidates,
    )
    from mlcore.pipelines.train_classifier import load_training_frame

    cc = config.classification
    spec = feature_spec(cc)
    frame = load_training_frame(types.SimpleNamespace(config=config, tables=tables), spec)
    y_all = label_vector(frame, spec)
    X_all = feature_frame(frame, spec)
    train_rows, _ = train_test_split(
        np.arange(len(y_all)), test_size=cc.holdout_fraction, stratify=y_all, random_state=cc.seed
    )
    X_train, y_train = X_all.iloc[train_rows].reset_index(drop=True), y_all[train_rows]
    settings = SearchSettings(
        spec=spec, estimator=cc.estimator, seed=cc.seed, estimator_params=dict(cc.estimator_params),
        smote=cc.smote, smote_k_neighbors=cc.smote_k_neighbors, scoring=cc.scoring,
    )
    candidates, splits = plan(y_train, cc.search_spaces.get(cc.estimator, {}), n_iter, folds, cc.seed)
    validate_candidates(settings, candidates)
    tasks = len(candidates) * len(splits)
    print(f"\nsearch: {len(candidates)} candidates x {len(splits)} folds = {tasks} fits "
          f"({cc.estimator}, SMOTE in folds) on {len(X_train):,} training rows")

    started = time.perf_counter()
    local = search_local(X_train, y_train, settings, candidates, splits)
    local_wall = time.perf_counter() - started
    started = time.perf_counter()
    distributed = search_on_spark(spark, X_train, y_train, settings, candidates, splits)
    spark_wall = time.perf_counter() - started

    a = local.table().sort_values("candidate").reset_index(drop=True)
    b = distributed.table().sort_values("candidate").reset_index(drop=True)
    columns = [f"mean_{name}" for name in SCORES]
    same = all(np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True) for c in columns)
    same_oof = all(
        np.array_equal(
            local.out_of_fold_proba(c, len(y_train)), distributed.out_of_fold_proba(c, len(y_train)), equal_nan=True
        )
        for c in range(len(candidates))
    )
    fit_local, fit_spark = float(a["fit_seconds"].sum()), float(b["fit_seconds"].sum())
    cores = spark.sparkContext.defaultParallelism
    speedup = local_wall / spark_wall
    print(f"{'backend':<22} {'wall s':>8} {'fits/s':>8}")
    print(f"{'search_local':<22} {local_wall:8.1f} {tasks / local_wall:8.3f}")
    print(f"{'search_on_spark':<22} {spark_wall:8.1f} {tasks / spark_wall:8.3f}")
    print(f"speedup {speedup:.2f}x on {cores} cores (efficiency {speedup / cores:.2f}); "
          f"sum of per-fit seconds: local {fit_local:.1f}, Spark tasks {fit_spark:.1f} "
          f"(Spark > local means the concurrent fits slowed each other down)")
    print(f"per-candidate mean scores identical: {same}; out-of-fold probabilities identical: {same_oof}")
    best = a.sort_values(["rank", "candidate"]).iloc[0]
    print(f"best candidate {int(best['candidate'])}: {best['params']} mean {cc.scoring} {best[f'mean_{cc.scoring}']:.4f}")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows to score (default 5,000,000)")
    parser.add_argument("--train-iter", type=int, default=4, help="n_iter of the search that trains the champion")
    parser.add_argument("--search-iter", type=int, default=6, help="candidates in the local-vs-Spark search timing")
    parser.add_argument("--search-folds", type=int, default=3)
    parser.add_argument("--skip-search", action="store_true", help="skip (c), the search timing")
    parser.add_argument("--files", type=int, default=None,
                        help="data files of bank_bench (default: Spark defaultParallelism)")
    parser.add_argument("--seed", type=int, default=42, help="resampling seed")
    parser.add_argument("--run-date", default="2015-06-14")
    parser.add_argument("--home", help="MLCORE_HOME to use (default: a fresh temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary MLCORE_HOME")
    args = parser.parse_args()

    home = Path(args.home).expanduser().resolve() if args.home else Path(tempfile.mkdtemp(prefix="mlcore_bench_scoring_"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["MLCORE_HOME"] = str(home)
    quiet()
    try:
        return run(args, home)
    finally:
        if not args.home and not args.keep:
            from pyspark.sql import SparkSession

            active = SparkSession.getActiveSession()
            if active is not None:
                active.stop()
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"MLCORE_HOME kept: {home}")


def run(args: argparse.Namespace, home: Path) -> int:
    from mlcore.classification.features import FeatureSpec
    from mlcore.config.loader import load_config
    from mlcore.io import DeltaTables
    from mlcore.runner import run_job
    from mlcore.spark import get_spark

    conf = ROOT / "conf"
    common = ["--env", "local", "--conf-dir", str(conf), "--run-date", args.run_date, "--log-level", "WARNING"]
    print(f"MLCORE_HOME={home}")

    # setup (not timed): real bank data, a champion, the resampled table
    started = time.perf_counter()
    if run_job("ingest_bank", common) != 0:
        print("ingest_bank failed")
        return 1
    if run_job("train_classifier", [*common, "--set", f"classification.n_iter={args.train_iter}"]) != 0:
        print("train_classifier failed")
        return 1
    table_set = f"tables.{BENCH_TABLE}.path={BENCH_TABLE}"
    config = load_config("local", conf_dir=conf, overrides=[table_set])
    spark = get_spark(config.spark, "bench")
    tables = DeltaTables(spark, config)
    cores = spark.sparkContext.defaultParallelism
    files = args.files or cores
    n_bank = build_bench_table(spark, tables, args.rows, args.seed, files)
    partitions = tables.read(BENCH_TABLE).rdd.getNumPartitions()
    setup_wall = time.perf_counter() - started
    print(f"\nsetup {setup_wall:.1f} s: {BENCH_TABLE} = {args.rows:,} rows resampled (seed {args.seed}) from "
          f"{n_bank:,} bank rows, {files} data files -> {partitions} Spark input partitions")

    # (a) baseline: in-process predict_proba, one core
    version, model, info = load_champion(config)
    spec = FeatureSpec.from_dict(info["features"])
    params = model.steps[-1][1].get_params()
    print(f"champion: {config.classification.model_name} v{version} "
          f"(n_estimators={params.get('n_estimators')}, max_depth={params.get('max_depth')}, "
          f"min_samples_leaf={params.get('min_samples_leaf')}, max_features={params.get('max_features')}; "
          f"threshold {float(info['threshold']):.4f})")
    rows, predict_s, total_s = baseline(model, spec, tables.ref(BENCH_TABLE).uri)
    if rows != args.rows:
        print(f"FAILED: {BENCH_TABLE} holds {rows:,} rows, expected {args.rows:,}")
        return 1
    base_rate = rows / predict_s

    # (b) the job, timed around run_job (reusing this process's Spark session)
    scores_dir = Path(tables.ref(config.classification.output_table).uri)
    if scores_dir.exists():  # a reused --home: the job would skip an already scored run date
        shutil.rmtree(scores_dir)
        print(f"removed the previous {scores_dir} so the job scores again")
    score_args = [
        *common,
        "--set", f"classification.score_table={BENCH_TABLE}",
        "--set", table_set,
        "--set", "classification.key_columns=[client_id]",  # --set takes flat YAML lists
    ]
    phases = JobPhases()
    with phases.recording(config.classification.output_table):
        started = time.perf_counter()
        rc = run_job("score_classifier", score_args)
        job_wall = time.perf_counter() - started
    if rc != 0:
        print("score_classifier failed")
        return 1
    written, distinct = count_scores(str(scores_dir), args.run_date)
    job_rate = rows / job_wall
    efficiency = job_rate / (base_rate * cores)

    print()
    print(f"rows                                  {rows:>14,}")
    print(f"baseline predict_proba, 1 process     {predict_s:>12.1f} s  {base_rate:>12,.0f} rows/s (1 core)")
    print(f"  incl. Arrow->pandas + feature_frame {total_s:>12.1f} s  {rows / total_s:>12,.0f} rows/s")
    print(f"score_classifier job (run_job wall)   {job_wall:>12.1f} s  {job_rate:>12,.0f} rows/s")
    print("\n".join(phases.report(job_wall)))
    print(f"cores (Spark defaultParallelism)      {cores:>14}   (os.cpu_count() = {os.cpu_count()})")
    print(f"efficiency = job / (baseline x cores) {efficiency:>14.2f}   target {TARGET_EFFICIENCY} -> "
          + ("met" if efficiency >= TARGET_EFFICIENCY else "NOT met"))
    print(f"job vs one core                       {job_rate / base_rate:>14.2f}x")
    print(f"output rows {written:,} (distinct client_id {distinct:,}) vs input {rows:,}: "
          + ("OK" if written == rows == distinct else "MISMATCH"))
    ok = written == rows == distinct

    # (c) the search, in-process vs on Spark
    if not args.skip_search:
        if not search_comparison(spark, config, tables, args.search_iter, args.search_folds):
            print("FAILED: search_local and search_on_spark disagree")
            ok = False
    print("\nmachine caveat: local[2] Spark on this machine; other work may share its cores, so "
          "compare ratios measured in the same run rather than absolute figures across runs.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
