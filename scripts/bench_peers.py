#!/usr/bin/env python
"""Peers in the same run: our default forecasting beside the patterns users copy, on the same
Rossmann stores, with speed (series per core-second) and pooled accuracy side by side.

1. mlcore: ``train_forecasts`` + ``make_forecasts`` with the default configuration, each as its
   own process on a fresh MLCORE_HOME (LightGBM + seasonal naive, 3 backtest windows and a final
   fit per series, selection, intervals, Delta writes, MLflow registry);
2. the Databricks fine-grained demand forecasting accelerator pattern: stock ``Prophet()``
   (default backend, default 1,000 uncertainty samples) fitted and predicting inside
   ``groupBy(store).applyInPandas``, one fit per series, on open days (closed days forecast 0,
   as the Rossmann seed notebook did);
3. statsforecast on Spark: ``StatsForecast(models=[AutoETS(season_length=7)]).forecast`` given a
   Spark DataFrame (its fugue Spark backend), on every day (closed days are sales 0, a weekly
   pattern ETS sees), one fit per series.

The peers run in this process's local Spark session (``local[<cores>]``), timed from the Spark
action to the collected forecasts; mlcore's figures are the jobs' wall times end to end (JVM
start included). Series per core-second = series / (wall x cores). Accuracy is pooled over the
48 days from the run date (the last 48 days of train.csv for 2015-06-14), open days with sales
> 0. Published anchors are printed for context only (other machines, other data).

    .venv/bin/pip install -e ".[bench]"        # statsforecast and fugue (its Spark backend)
    .venv/bin/python scripts/bench_peers.py --stores 100
    .venv/bin/python scripts/bench_peers.py --stores 20 --skip-mlcore      # the peers alone
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("MLCORE_DATASETS_DIR", ROOT.parent / "shared" / "datasets"))
HORIZON = 48
ANCHORS = (
    "published anchors (context, not this machine): Prophet on Spark for M5 ~3.2 core-s per series "
    "(88 vCPU) = 0.31 series per core-s; statsforecast AutoARIMA ~0.72 series per vCPU-second "
    "(1,920 vCPU)"
)


def load(stores: int) -> pd.DataFrame:
    frame = pd.read_csv(DATASETS / "rossmann" / "train.csv.gz", dtype={"StateHoliday": str},
                        usecols=["Store", "Date", "Sales", "Open"], parse_dates=["Date"])  # fmt: skip
    frame = frame.rename(columns={"Store": "store", "Date": "ds", "Sales": "y", "Open": "open"})
    return frame[frame["store"] <= stores].sort_values(["store", "ds"]).reset_index(drop=True)


def prophet_store(history: pd.DataFrame) -> pd.DataFrame:
    """The accelerator's per-group function: stock Prophet, fit, predict the horizon."""
    import logging as logs

    from prophet import Prophet

    for name in ("cmdstanpy", "prophet"):
        logs.getLogger(name).disabled = True  # cmdstanpy logs each chain at INFO otherwise
    store = int(history["store"].iloc[0])
    train = history[history["open"] == 1][["ds", "y"]]
    model = Prophet()
    model.fit(train)
    future = model.make_future_dataframe(periods=HORIZON, include_history=False)
    forecast = model.predict(future)
    return pd.DataFrame({"store": store, "ds": forecast["ds"], "yhat": forecast["yhat"]})


def run_prophet(spark, history: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    frame = spark.createDataFrame(history[["store", "ds", "y", "open"]])
    start = time.perf_counter()
    out = (
        frame.repartition(spark.sparkContext.defaultParallelism * 4, "store")
        .groupBy("store")
        .applyInPandas(prophet_store, "store long, ds timestamp, yhat double")
        .toPandas()
    )
    return out, time.perf_counter() - start


def run_autoets(spark, history: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    frame = spark.createDataFrame(
        history.assign(unique_id=history["store"].astype(str))[["unique_id", "ds", "y"]]
    )
    start = time.perf_counter()
    model = StatsForecast(models=[AutoETS(season_length=7)], freq="D")
    out = model.forecast(df=frame, h=HORIZON).toPandas()
    wall = time.perf_counter() - start
    out = out.rename(columns={"AutoETS": "yhat"}).assign(store=lambda f: f["unique_id"].astype(int))
    return out[["store", "ds", "yhat"]], wall


def run_mlcore(stores: int, run_date: str, home: Path) -> tuple[pd.DataFrame, float, float]:
    """Ingest (untimed), then train_forecasts and make_forecasts timed as processes."""
    from deltalake import DeltaTable

    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "MLCORE_HOME": str(home)}
    common = ["--env", "local", "--run-date", run_date, "--log-level", "WARNING"]
    walls = []
    for job, extra in (("ingest_sales", []), ("train_forecasts", ["--set", f"forecasting.limit_groups={stores}"]),
                       ("make_forecasts", [])):  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "jobs" / f"{job}.py"), *common, *extra],
                              cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{job} failed: {done.stderr.strip().splitlines()[-1:]}")
        walls.append(time.perf_counter() - start)
    forecasts = DeltaTable(str(home / "lake" / "forecasts")).to_pandas(columns=["store", "ds", "yhat"])
    forecasts["ds"] = pd.to_datetime(forecasts["ds"])
    return forecasts, walls[1], walls[2]


def accuracy(truth: pd.DataFrame, forecast: pd.DataFrame) -> tuple[float, float, int]:
    """Pooled (RMSPE, WAPE, days) over open days with sales > 0; closed days are forecast 0."""
    joined = truth.merge(forecast, on=["store", "ds"], how="left")
    part = joined[(joined["open"] == 1) & (joined["y"] > 0)]
    predicted = part["yhat"].fillna(0.0).clip(lower=0.0)
    error = part["y"] - predicted
    rmspe = float(np.sqrt(np.mean((error / part["y"]) ** 2)))
    wape = float(error.abs().sum() / part["y"].sum())
    return rmspe, wape, len(part)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", type=int, default=100, help="Rossmann stores 1..N")
    parser.add_argument("--run-date", default="2015-06-14")
    parser.add_argument("--work-dir", default="/tmp/mlcore-peers", help="MLCORE_HOME of the mlcore run")
    parser.add_argument("--skip-mlcore", action="store_true")
    args = parser.parse_args(argv)
    if args.stores < 1:
        parser.error("--stores must be positive")
    cores = os.cpu_count() or 1
    run_date = pd.Timestamp(args.run_date)
    data = load(args.stores)
    history = data[data["ds"] < run_date]
    truth = data[(data["ds"] >= run_date) & (data["ds"] < run_date + pd.Timedelta(days=HORIZON))]
    rows = []
    if not args.skip_mlcore:
        forecasts, train_wall, forecast_wall = run_mlcore(args.stores, args.run_date, Path(args.work_dir))
        rows.append(("mlcore default (train_forecasts)", train_wall, None))
        rows.append(("mlcore default (+ make_forecasts)", train_wall + forecast_wall, forecasts))

    from pyspark.sql import SparkSession

    logging.getLogger("py4j").setLevel(logging.ERROR)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers: this interpreter's packages
    spark = (
        SparkSession.builder.master(f"local[{cores}]").appName("bench_peers")
        .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", str(cores * 4))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )  # fmt: skip
    spark.sparkContext.setLogLevel("ERROR")
    prophet, wall = run_prophet(spark, history)
    rows.append(("Prophet in applyInPandas (accelerator)", wall, prophet))
    ets, wall = run_autoets(spark, history)
    rows.append(("statsforecast AutoETS on Spark", wall, ets))
    spark.stop()

    n = args.stores
    print(f"\n{n} Rossmann stores (1..{n}), run date {args.run_date}, {cores} cores, horizon {HORIZON} days")
    print(f"{'approach':<42} {'wall s':>8} {'core-s/series':>13} {'series/core-s':>13} {'RMSPE':>7} {'WAPE':>7}")
    for name, wall, forecast in rows:
        core_s = wall * cores / n
        scores = accuracy(truth, forecast) if forecast is not None else None
        quality = f"{scores[0]:7.4f} {scores[1]:7.4f}" if scores else f"{'-':>7} {'-':>7}"
        print(f"{name:<42} {wall:8.1f} {core_s:13.3f} {1 / core_s:13.2f} {quality}")
    print("mlcore fits 4 models per series per family (3 backtest windows + the final fit) and "
          "selects; the peers fit once. mlcore's walls include JVM start, Delta writes and MLflow.")
    print(ANCHORS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
