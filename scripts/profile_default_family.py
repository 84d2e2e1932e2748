#!/usr/bin/env python
"""Where one series' training time goes with the default configuration (serial, one core).

Runs ``mlcore.forecasting.train_group`` (LightGBM + seasonal naive, 3 rolling backtest windows,
selection, final fit, JSON) on real Rossmann stores with the shared features already computed,
as the grouped stage receives them, and splits each store's time by timing the steps from the
outside (wrappers around LightGBM and the family methods; the code under test is unchanged):

    boosting         lightgbm.train less the dataset (the trees: the physical core of the work)
    dataset          lightgbm.Dataset construction (binning the design matrix)
    predict          Booster.predict (in-sample residuals for the intervals, window forecasts)
    serialise        the model to JSON (booster text, zlib, base64)
    seasonal naive   the fallback family (fit, predict, JSON)
    rest             data rules, features' dtypes, metrics, selection, row building

    .venv/bin/python scripts/profile_default_family.py --stores 100
    .venv/bin/python scripts/bench_revisions.py --base REV -- scripts/profile_default_family.py --stores 100
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlcore.config.models import ForecastingConfig  # noqa: E402
from mlcore.forecasting.features import add_features_pandas  # noqa: E402
from mlcore.forecasting.training import train_group  # noqa: E402
from mlcore.ingest.schemas import SALES, STORES  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets" / "rossmann"


def load(stores: int, run_date: dt.date, config: ForecastingConfig) -> list[tuple[int, pd.DataFrame]]:
    raw = pd.read_csv(DATASETS / "train.csv.gz", dtype={"StateHoliday": str}, parse_dates=["Date"])
    raw = raw[raw["Store"] <= stores].rename(columns=SALES.source_names)
    raw["date"] = raw["date"].dt.date
    attributes = pd.read_csv(DATASETS / "store.csv.gz").rename(columns=STORES.source_names)
    history = raw[raw["date"] < run_date]
    return [
        (int(store), add_features_pandas(rows.reset_index(drop=True), config, attributes))
        for store, rows in history.groupby("store")
    ]


class Timers:
    """Wraps functions so that each call's own time (less that of wrapped calls inside it) is
    added to a named bucket."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []  # per open call: time spent in wrapped calls inside it

    def wrap(self, owner: object, name: str, bucket: str) -> None:
        original = getattr(owner, name)
        timers = self

        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            timers._inner.append(0.0)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                inner = timers._inner.pop()
                timers.seconds[bucket] += elapsed - inner
                if timers._inner:
                    timers._inner[-1] += elapsed

        setattr(owner, name, timed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=100, help="stores 1..N of train.csv")
    parser.add_argument("--run-date", default="2015-06-14")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes (the first is a warm-up)")
    args = parser.parse_args(argv)
    import lightgbm

    from mlcore.forecasting import gbm, models

    config = ForecastingConfig()
    run_date = dt.date.fromisoformat(args.run_date)
    groups = load(args.stores, run_date, config)
    timers = Timers()
    timers.wrap(lightgbm, "train", "boosting")
    timers.wrap(lightgbm.Dataset, "construct", "dataset")
    timers.wrap(lightgbm.Booster, "predict", "predict")
    timers.wrap(gbm.LightGBMForecaster, "to_json", "serialise")
    for method in ("fit", "predict", "to_json"):
        timers.wrap(models.SeasonalNaiveForecaster, method, "seasonal naive")
    per_store: list[float] = []
    for _attempt in range(args.repeats):
        timers.seconds.clear()
        per_store.clear()
        started = time.perf_counter()
        for store, history in groups:
            began = time.perf_counter()
            row = train_group(history, {"store": store}, config, run_date)
            per_store.append(time.perf_counter() - began)
            assert row["status"] in ("ok", "fallback"), (store, row["status"], row["status_reason"])
        total = time.perf_counter() - started
    count = len(groups)
    print(f"train_group, default configuration, {count} stores, run date {run_date}, one core, pass {args.repeats}")
    print(f"per store: mean {total / count * 1000:.1f} ms, median {statistics.median(per_store) * 1000:.1f} ms")
    shown = sum(timers.seconds.values())
    rows = [*sorted(timers.seconds.items(), key=lambda item: -item[1]), ("rest", total - shown)]
    print(f"{'step':<16} {'ms/store':>9} {'share':>7}")
    for name, seconds in rows:
        print(f"{name:<16} {seconds / count * 1000:>9.2f} {seconds / total:>7.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
