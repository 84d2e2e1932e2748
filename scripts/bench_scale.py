#!/usr/bin/env python
"""The cost curve of store x item forecasting: train_forecasts and make_forecasts at ~1,115,
10,000 and 30,000 series with the default configuration, end to end, one size after another.

Per size, in a fresh MLCORE_HOME under ``--work-dir``:

1. ``ingest_sales --set sources.sales.items_per_store=K`` with K = ceil(size / 1,115): the real
   Rossmann stores x K generated items (mlcore.ingest.items);
2. ``train_forecasts`` then ``make_forecasts`` with ``forecasting.group_keys=[store,item]`` and
   ``forecasting.limit_groups=<size>``, each as its own process (``jobs/<job>.py``), watched
   through /proc every 0.25 s: wall time, CPU by process (driver Python, JVM, Spark's Python
   workers) and each one's peak RSS; MLflow tracking + registry calls counted in the job
   process (scripts/mlflow_calls);
3. the serial reference, after the jobs (nothing else running): ``train_group`` and
   ``forecast_group_checked`` (the per-series work of each job's grouped stage) on a sample of
   ``--serial-sample`` series spread evenly over the sorted keys, features precomputed as the
   grouped stage receives them.

Efficiency = ideal / wall, ideal = serial seconds per series x series / cores. Core-seconds
per series = wall x cores / series. The fixed overhead is the intercept of a least-squares line
of core-seconds (wall x cores) against series over the sizes. Writes ``cost_curve.json`` and
``cost_curve.png`` to ``--out``.

    .venv/bin/python scripts/bench_scale.py                        # 1115, 10000, 30000 (~1.5 h)
    .venv/bin/python scripts/bench_scale.py --sizes 1115,10000 --serial-sample 200
    .venv/bin/python scripts/bench_scale.py --sizes 300 --serial-sample 30    # a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlcore.config.models import ForecastingConfig  # noqa: E402
from mlcore.forecasting.features import add_features_pandas, calendar_columns, context_days  # noqa: E402
from mlcore.forecasting.prediction import forecast_group_checked  # noqa: E402
from mlcore.forecasting.training import train_group  # noqa: E402

STORES = 1115
KEYS = ["store", "item"]
CONFIG = ForecastingConfig(group_keys=KEYS)
PAGE = 4096


@dataclass
class JobRun:
    """One job process as watched from outside."""

    job: str
    wall_s: float
    exit_code: int
    cpu_s: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    mlflow_calls: int = 0
    mlflow_by_call: dict[str, int] = field(default_factory=dict)


class ProcessTree:
    """Samples a process and its descendants from /proc: CPU seconds and peak RSS by kind."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.cpu: dict[int, tuple[str, float]] = {}
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _kind(self, pid: int, argv: list[bytes]) -> str:
        if pid == self.root:
            return "driver python"
        if argv and argv[0].endswith(b"java"):
            return "jvm"
        return "python workers"

    def sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        parents: dict[int, int] = {}
        stats: dict[int, list[str]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            stats[int(entry)] = fields
        tree = {self.root}
        grew = True
        while grew:
            grew = False
            for pid, parent in parents.items():
                if parent in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        rss: dict[str, float] = {}
        for pid in tree & stats.keys():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            kind = self._kind(pid, argv)
            fields = stats[pid]
            self.cpu[pid] = (kind, (int(fields[11]) + int(fields[12])) / tick)
            rss[kind] = rss.get(kind, 0.0) + int(fields[21]) * PAGE / 2**20
        for kind, mib in rss.items():
            self.peak[kind] = max(self.peak.get(kind, 0.0), mib)

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            self.sample()

    def __enter__(self) -> ProcessTree:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind, seconds in self.cpu.values():
            out[kind] = out.get(kind, 0.0) + seconds
        return out


def run_job(home: Path, job: str, run_date: str, sets: list[str], log: Path) -> JobRun:
    calls = home / f"mlflow_calls_{job}.json"
    env = {
        **os.environ,
        "MLCORE_HOME": str(home),
        "MLCORE_BENCH_MLFLOW_CALLS": str(calls),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "scripts" / "mlflow_calls"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    argv = [sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--env", "local",
            "--run-date", run_date, "--log-level", "WARNING"]  # fmt: skip
    for item in sets:
        argv += ["--set", item]
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        start = time.perf_counter()
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        with ProcessTree(process.pid) as tree:
            code = process.wait()
        wall = time.perf_counter() - start
    counts = json.loads(calls.read_text()) if calls.exists() else {}
    return JobRun(job, wall, code, tree.cpu_by_kind(), dict(tree.peak), sum(counts.values()), counts)


def read_table(home: Path, name: str, stores: list[int] | None = None) -> pd.DataFrame:
    from deltalake import DeltaTable

    table = DeltaTable(str(home / "lake" / name))
    filters = [("store", "in", stores)] if stores else None
    return table.to_pandas(filters=filters)


def serial_reference(home: Path, run_date: dt.date, sample: int) -> dict[str, float]:
    """Seconds per series of each job's grouped work, run serially on an even sample."""
    logging.disable(logging.WARNING)  # the sample's skipped series say so, as in the job's logs
    models = read_table(home, "forecast_models")
    models = models[models["run_date"] == run_date].sort_values(KEYS).reset_index(drop=True)
    picked = models.iloc[:: max(1, len(models) // sample)].head(sample)
    stores = sorted({int(s) for s in picked["store"]})
    sales = read_table(home, "sales", stores)
    attributes = read_table(home, "stores")
    horizon_end = run_date + dt.timedelta(days=CONFIG.horizon_days)
    around = dt.timedelta(days=context_days(CONFIG))
    columns = [*KEYS, "date", "sales", *calendar_columns(CONFIG)]
    train_s = forecast_s = 0.0
    for _, model_row in picked.iterrows():
        key_values = {k: int(model_row[k]) for k in KEYS}
        rows = sales[(sales["store"] == key_values["store"]) & (sales["item"] == key_values["item"])]
        rows = rows[columns].sort_values("date").reset_index(drop=True)
        history = rows[rows["date"] < run_date + around].copy()
        history.loc[history["date"] >= run_date, "sales"] = None
        featured = add_features_pandas(history, CONFIG, attributes)
        featured = featured[featured["date"] < run_date].reset_index(drop=True)
        start = time.perf_counter()
        train_group(featured, key_values, CONFIG, run_date)
        train_s += time.perf_counter() - start
        future = rows[(rows["date"] >= run_date - around) & (rows["date"] < horizon_end + around)]
        future = add_features_pandas(future.drop(columns="sales").reset_index(drop=True), CONFIG, attributes)
        future = future[(future["date"] >= run_date) & (future["date"] < horizon_end)]
        start = time.perf_counter()
        forecast_group_checked(model_row, future.reset_index(drop=True), key_values, CONFIG)
        forecast_s += time.perf_counter() - start
    return {"series": len(picked), "train_s": train_s / len(picked), "forecast_s": forecast_s / len(picked)}


def measure(size: int, args: argparse.Namespace, cores: int) -> dict:
    items = math.ceil(size / STORES)
    home = Path(args.work_dir) / f"series_{size}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    log = home / "jobs.log"
    ingest = run_job(home, "ingest_sales", args.run_date, [f"sources.sales.items_per_store={items}"], log)
    keyed = ["forecasting.group_keys=[store,item]", f"forecasting.limit_groups={size}"]
    runs = {"ingest_sales": ingest}
    for job in ("train_forecasts", "make_forecasts"):
        if runs[list(runs)[-1]].exit_code != 0:
            break
        runs[job] = run_job(home, job, args.run_date, keyed, log)
        print(f"  {size:>6} series: {job} {runs[job].wall_s:.0f} s (exit {runs[job].exit_code})", flush=True)
    failed = [name for name, run in runs.items() if run.exit_code != 0]
    if failed or len(runs) < 3:
        raise SystemExit(f"{failed or 'a job'} failed at {size} series: see {log}")
    serial = serial_reference(home, dt.date.fromisoformat(args.run_date), args.serial_sample)
    out = {"series": size, "items_per_store": items, "cores": cores, "serial": serial,
           "jobs": {name: asdict(run) for name, run in runs.items()}}  # fmt: skip
    for job, per_series in (("train_forecasts", serial["train_s"]), ("make_forecasts", serial["forecast_s"])):
        run = runs[job]
        out["jobs"][job]["core_s_per_series"] = run.wall_s * cores / size
        out["jobs"][job]["efficiency"] = per_series * size / cores / run.wall_s
    if not args.keep:
        shutil.rmtree(home / "lake", ignore_errors=True)
    return out


def fit_line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(intercept, slope) of core-seconds against series."""
    if len(points) < 2:
        return float("nan"), float("nan")
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def report(results: list[dict], out: Path) -> None:
    results = sorted(results, key=lambda result: result["series"])
    print()
    header = (f"{'job':<16} {'series':>7} {'wall s':>8} {'core-s/series':>13} {'serial s/series':>15} "
              f"{'efficiency':>10} {'driver py MiB':>13} {'JVM MiB':>8} {'MLflow calls':>12}")  # fmt: skip
    print(header)
    summary = {}
    for job in ("train_forecasts", "make_forecasts"):
        points = []
        for result in results:
            run = result["jobs"][job]
            serial = result["serial"]["train_s" if job == "train_forecasts" else "forecast_s"]
            peak = run["peak_rss_mib"]
            print(f"{job:<16} {result['series']:>7,} {run['wall_s']:8.1f} {run['core_s_per_series']:13.4f} "
                  f"{serial:15.4f} {run['efficiency']:10.2f} {peak.get('driver python', 0):13.0f} "
                  f"{peak.get('jvm', 0):8.0f} {run['mlflow_calls']:>12}")  # fmt: skip
            points.append((result["series"], run["wall_s"] * result["cores"]))
        intercept, slope = fit_line(points)
        per_series = [r["jobs"][job]["core_s_per_series"] for r in results]
        spread = max(per_series) / min(per_series) - 1
        summary[job] = {"intercept_core_s": intercept, "slope_core_s_per_series": slope,
                        "core_s_per_series_spread": spread}  # fmt: skip
        print(f"{job}: fixed overhead (intercept) {intercept:.1f} core-s, marginal {slope:.4f} "
              f"core-s/series; core-s/series spread over sizes {spread:.1%}")
    for result in results:
        cpu = result["jobs"]["train_forecasts"]["cpu_s"]
        parts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(cpu.items()))
        print(f"train_forecasts CPU at {result['series']:,} series (core-s): {parts}; serial sample "
              f"{result['serial']['series']} series")
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost_curve.json").write_text(json.dumps({"sizes": results, "fit": summary}, indent=1))
    plot(results, summary, out / "cost_curve.png")
    print(f"wrote {out / 'cost_curve.json'} and {out / 'cost_curve.png'}")


def plot(results: list[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["series"] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for job, marker in (("train_forecasts", "o"), ("make_forecasts", "s")):
        left.plot(sizes, [r["jobs"][job]["core_s_per_series"] for r in results], marker=marker, label=job)
        right.plot(sizes, [r["jobs"][job]["efficiency"] for r in results], marker=marker, label=job)
    left.set(xscale="log", xlabel="series", ylabel="core-seconds per series", title="Cost per series")
    right.axhline(0.9, color="grey", linestyle="--", linewidth=1, label="target 0.9")
    right.set(xscale="log", xlabel="series", ylabel="efficiency (ideal / wall)", title="Efficiency",
              ylim=(0, 1.05))  # fmt: skip
    for axis in (left, right):
        axis.legend()
        axis.grid(alpha=0.3)
    fig.suptitle(f"store x item forecasting, {results[0]['cores']} cores (default configuration)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1115,10000,30000", help="series per run, comma separated")
    parser.add_argument("--run-date", default="2015-06-14")
    parser.add_argument("--serial-sample", type=int, default=200, help="series timed serially per size")
    parser.add_argument("--work-dir", default="/tmp/mlcore-scale", help="a fresh MLCORE_HOME per size below it")
    parser.add_argument("--out", default=None, help="where cost_curve.json/png go (default: --work-dir)")
    parser.add_argument("--keep", action="store_true", help="keep each size's lake")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes: comma-separated integers, got {args.sizes!r}")
    if not sizes or min(sizes) < 1 or args.serial_sample < 1:
        parser.error("--sizes and --serial-sample must be positive")
    cores = os.cpu_count() or 1
    results = []
    for size in sizes:
        print(f"{size:,} series ({math.ceil(size / STORES)} items per store), {cores} cores", flush=True)
        results.append(measure(size, args, cores))
        report(results, Path(args.out or args.work_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
