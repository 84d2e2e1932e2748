#!/usr/bin/env python
"""Benchmark: per-store forecasting three ways, measured in one run on real Rossmann stores.

(a) seed: the notebook loop, serial (per store: Prophet() defaults on open days, predict
    history + 48 days with 1000 uncertainty samples);
(b) pool: a process pool over all cores running the job's per-store work (train_group:
    backtest + selection + final fit);
(c) job: the train_forecasts job (Spark applyInPandas, Delta writes, MLflow run + registry).

Prints wall time, groups/s, core-seconds per group and efficiency = ideal / actual, where
ideal = serial per-store work (train_group run serially over every store, by default) / cores.
A sample under-reads it: every 11th Rossmann store averaged 52.9 ms against 56.7 ms for all
1,115. For the job it also prints where its CPU went, by process (Linux /proc): the Python
workers (the per-store work and the UDF plumbing), the JVM and the driver's Python.
Then accuracy on the 48 days from the run date (the last 48 days of train.csv for 2015-06-14):
pooled RMSPE and WAPE over open days with sales, for the job's champions (make_forecasts), the
seed approach and the seasonal-naive baseline.

    .venv/bin/python scripts/bench_forecasting.py                 # all 1,115 stores
    .venv/bin/python scripts/bench_forecasting.py --stores 100 --serial-sample 20  # quick
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

from mlcore.config.models import ForecastingConfig  # noqa: E402
from mlcore.forecasting.models import SeasonalNaiveForecaster  # noqa: E402
from mlcore.forecasting.training import train_group  # noqa: E402
from mlcore.ingest.schemas import SALES  # noqa: E402

DATASETS = Path(os.environ.get("MLCORE_DATASETS_DIR", ROOT.parent / "shared" / "datasets"))
_GROUPS: dict[int, pd.DataFrame] = {}
_RUN_DATE = dt.date(2015, 6, 14)
_CONFIG = ForecastingConfig()


def load(stores: int) -> pd.DataFrame:
    frame = pd.read_csv(DATASETS / "rossmann" / "train.csv.gz", dtype={"StateHoliday": str})
    frame = frame.rename(columns=SALES.source_names)
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    keep = sorted(frame["store"].unique())[:stores]
    return frame[frame["store"].isin(keep)].reset_index(drop=True)


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
    future = model.make_future_dataframe(periods=48)
    forecast = model.predict(future)
    return forecast[["ds", "yhat"]]


def _pool_init(groups: dict[int, pd.DataFrame]) -> None:
    quiet()
    _GROUPS.update(groups)


def _pool_task(store: int) -> tuple[int, float, dict]:
    start = time.perf_counter()
    row = train_group(_GROUPS[store], {"store": store}, _CONFIG, _RUN_DATE)
    return store, time.perf_counter() - start, row


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


def pooled(frame: pd.DataFrame, column: str) -> tuple[float, float]:
    """Pooled (RMSPE, WAPE) over open days with sales > 0."""
    part = frame[(frame["sales"] > 0) & frame[column].notna()]
    err = part["sales"] - part[column]
    rmspe = float(np.sqrt(np.mean((err / part["sales"]) ** 2)))
    wape = float(err.abs().sum() / part["sales"].sum())
    return rmspe, wape


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", type=int, default=1115)
    parser.add_argument(
        "--serial-sample", type=int, default=0, help="stores timed serially for 'ideal' (0: all)"
    )
    parser.add_argument("--run-date", default="2015-06-14")
    args = parser.parse_args()
    quiet()
    global _RUN_DATE
    _RUN_DATE = dt.date.fromisoformat(args.run_date)
    cores = os.cpu_count() or 1
    data = load(args.stores)
    stores = sorted(data["store"].unique())
    history = data[data["date"] < _RUN_DATE]
    holdout = data[(data["date"] >= _RUN_DATE) & (data["date"] < _RUN_DATE + dt.timedelta(days=48))]
    groups = {int(s): g for s, g in history.groupby("store")}
    n = len(stores)
    print(f"stores={n} run_date={_RUN_DATE} cores={cores} rows={len(history):,} (history)")

    # (a) seed loop, serial
    seed_frames = []
    start = time.perf_counter()
    for store in stores:
        out = seed_store(groups[store])
        out["store"] = store
        seed_frames.append(out)
    seed_wall = time.perf_counter() - start
    seed = pd.concat(seed_frames)
    seed["date"] = seed["ds"].dt.date

    # serial sample of the job's per-store work: the 'ideal' reference
    wanted = args.serial_sample if 0 < args.serial_sample < n else n
    sample = stores[:: max(1, n // wanted)][:wanted]  # evenly spread: cost varies with history
    start = time.perf_counter()
    for store in sample:
        train_group(groups[store], {"store": store}, _CONFIG, _RUN_DATE)
    per_store = (time.perf_counter() - start) / len(sample)
    ideal = per_store * n / cores

    # (b) process pool over all cores
    ctx = mp.get_context("fork")
    start = time.perf_counter()
    with ctx.Pool(cores, initializer=_pool_init, initargs=(groups,)) as pool:
        pool_rows = list(pool.imap_unordered(_pool_task, stores, chunksize=1))
    pool_wall = time.perf_counter() - start

    # (c) the job, on a fresh MLCORE_HOME (sales table written first, not timed)
    home = Path(tempfile.mkdtemp(prefix="mlcore_bench_"))
    os.environ["MLCORE_HOME"] = str(home)
    from mlcore.config.loader import load_config
    from mlcore.ingest.schemas import SALES_SCHEMA
    from mlcore.io import DeltaTables
    from mlcore.runner import run_job
    from mlcore.spark import get_spark

    config = load_config("local", conf_dir=ROOT / "conf")
    spark = get_spark(config.spark, "bench")
    tables = DeltaTables(spark, config)
    sales = data.assign(run_id="bench", run_date=dt.date(2015, 8, 1))[SALES_SCHEMA.fieldNames()]
    tables.write(spark.createDataFrame(sales, SALES_SCHEMA), "sales", mode="overwrite")
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
    if run_job("make_forecasts", common) != 0:
        print("make_forecasts failed")
        return 1
    forecasts = tables.read("forecasts").select("store", "ds", "yhat").toPandas()

    def line(name: str, wall: float, parallel: bool, ideal_wall: float | None) -> str:
        core_s = wall * (cores if parallel else 1) / n
        eff = f"{ideal_wall / wall:5.2f}" if ideal_wall else "   - "
        return f"{name:<34} {wall:9.1f} {n / wall:9.2f} {core_s:12.3f} {eff:>10}"

    print()
    print(f"serial train_group per store (sample of {len(sample)}): {per_store:.3f} s -> ideal on {cores} cores: {ideal:.1f} s")
    print(f"{'mode':<34} {'wall s':>9} {'groups/s':>9} {'core-s/group':>12} {'efficiency':>10}")
    print(line("(a) seed loop, serial", seed_wall, False, None))
    print(line("(b) process pool, train_group", pool_wall, True, ideal))
    print(line("(c) train_forecasts job (end to end)", job_wall, True, ideal))
    if stage_rate == stage_rate:
        stage_wall = n / stage_rate
        print(line("    of which the training stage", stage_wall, True, ideal))
    print(f"job core-seconds per store vs seed loop: {job_wall * cores / n:.3f} vs {seed_wall / n:.3f}"
          f" (ratio {job_wall * cores / seed_wall:.2f})")
    if cpu.seconds:
        used = sum(cpu.seconds.values())
        parts = ", ".join(f"{name} {sec:.1f}" for name, sec in sorted(cpu.seconds.items()))
        print(f"job CPU by process, core-s: {parts}; idle {job_wall * cores - used:.1f}"
              f" (of {job_wall * cores:.1f}); serial train_group total {per_store * n:.1f}")

    # accuracy on the 48 days from the run date
    truth = holdout[["store", "date", "sales", "open"]]
    champion = truth.merge(forecasts.rename(columns={"ds": "date", "yhat": "champion"}), on=["store", "date"], how="left")
    seeded = truth.merge(seed[["store", "date", "yhat"]].rename(columns={"yhat": "seed"}), on=["store", "date"], how="left")
    naive_frames = []
    for store in stores:
        train = groups[store].rename(columns={"date": "ds", "sales": "y"})
        train["ds"] = pd.to_datetime(train["ds"])
        future = truth[truth["store"] == store].rename(columns={"date": "ds"})
        future["ds"] = pd.to_datetime(future["ds"])
        pred = SeasonalNaiveForecaster().fit(train).predict(future)
        naive_frames.append(
            pd.DataFrame({"store": store, "date": future["ds"].dt.date.to_numpy(), "naive": pred["yhat"].to_numpy()})
        )
    naive = truth.merge(pd.concat(naive_frames), on=["store", "date"], how="left")
    print()
    print(f"accuracy, {truth['date'].min()}..{truth['date'].max()}, open days with sales > 0, {n} stores")
    for label, frame, col in (("job champions", champion, "champion"), ("seed approach", seeded, "seed"), ("seasonal naive", naive, "naive")):
        rmspe, wape = pooled(frame, col)
        print(f"  {label:<16} RMSPE {rmspe:.4f}  WAPE {wape:.4f}")
    statuses = pd.Series([r[2]["status"] for r in pool_rows]).value_counts().to_dict()
    champions = pd.Series([r[2]["champion"] for r in pool_rows]).value_counts().to_dict()
    print(f"statuses {statuses}; champions {champions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
