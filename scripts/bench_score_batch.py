"""Benchmark: score_batch with its two scorers run concurrently versus one after the other.

In one process and one Spark application (a fresh MLCORE_HOME unless --home): ingest the real
bank and taxi data, train the classifier (small search) and the anomaly model, then run
``score_batch`` alternately in ``sequential`` and ``parallel`` mode on the same inputs (each run a
new ``run.revision`` so nothing is skipped as already written), and print wall times and the
ratio. Figures depend on the machine (2 cores here) and on what else runs on it.

    .venv/bin/python scripts/bench_score_batch.py [--repeats 2] [--rides-days 31]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_DATE = "2019-02-01"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode (alternating)")
    parser.add_argument("--rides-days", type=int, default=31, help="days of rides scored per run")
    parser.add_argument("--train-iter", type=int, default=2, help="classifier search candidates")
    parser.add_argument("--home", help="MLCORE_HOME to use (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="mlcore_bench_batch_"))
    os.environ["MLCORE_HOME"] = str(home)
    sys.path.insert(0, str(ROOT))
    from mlcore.runner import run_job

    base = ["--env", "local", "--conf-dir", str(ROOT / "conf"), "--run-date", RUN_DATE, "--log-level", "WARNING"]
    try:
        for job, extra in (
            ("ingest_bank", []),
            ("ingest_rides", []),
            ("train_classifier", ["--set", f"classification.n_iter={args.train_iter}"]),
            ("train_anomaly_model", []),
        ):
            if run_job(job, base + extra) != 0:
                print(f"setup step {job} failed", file=sys.stderr)
                return 1
        times: dict[str, list[float]] = {"sequential": [], "parallel": []}
        revision = 1
        for _ in range(args.repeats):
            for mode in ("sequential", "parallel"):
                revision += 1
                started = time.perf_counter()
                rc = run_job(
                    "score_batch",
                    base
                    + ["--set", f"score_batch.mode={mode}", "--set", f"run.revision={revision}",
                       "--set", f"anomaly.batch_days={args.rides_days}"],
                )  # fmt: skip
                if rc != 0:
                    print(f"score_batch ({mode}) failed", file=sys.stderr)
                    return 1
                times[mode].append(time.perf_counter() - started)
        seq, par = statistics.median(times["sequential"]), statistics.median(times["parallel"])
        print("\n== score_batch: classifier (bank, 45,211 rows) + anomaly model "
              f"({args.rides_days} days of taxi rides), one Spark application ==")  # fmt: skip
        for mode, values in times.items():
            print(f"  {mode:<10}  " + "  ".join(f"{v:6.1f} s" for v in values) + f"   median {statistics.median(values):.1f} s")
        print(f"  parallel / sequential (medians): {par / seq:.2f}  (speed-up {seq / par:.2f}x)")
        print(f"  cores: {os.cpu_count()}; machine shared, figures +-10-20%")
    finally:
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
