#!/usr/bin/env python
"""Benchmark: per-store forecasting on real Rossmann stores, accuracy and cost, in one run.

(a) seed: the notebook loop, serial (per store: Prophet() defaults on open days, predict
    history + 48 days with 1000 uncertainty samples);
(b) families: every shipped family fitted once per store on the history and forecasting the
    48 days from the run date, in a process pool over all cores, on the shared feature table
    (built in Spark, as the jobs build it): pooled RMSPE / WAPE / interval coverage, and CPU
    core-seconds per store of one fit + predict. ``ensemble`` is the mean of lightgbm and
    prophet (its cost: theirs together);
(c) job: train_forecasts then make_forecasts with the default configuration (Spark grouped UDFs,
    Delta writes, MLflow run + registry).

For the job it prints wall time, groups/s, core-seconds per group and efficiency = ideal /
actual, where ideal = serial per-store work (train_group on featured groups, run serially over
a sample of stores spread evenly) / cores, and where its CPU went, by process (Linux /proc).
Accuracy is over open days with sales > 0 in the 48 days from the run date (the last 48 days of
train.csv for 2015-06-14): the job's champions (make_forecasts), each family, the seed approach.

    .venv/bin/python scripts/bench_forecasting.py                 # all 1,115 stores (~15 min)
    .venv/bin/python scripts/bench_forecasting.py --stores 100 --serial-sample 20  # quick
    .venv/bin/python scripts/bench_forecasting.py --skip-seed --run-date 2015-04-27
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlcore.config.models import ForecastingConfig, ForecastModelSpec  # noqa: E402
from mlcore.forecasting.families import build_model  # noqa: E402
from mlcore.forecasting.history import prepare_history  # noqa: E402
from mlcore.forecasting.training import train_group  # noqa: E402
from mlcore.ingest.schemas import SALES, STORES  # noqa: E402

DATASETS = Path(os.environ.get("MLCORE_DATASETS_DIR", ROOT.parent / "shared" / "datasets"))
_GROUPS: dict[int, pd.DataFrame] = {}
_RUN_DATE = dt.date(2015, 6, 14)
_CONFIG = ForecastingConfig()
HORIZON = 48
FAMILIES = ("seasonal_naive", "prophet", "lightgbm")


def load(stores: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.read_csv(DATASETS / "rossmann" / "train.csv.gz", dtype={"StateHoliday": str})
    frame = frame.rename(columns=SALES.source_names)
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    keep = sorted(frame["store"].unique())[:stores]
    attributes = pd.read_csv(DATASETS / "rossmann" / "store.csv.gz").rename(columns=STORES.source_names)
    attributes = attributes[attributes["store"].isin(keep)].reset_index(drop=True)
    return frame[frame["store"].isin(keep)].reset_index(drop=True), attributes


def quiet() -> None:
    for name in ("cmdstanpy", "prophet", "py4j", "mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)


def seed_store(history: pd.DataFrame) -> pd.DataFrame:
    """The seed notebook's per-store work: fit on open days, predict history + 48 days."""
    from prophet import Prophet

    train = history[history["open"] == 1][["date", "sales"]].rename(columns={"date": "ds", "sales": "y"})
    train["ds"] = pd.to_datetime(train["ds"])
    model = Prophet(yearly_seasonality=True, weekly_seasonality=True)
    model.fit(train)
    future = model.make_future_dataframe(periods=HORIZON)
    forecast = model.predict(future)
    return forecast[["ds", "yhat"]]


def _pool_init(groups: dict[int, pd.DataFrame]) -> None:
    quiet()
    _GROUPS.update(groups)


def _family_task(store: int) -> tuple[int, dict[str, float], pd.DataFrame]:
    """Every family fitted on the store's history, forecasting its next 48 days (CPU timed)."""
    frame = _GROUPS[store]
    prep = prepare_history(frame, _CONFIG, _RUN_DATE + dt.timedelta(days=HORIZON))
    cut = np.datetime64(_RUN_DATE)
    train = prep.train[prep.train["ds"].to_numpy() < cut]
    future = prep.frame[prep.frame["ds"].to_numpy() >= cut].reset_index(drop=True)
    seconds: dict[str, float] = {}
    out = pd.DataFrame({"store": store, "date": future["ds"].dt.date.to_numpy()})
    for family in FAMILIES:
        start = time.process_time()
        try:
            model = build_model(ForecastModelSpec(family), _CONFIG, 0).fit(train)
            pred = model.predict(future)
            out[family] = pred["yhat"].to_numpy()
            out[f"{family}_lower"] = pred["yhat_lower"].to_numpy()
            out[f"{family}_upper"] = pred["yhat_upper"].to_numpy()
        except Exception:  # noqa: BLE001 - a family failing on a store counts as no forecast
            out[family] = out[f"{family}_lower"] = out[f"{family}_upper"] = np.nan
        seconds[family] = time.process_time() - start
    for suffix in ("", "_lower", "_upper"):
        out[f"ensemble{suffix}"] = (out[f"lightgbm{suffix}"] + out[f"prophet{suffix}"]) / 2
    seconds["ensemble"] = seconds["lightgbm"] + seconds["prophet"]
    return store, seconds, out


class ProcessCpu:
    """CPU seconds used while the block runs, by process: this driver's Python, the JVM (a
    ``java`` descendant) and Spark's Python workers. Sampled from /proc every 0.25 s so workers
    that exit are still counted; empty where there is no /proc."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._base: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _kind(pid: int) -> str | None:
        if pid == os.getpid():
            return "driver python"
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if argv and argv[0].endswith(b"java"):
            return "jvm"
        if any(b"pyspark.daemon" in a or b"pyspark.worker" in a for a in argv):
            return "python workers"
        return None

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            kind = self._kind(int(entry))
            if kind is None:
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(entry)] = (kind, (int(fields[11]) + int(fields[12])) / tick)
        return out

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            self._last.update(self._snapshot())

    def __enter__(self) -> ProcessCpu:
        if Path("/proc/self/stat").exists():
            self._base = self._snapshot()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._thread.is_alive():
            return
        self._stop.set()
        self._thread.join()
        self._last.update(self._snapshot())
        for pid, (kind, seconds) in self._last.items():
            used = seconds - self._base.get(pid, (kind, 0.0))[1]
            self.seconds[kind] = self.seconds.get(kind, 0.0) + used


def pooled(frame: pd.DataFrame, column: str) -> tuple[float, float, float]:
    """Pooled (RMSPE, WAPE, interval coverage) over open days with sales > 0."""
    part = frame[(frame["sales"] > 0) & frame[column].notna()]
    err = part["sales"] - part[column]
    rmspe = float(np.sqrt(np.mean((err / part["sales"]) ** 2)))
    wape = float(err.abs().sum() / part["sales"].sum())
    coverage = float("nan")
    if f"{column}_lower" in part:
        inside = (part["sales"] >= part[f"{column}_lower"]) & (part["sales"] <= part[f"{column}_upper"])
        coverage = float(inside.mean())
    return rmspe, wape, coverage


def featured_groups(spark, data: pd.DataFrame, attributes: pd.DataFrame, config) -> dict[int, pd.DataFrame]:
    """Every store's rows with the shared features, built by the jobs' Spark definitions."""
    from mlcore.forecasting.features import add_features

    columns = ["store", "date", "sales", "open", "promo", "state_holiday", "school_holiday"]
    rows = spark.createDataFrame(data[columns])
    stores = spark.createDataFrame(attributes.astype(object).where(attributes.notna(), None))
    frame = add_features(rows, config, stores).toPandas()
    return {int(s): g.sort_values("date").reset_index(drop=True) for s, g in frame.groupby("store")}


def write_inputs(spark, tables, data: pd.DataFrame, attributes: pd.DataFrame) -> None:
    from mlcore.ingest.schemas import SALES_SCHEMA, STORES_SCHEMA

    stamp = {"run_id": "bench", "run_date": dt.date(2015, 8, 1)}
    sales = data.assign(**stamp)[SALES_SCHEMA.fieldNames()]
    tables.write(spark.createDataFrame(sales, SALES_SCHEMA), "sales", mode="overwrite")
    stores = attributes.assign(**stamp)[STORES_SCHEMA.fieldNames()]
    stores = stores.astype(object).where(stores.notna(), None)
    for column in ("competition_open_since_month", "competition_open_since_year", "promo2_since_week", "promo2_since_year"):
        stores[column] = [None if v is None else int(v) for v in stores[column]]
    tables.write(spark.createDataFrame(stores, STORES_SCHEMA), "stores", mode="overwrite")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", type=int, default=1115)
    parser.add_argument(
        "--serial-sample", type=int, default=100, help="stores timed serially for 'ideal' (0: all)"
    )
    parser.add_argument("--run-date", default="2015-06-14")
    parser.add_argument("--skip-seed", action="store_true", help="leave out the seed loop (a)")
    args = parser.parse_args()
    quiet()
    global _RUN_DATE
    _RUN_DATE = dt.date.fromisoformat(args.run_date)
    cores = os.cpu_count() or 1
    data, attributes = load(args.stores)
    stores = sorted(data["store"].unique())
    history = data[data["date"] < _RUN_DATE]
    holdout = data[(data["date"] >= _RUN_DATE) & (data["date"] < _RUN_DATE + dt.timedelta(days=HORIZON))]
    n = len(stores)
    print(f"stores={n} run_date={_RUN_DATE} cores={cores} rows={len(history):,} (history)")
    print(f"default families {[m.family for m in _CONFIG.models]}, fallback {_CONFIG.fallback}, "
          f"{_CONFIG.backtest_windows} backtest windows of {_CONFIG.horizon_days} days, "
          f"selection by {_CONFIG.selection_metric} (margin {_CONFIG.selection_margin})")

    home = Path(tempfile.mkdtemp(prefix="mlcore_bench_"))
    os.environ["MLCORE_HOME"] = str(home)
    from mlcore.config.loader import load_config
    from mlcore.io import DeltaTables
    from mlcore.runner import run_job
    from mlcore.spark import get_spark

    config = load_config("local", conf_dir=ROOT / "conf")
    spark = get_spark(config.spark, "bench")
    tables = DeltaTables(spark, config)
    write_inputs(spark, tables, data, attributes)
    featured = featured_groups(spark, data, attributes, _CONFIG)
    groups = {s: g[g["date"] < _RUN_DATE] for s, g in featured.items()}

    # (a) seed loop, serial
    seed = None
    seed_wall = float("nan")
    if not args.skip_seed:
        seed_frames = []
        start = time.perf_counter()
        for store in stores:
            out = seed_store(history[history["store"] == store])
            out["store"] = store
            seed_frames.append(out)
        seed_wall = time.perf_counter() - start
        seed = pd.concat(seed_frames)
        seed["date"] = seed["ds"].dt.date

    # (b) every family once per store, in a process pool (forked before this process has run
    # LightGBM: a fork after OpenMP has started its threads can hang the children)
    ctx = mp.get_context("fork")
    with ctx.Pool(cores, initializer=_pool_init, initargs=(featured,)) as pool:
        family_rows = list(pool.imap_unordered(_family_task, stores, chunksize=4))
    family_seconds = pd.DataFrame([r[1] for r in family_rows]).mean()
    family_forecasts = pd.concat([r[2] for r in family_rows], ignore_index=True)

    # serial sample of the job's per-store work: the 'ideal' reference
    wanted = args.serial_sample if 0 < args.serial_sample < n else n
    sample = stores[:: max(1, n // wanted)][:wanted]  # evenly spread: cost varies with history
    start = time.perf_counter()
    for store in sample:
        train_group(groups[store], {"store": store}, _CONFIG, _RUN_DATE)
    per_store = (time.perf_counter() - start) / len(sample)
    ideal = per_store * n / cores

    # (c) the job, on the fresh MLCORE_HOME (sales and stores tables written above, not timed)
    common = ["--env", "local", "--conf-dir", str(ROOT / "conf"), "--run-date", args.run_date,
              "--log-level", "WARNING"]
    cpu = ProcessCpu()
    start = time.perf_counter()
    with cpu:
        if run_job("train_forecasts", common) != 0:
            print("train_forecasts failed")
            return 1
    job_wall = time.perf_counter() - start
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.search_runs(
        [client.get_experiment_by_name("mlcore/train_forecasts").experiment_id], max_results=1
    )[0]
    stage_rate = run.data.metrics.get("groups_per_second", float("nan"))
    start = time.perf_counter()
    if run_job("make_forecasts", common) != 0:
        print("make_forecasts failed")
        return 1
    serve_wall = time.perf_counter() - start
    forecasts = tables.read("forecasts").select("store", "ds", "yhat", "yhat_lower", "yhat_upper", "model_type").toPandas()
    champions = tables.read("forecast_models").groupBy("champion").count().toPandas()

    def line(name: str, wall: float, parallel: bool, ideal_wall: float | None) -> str:
        core_s = wall * (cores if parallel else 1) / n
        eff = f"{ideal_wall / wall:5.2f}" if ideal_wall else "   - "
        return f"{name:<38} {wall:9.1f} {n / wall:9.2f} {core_s:12.3f} {eff:>10}"

    print()
    print(f"serial train_group per store (sample of {len(sample)}): {per_store:.3f} s -> ideal on {cores} cores: {ideal:.1f} s")
    print(f"{'mode':<38} {'wall s':>9} {'groups/s':>9} {'core-s/group':>12} {'efficiency':>10}")
    if seed is not None:
        print(line("(a) seed loop, serial", seed_wall, False, None))
    print(line("(c) train_forecasts job (end to end)", job_wall, True, ideal))
    if stage_rate == stage_rate:
        print(line("    of which the training stage", n / stage_rate, True, ideal))
    print(line("    make_forecasts job (end to end)", serve_wall, True, None))
    if seed is not None:
        print(f"job core-seconds per store vs seed loop: {job_wall * cores / n:.3f} vs {seed_wall / n:.3f}"
              f" (ratio {job_wall * cores / seed_wall:.2f})")
    if cpu.seconds:
        used = sum(cpu.seconds.values())
        parts = ", ".join(f"{name} {sec:.1f}" for name, sec in sorted(cpu.seconds.items()))
        print(f"train_forecasts CPU by process, core-s: {parts}; idle {job_wall * cores - used:.1f}"
              f" (of {job_wall * cores:.1f}); serial train_group total {per_store * n:.1f}")

    # accuracy on the 48 days from the run date
    truth = holdout[["store", "date", "sales", "open"]]
    renamed = {"ds": "date", "yhat": "champion", "yhat_lower": "champion_lower", "yhat_upper": "champion_upper"}
    champion = truth.merge(forecasts.rename(columns=renamed), on=["store", "date"], how="left")
    per_family = truth.merge(family_forecasts, on=["store", "date"], how="left")
    windows = _CONFIG.backtest_windows + 1
    print()
    print(f"accuracy, {truth['date'].min()}..{truth['date'].max()}, open days with sales > 0, {n} stores")
    print(f"  {'':<26} {'RMSPE':>7} {'WAPE':>7} {'coverage':>9} {'core-s/store':>13} {'in train_forecasts':>19}")
    rmspe, wape, coverage = pooled(champion, "champion")
    print(f"  {'job champions (default)':<26} {rmspe:7.4f} {wape:7.4f} {coverage:9.3f} {job_wall * cores / n:13.3f} {'(end to end)':>19}")
    for family in (*FAMILIES, "ensemble"):
        rmspe, wape, coverage = pooled(per_family, family)
        fit = family_seconds[family]
        print(f"  {family:<26} {rmspe:7.4f} {wape:7.4f} {coverage:9.3f} {fit:13.3f} {fit * windows:19.3f}")
    if seed is not None:
        seeded = truth.merge(seed[["store", "date", "yhat"]].rename(columns={"yhat": "seed"}), on=["store", "date"], how="left")
        rmspe, wape, _ = pooled(seeded, "seed")
        print(f"  {'seed approach':<26} {rmspe:7.4f} {wape:7.4f} {'-':>9} {seed_wall / n:13.3f}")
    print(f"  (core-s/store: one fit on the history + forecast of the 48 days, CPU time in a pool of {cores};"
          f" 'in train_forecasts': x {windows} fits = {_CONFIG.backtest_windows} backtest windows + the final fit)")
    print("champions:", dict(zip(champions["champion"].fillna("none"), champions["count"], strict=True)))
    print("forecast model types:", forecasts["model_type"].value_counts().to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
