#!/usr/bin/env python
"""Per-store cost of ``mlcore.forecasting.train_group`` on real Rossmann stores (serial, 1 core).

Prints the median/mean per store of: the whole ``train_group`` call, its ``backtest_seconds`` and
``fit_seconds``, and a finer split measured by timing the model methods (Prophet fit, Prophet
predict, Prophet JSON, seasonal naive, the rest = data preparation, metrics, glue). With
``--seed-baseline`` it also times the seed notebook's workload on the same stores (Prophet
defaults fitted on all open days, then ``predict`` of history + 48 days with 1000 uncertainty
samples), the ~0.185 s/store reference of design/perf-baseline.md section 1.
``--optimizer cmdstan`` fits with Prophet's own CmdStan backend instead of the in-process one.
``--warm-start-from DATE`` measures warm starts: models trained as of DATE (untimed) seed the
final fits as of ``--run-date``; it prints final-fit seconds cold vs warm and how far the warm
models' forecasts of the next 48 days are from the cold models'.

    .venv/bin/python scripts/profile_train_group.py --stores 40 --seed-baseline
    .venv/bin/python scripts/profile_train_group.py --stores 100 --warm-start-from 2015-05-17
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlcore.config.models import ForecastingConfig  # noqa: E402
from mlcore.forecasting import models as models_mod  # noqa: E402
from mlcore.forecasting import training as training_mod  # noqa: E402
from mlcore.forecasting.training import train_group  # noqa: E402

DEFAULT_CSV = (
    Path(os.environ.get("MLCORE_DATASETS_DIR", ROOT.parent / "shared" / "datasets"))
    / "rossmann"
    / "train.csv.gz"
)
COLUMNS = {
    "Store": "store",
    "Date": "date",
    "Sales": "sales",
    "Open": "open",
    "Promo": "promo",
    "StateHoliday": "state_holiday",
    "SchoolHoliday": "school_holiday",
}

TIMES: dict[str, float] = defaultdict(float)


def _timed(cls: type, method: str, label: str) -> None:
    original = getattr(cls, method)

    def wrapper(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            TIMES[label] += time.perf_counter() - t0

    setattr(cls, method, wrapper)


def _instrument() -> None:
    _timed(models_mod.ProphetForecaster, "fit", "prophet_fit")
    _timed(models_mod.ProphetForecaster, "predict", "prophet_predict")
    _timed(models_mod.ProphetForecaster, "to_json", "prophet_json")
    _timed(models_mod.SeasonalNaiveForecaster, "fit", "naive")
    _timed(models_mod.SeasonalNaiveForecaster, "predict", "naive")
    _timed(models_mod.SeasonalNaiveForecaster, "to_json", "naive")
    original = training_mod.prepare_history

    def prepare(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES["prepare"] += time.perf_counter() - t0

    training_mod.prepare_history = prepare


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the CmdStan processes
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} {statistics.fmean(values) * 1000:7.1f}"


def _seed_workload(history: pd.DataFrame) -> None:
    api = models_mod._prophet_api()
    df = history[history["open"] == 1]
    df = pd.DataFrame({"ds": pd.to_datetime(df["date"]), "y": df["sales"]})
    m = api.Prophet()
    m.fit(df)
    m.predict(m.make_future_dataframe(periods=48))


def warm_start_effect(
    groups: dict[int, pd.DataFrame], config: ForecastingConfig, previous_date: dt.date, run_date: dt.date
) -> None:
    """Final-fit seconds and forecast change of warm starts (models of ``previous_date``)."""
    import numpy as np

    from mlcore.forecasting.models import load_model

    warm_config = replace(config, warm_start=True)
    cold_s, warm_s, diffs, warmed = [], [], [], 0
    for store, history in groups.items():
        previous = train_group(history, {"store": store}, config, previous_date)
        cold = train_group(history, {"store": store}, config, run_date)
        warm = train_group(history, {"store": store}, warm_config, run_date, previous["model_json"])
        cold_s.append(cold["fit_seconds"])
        warm_s.append(warm["fit_seconds"])
        warmed += bool(warm.get("warm_started"))
        if cold["champion"] == warm["champion"] == "prophet":
            future = history[pd.to_datetime(history["date"]) >= pd.Timestamp(run_date)].head(48)
            future = future.rename(columns={"date": "ds"})
            a = load_model(cold["model_json"]).predict(future)["yhat"].to_numpy()
            b = load_model(warm["model_json"]).predict(future)["yhat"].to_numpy()
            is_open = a > 0
            diffs.append(np.abs(a[is_open] - b[is_open]) / a[is_open])
    rel = np.concatenate(diffs) if diffs else np.zeros(1)
    print(f"{len(groups)} stores; previous models as of {previous_date}, run date {run_date}; "
          f"{warmed} final fits warm-started ({config.prophet.optimizer} optimizer)")
    print(f"final fit (s/store)  cold median {statistics.median(cold_s):.4f} mean {statistics.fmean(cold_s):.4f}"
          f" | warm median {statistics.median(warm_s):.4f} mean {statistics.fmean(warm_s):.4f}")
    print(f"next-48-day forecasts, warm vs cold: median relative difference {np.median(rel):.4%}, "
          f"p99 {np.quantile(rel, 0.99):.4%}, max {rel.max():.4%} over {rel.size} open days")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--stores", type=int, default=40, help="stores 1..N (default 40)")
    parser.add_argument("--run-date", default="2015-06-14")
    parser.add_argument("--backtest-windows", type=int, default=1)
    parser.add_argument("--seed-baseline", action="store_true", help="also time the seed workload")
    parser.add_argument(
        "--no-fast-stan-json", action="store_true", help="let cmdstanpy write its JSON inputs"
    )
    parser.add_argument("--optimizer", choices=["inprocess", "cmdstan"], default="inprocess")
    parser.add_argument("--warm-start-from", help="measure warm starts from models of this date")
    args = parser.parse_args()
    if args.no_fast_stan_json:
        models_mod.FAST_STAN_JSON = False

    df = pd.read_csv(args.csv, usecols=list(COLUMNS), dtype={"StateHoliday": str}).rename(
        columns=COLUMNS
    )
    df = df[df["store"] <= args.stores]
    df["date"] = pd.to_datetime(df["date"]).dt.date
    groups = {int(s): g.reset_index(drop=True) for s, g in df.groupby("store")}
    config = ForecastingConfig(backtest_windows=args.backtest_windows)
    config = replace(config, prophet=replace(config.prophet, optimizer=args.optimizer))
    run_date = dt.date.fromisoformat(args.run_date)
    if args.warm_start_from:
        warm_start_effect(groups, config, dt.date.fromisoformat(args.warm_start_from), run_date)
        return
    _instrument()

    first = next(iter(groups))
    train_group(groups[first], {"store": first}, config, run_date)  # warm-up: import, JIT, caches
    rows: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, int] = defaultdict(int)
    champions: dict[str, int] = defaultdict(int)
    cpu0, wall0 = _cpu(), time.perf_counter()
    for store, history in groups.items():
        TIMES.clear()
        t0 = time.perf_counter()
        row = train_group(history, {"store": store}, config, run_date)
        total = time.perf_counter() - t0
        statuses[row["status"]] += 1
        champions[str(row["champion"])] += 1
        rows["train_group total"].append(total)
        rows["  backtest_seconds"].append(row["backtest_seconds"])
        rows["  fit_seconds"].append(row["fit_seconds"])
        for label in ("prophet_fit", "prophet_predict", "prophet_json", "naive", "prepare"):
            rows[f"  {label}"].append(TIMES[label])
        rows["  other (metrics, points, glue)"].append(total - sum(TIMES.values()))
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0

    n = len(groups)
    print(
        f"{n} stores, run date {run_date}, backtest windows {config.backtest_windows}, "
        f"optimizer {args.optimizer}, fast stan json {models_mod.FAST_STAN_JSON}"
    )
    print(f"statuses {dict(statuses)}  champions {dict(champions)}")
    print(f"{'per store (ms)':34s} {'median':>7s} {'mean':>7s}")
    for label, values in rows.items():
        print(f"{label:34s} {_ms(values)}")
    print(
        f"wall {wall:.2f} s = {wall / n * 1000:.1f} ms/store; "
        f"CPU incl. CmdStan {cpu:.2f} s = {cpu / n * 1000:.1f} ms/store"
    )

    if args.seed_baseline:
        _seed_workload(groups[first])
        times = []
        cpu0 = _cpu()
        for history in groups.values():
            t0 = time.perf_counter()
            _seed_workload(history)
            times.append(time.perf_counter() - t0)
        print(
            f"{'seed workload (fit + predict hist+48, 1000 samples)':34s} {_ms(times)}  "
            f"CPU {(_cpu() - cpu0) / n * 1000:.1f} ms/store"
        )


if __name__ == "__main__":
    main()
