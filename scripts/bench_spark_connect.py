#!/usr/bin/env python
"""Classic Spark vs Spark Connect, measured side by side in one run (issue 19).

1. Jobs: on one MLCORE_HOME (real Rossmann and bank data ingested, a classifier champion
   trained first, untimed), ``train_forecasts`` over ``--stores`` stores (default all 1,115) and
   ``score_classifier`` over the bank table, each once as a classic job process and once as a
   Spark Connect client of a local server (``scripts/connect_server.sh``, same ``local[2]``
   master). The second run of a job republishes with ``run.revision`` bumped, so both do the
   same work. Time is the job process's wall time; the classic figure includes starting its own
   JVM, the Connect figure does not (the server is up, as on Databricks), so ``in-job`` times
   (the job's own summary line) are printed too.
2. Model shipping memory: the classifier and anomaly scorers score ``--rows`` rows in
   ``--partitions`` tasks, with the model broadcast (classic, before) and captured in the UDF's
   closure (classic forced, and over Connect: after). A sampler reads /proc every 0.1 s for the
   peak RSS of the Python workers (sum and largest) and of the JVM doing the work.

Prints every figure and the Connect/classic ratios (target: Connect <= 1.15 x classic). Timings
on a shared 2-core machine: compare the ratios of one run, not figures across runs.

    .venv/bin/python scripts/bench_spark_connect.py                  # ~15 min on 2 cores
    .venv/bin/python scripts/bench_spark_connect.py --stores 100 --rows 500000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "scripts" / "connect_server.sh"
RUN_DATE = "2015-06-14"
TARGET_RATIO = 1.15


# ----------------------------------------------------------------------------------------------
# Peak memory of a process tree, from /proc
# ----------------------------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry))
    return tree


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class PeakMemory:
    """Peak RSS under the given root processes: Python workers (sum and largest) and JVMs."""

    def __init__(self, *roots: int) -> None:
        self.roots = roots
        self.workers_sum = self.worker_max = self.jvm = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            tree = _children()
            pending, seen = list(self.roots), []
            while pending:
                pid = pending.pop()
                seen.append(pid)
                pending.extend(tree.get(pid, []))
            workers, jvm = [], 0.0
            for pid in seen:
                command = _cmdline(pid)
                if "pyspark.daemon" in command or "pyspark.worker" in command:
                    workers.append(_rss_mib(pid))
                elif "java" in command.split(" ", 1)[0]:
                    jvm += _rss_mib(pid)
            self.workers_sum = max(self.workers_sum, sum(workers))
            self.worker_max = max(self.worker_max, max(workers, default=0.0))
            self.jvm = max(self.jvm, jvm)


# ----------------------------------------------------------------------------------------------
# The Connect server and the jobs
# ----------------------------------------------------------------------------------------------
def _server_env(home: str, port: int) -> dict[str, str]:
    return {**os.environ, "MLCORE_HOME": home, "MLCORE_CONNECT_PORT": str(port)}


def start_server(home: str) -> tuple[str, int, int]:
    """(sc:// url, port, server pid) of a local Connect server (delta-rs engine: no jars)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run([str(SERVER), "start"], env=_server_env(home, port),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the Connect server did not start: {done.stderr.strip()}")
    pid = int((Path(home) / "connect-server" / "server.pid").read_text().strip())
    return done.stdout.strip(), port, pid


def stop_server(home: str, port: int) -> None:
    subprocess.run([str(SERVER), "stop"], env=_server_env(home, port), capture_output=True,
                   timeout=120)  # fmt: skip


def run_job(home: str, job: str, *sets: str, remote: str | None = None,
            watch: tuple[int, ...] = ()) -> tuple[float, float | None, PeakMemory]:  # fmt: skip
    """(process wall s, the job's own wall-time line s, peak memory) of one job run."""
    args = [sys.executable, str(REPO / "jobs" / f"{job}.py"), "--env", "local",
            "--run-date", RUN_DATE, "--set", "storage.delta_engine=deltars"]  # fmt: skip
    for item in sets:
        args += ["--set", item]
    env = {**os.environ, "MLCORE_HOME": home}
    env.pop("SPARK_REMOTE", None)
    if remote:
        env["SPARK_REMOTE"] = remote
    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    with PeakMemory(process.pid, *watch) as memory:
        stdout, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        mode = "Spark Connect" if remote else "classic"
        raise SystemExit(f"{job} ({mode}) failed: {(stderr or stdout).strip().splitlines()[-1:]}")
    own = re.search(r"wall time\s+([\d.]+) s", stdout)
    return elapsed, float(own.group(1)) if own else None, memory


# ----------------------------------------------------------------------------------------------
# Model shipping: one scoring pass per mode, in a process of its own
# ----------------------------------------------------------------------------------------------
def probe(mode: str, home: str, rows: int, partitions: int, remote: str | None) -> int:
    """Score ``rows`` rows with both scorers; print {scorer: seconds} as JSON."""
    import numpy as np
    import pandas as pd
    from pyspark.sql import functions as F

    from mlcore.anomaly import scoring as anomaly_scoring
    from mlcore.anomaly.detector import build_detector
    from mlcore.classification import scoring as classifier_scoring
    from mlcore.classification.features import FeatureSpec
    from mlcore.config.loader import load_config
    from mlcore.io import DeltaTables, model_files
    from mlcore.spark import get_spark
    from mlcore.spark_classic import Captured

    if mode == "captured":  # classic session, model in the closure as over Connect
        for module in (anomaly_scoring, classifier_scoring):
            module.share = lambda spark, value: Captured(value)  # type: ignore[attr-defined]
    overrides = ["storage.delta_engine=deltars"] + ([f"spark.remote={remote}"] if remote else [])
    config = load_config("local", environ={**os.environ, "MLCORE_HOME": home}, overrides=overrides)
    spark = get_spark(config.spark, f"bench_connect_{mode}")
    sys.path.insert(0, str(REPO / "scripts"))
    from bench_scoring import load_champion

    _, model, info = load_champion(config)
    spec = FeatureSpec.from_dict(info["features"])
    bank = DeltaTables(spark, config).read("bank").drop("run_id", "run_date")
    bank_rows = bank.count()
    copies = spark.range(0, max(1, rows // bank_rows), 1, numPartitions=partitions)
    data = copies.crossJoin(F.broadcast(bank)).drop("id")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    scoring = classifier_scoring.scoring(data, model_files.dumps(model), spec, 0.5)
    scoring.frame().agg(F.sum("label")).collect()
    seconds["classifier"] = time.perf_counter() - started

    names = [f"f{i}" for i in range(6)]
    generator = np.random.default_rng(7)
    detector = build_detector("isolation_forest", 7, {"n_estimators": 400})
    detector.fit(pd.DataFrame(generator.normal(size=(20_000, len(names))), columns=names))
    features = spark.range(0, rows, 1, numPartitions=partitions).select(
        "id", *[(F.randn(i) * 1.0).alias(name) for i, name in enumerate(names)]
    )
    started = time.perf_counter()
    scored = anomaly_scoring.score_rides(features, model_files.dumps(detector), names, 0.6)
    scored.agg(F.sum(F.col("is_anomaly").cast("int"))).collect()
    seconds["anomaly"] = time.perf_counter() - started
    seconds["classifier_model_mib"] = len(model_files.dumps(model)) / 2**20
    seconds["anomaly_model_mib"] = len(model_files.dumps(detector)) / 2**20
    print("PROBE " + json.dumps(seconds))
    return 0


def run_probe(mode: str, home: str, rows: int, partitions: int, remote: str | None,
              server_pid: int | None) -> tuple[dict[str, float], PeakMemory]:  # fmt: skip
    args = [sys.executable, __file__, "--probe", mode, "--home", home, "--rows", str(rows),
            "--partitions", str(partitions)] + (["--remote", remote] if remote else [])  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    watch = (process.pid,) + ((server_pid,) if server_pid else ())
    with PeakMemory(*watch) as memory:
        stdout, stderr = process.communicate()
    found = [line for line in stdout.splitlines() if line.startswith("PROBE ")]
    if process.returncode != 0 or not found:
        raise SystemExit(f"probe {mode} failed: {stderr.strip().splitlines()[-3:]}")
    return json.loads(found[-1][len("PROBE "):]), memory


# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=None, help="default: all 1,115")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows per scorer (memory)")
    parser.add_argument("--partitions", type=int, default=16, help="scoring tasks (memory)")
    parser.add_argument("--train-iter", type=int, default=2, help="the champion's search n_iter")
    parser.add_argument("--probe", choices=["broadcast", "captured", "connect"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--remote", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        return probe(args.probe, args.home, args.rows, args.partitions, args.remote)

    home = tempfile.mkdtemp(prefix="bench-connect-")
    print(f"MLCORE_HOME={home}; setup (untimed): ingest_sales, ingest_bank, train_classifier")
    run_job(home, "ingest_sales")
    run_job(home, "ingest_bank")
    run_job(home, "train_classifier", f"classification.n_iter={args.train_iter}")
    remote, port, server_pid = start_server(home)
    try:
        limit = f"forecasting.limit_groups={'null' if args.stores is None else args.stores}"
        jobs: dict[tuple[str, str], tuple[float, float | None, PeakMemory]] = {}
        for revision, job, sets in ((2, "train_forecasts", [limit]), (2, "score_classifier", [])):
            jobs[("classic", job)] = run_job(home, job, *sets)
            jobs[("connect", job)] = run_job(
                home, job, *sets, f"run.revision={revision}", remote=remote, watch=(server_pid,)
            )
        probes = {
            "broadcast": run_probe("broadcast", home, args.rows, args.partitions, None, None),
            "captured": run_probe("captured", home, args.rows, args.partitions, None, None),
            "connect": run_probe("connect", home, args.rows, args.partitions, remote, server_pid),
        }
    finally:
        stop_server(home, port)

    stores = "1,115" if args.stores is None else f"{args.stores:,}"
    print(f"\nJobs ({stores} stores; bank table), classic job process vs Spark Connect client:")
    print(f"{'job':<18} {'classic s':>10} {'connect s':>10} {'ratio':>6} {'in-job classic':>15} "
          f"{'in-job connect':>15} {'ratio':>6}")  # fmt: skip
    worst = 0.0
    for job in ("train_forecasts", "score_classifier"):
        (c_wall, c_own, _), (r_wall, r_own, _) = jobs[("classic", job)], jobs[("connect", job)]
        own_ratio = r_own / c_own if c_own and r_own else float("nan")
        worst = max(worst, r_wall / c_wall)
        print(f"{job:<18} {c_wall:>10.1f} {r_wall:>10.1f} {r_wall / c_wall:>6.2f} "
              f"{c_own or float('nan'):>15.1f} {r_own or float('nan'):>15.1f} {own_ratio:>6.2f}")  # fmt: skip
    verdict = "met" if worst <= TARGET_RATIO else "NOT met"
    print(f"target Connect <= {TARGET_RATIO:.2f} x classic (process wall): {verdict} (worst {worst:.2f})")

    figures = probes["broadcast"][0]
    print(f"\nModel shipping, {args.rows:,} rows per scorer in {args.partitions} tasks "
          f"(classifier model {figures['classifier_model_mib']:.1f} MiB, anomaly model "
          f"{figures['anomaly_model_mib']:.1f} MiB); peaks over both scorers:")  # fmt: skip
    print(f"{'mode':<28} {'classifier s':>12} {'anomaly s':>10} {'workers MiB':>12} "
          f"{'largest worker':>15} {'JVM MiB':>8}")  # fmt: skip
    labels = {"broadcast": "classic, broadcast (before)", "captured": "classic, closure (after)",
              "connect": "Connect, closure (after)"}  # fmt: skip
    for mode, (seconds, memory) in probes.items():
        print(f"{labels[mode]:<28} {seconds['classifier']:>12.1f} {seconds['anomaly']:>10.1f} "
              f"{memory.workers_sum:>12.0f} {memory.worker_max:>15.0f} {memory.jvm:>8.0f}")  # fmt: skip
    before, after = probes["broadcast"][1], probes["captured"][1]
    print(f"closure / broadcast on classic: workers {after.workers_sum / before.workers_sum:.2f}, "
          f"largest worker {after.worker_max / before.worker_max:.2f}, JVM {after.jvm / before.jvm:.2f}")
    print("(the Connect JVM figure is the server's, which also holds the session's state)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
