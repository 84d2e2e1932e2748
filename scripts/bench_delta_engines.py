"""Native Delta vs delta-rs, measured side by side in one run (issue 18, part 5).

1. Micro: write (overwrite), full read and merge of ``--rows`` rows (10 date partitions) through
   ``DeltaTables`` on each engine, in one embedded Spark session that has the Delta jars.
2. End to end (unless ``--micro-only``): ``train_forecasts`` over ``--stores`` stores (default all
   1,115) and ``score_classifier`` over the bank table, each engine in its own ``MLCORE_HOME``
   (the inputs ingested and the classifier trained there first, untimed).

Prints every figure and the native/delta-rs ratio. Timings on a shared 2-core machine: compare
the ratios of one run, not figures across runs.

    .venv/bin/python scripts/bench_delta_engines.py                 # ~15 min on 2 cores
    .venv/bin/python scripts/bench_delta_engines.py --micro-only --rows 200000
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENGINES = ("deltars", "spark")


def micro(rows: int) -> dict[tuple[str, str], float]:
    from pyspark.sql import functions as F

    from mlcore.config.loader import load_config
    from mlcore.config.models import TableConfig
    from mlcore.delta_jars import cached_jars
    from mlcore.io import DeltaTables
    from mlcore.spark import get_spark

    if cached_jars() is None:
        raise SystemExit("no Delta jars cached: run python -m mlcore.delta_jars fetch first")
    home = tempfile.mkdtemp(prefix="bench-delta-")
    config = load_config("local", environ={"MLCORE_HOME": home})
    config.tables["bench_events"] = TableConfig(path="bench_events", partition_by=["day"])
    spark = get_spark(config.spark, "bench_delta_engines")
    source = (
        spark.range(rows)
        .withColumn("day", F.expr("date_add(DATE'2024-01-01', CAST(id % 10 AS INT))"))
        .withColumn("store", F.expr("CAST(id % 1115 AS INT)"))
        .withColumn("amount", F.rand(7) * 1000)
        .withColumn("note", F.expr("concat('row-', id)"))
    ).cache()
    source.count()
    upserts = source.filter("id % 10 = 0").withColumn("amount", F.lit(-1.0)).cache()
    upserts.count()
    out: dict[tuple[str, str], float] = {}
    for engine in ENGINES:  # warm-up: class loading and JIT of both engines' paths, untimed
        config.tables["bench_events"] = TableConfig(path=f"warm_{engine}", partition_by=["day"])
        tables = DeltaTables(spark, config, engine=engine)
        small = source.limit(1000)
        tables.write(small, "bench_events", mode="overwrite")
        tables.read("bench_events").agg(F.sum("amount")).first()
        tables.merge(small.filter("id % 10 = 0"), "bench_events", keys=["id"])
    for engine in ENGINES:
        config.tables["bench_events"] = TableConfig(
            path=f"bench_events_{engine}", partition_by=["day"]
        )
        tables = DeltaTables(spark, config, engine=engine)
        started = time.perf_counter()
        tables.write(source, "bench_events", mode="overwrite")
        out[(engine, "write")] = time.perf_counter() - started
        started = time.perf_counter()
        total = tables.read("bench_events").agg(F.count("*"), F.sum("amount")).first()
        out[(engine, "read")] = time.perf_counter() - started
        assert total[0] == rows, (engine, total)
        started = time.perf_counter()
        tables.merge(upserts, "bench_events", keys=["id"])
        out[(engine, "merge")] = time.perf_counter() - started
        after = tables.read("bench_events").agg(
            F.count("*"), F.sum(F.when(F.col("amount") == -1.0, 1).otherwise(0))
        ).first()
        assert tuple(after) == (rows, upserts.count()), (engine, "merge result", after)
    spark.stop()
    return out


def run_job(home: str, engine: str, job: str, run_date: str, *sets: str) -> float:
    args = [sys.executable, str(REPO / "jobs" / f"{job}.py"), "--env", "local",
            "--run-date", run_date, "--set", f"storage.delta_engine={engine}"]  # fmt: skip
    for item in sets:
        args += ["--set", item]
    started = time.perf_counter()
    done = subprocess.run(
        args, cwd=REPO, env={**os.environ, "MLCORE_HOME": home}, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{job} on {engine} failed: {done.stderr.strip().splitlines()[-1:]}")
    engine_seen = re.search(r"engine=(\w+)", done.stdout)
    if not engine_seen or engine_seen.group(1) != engine:
        raise SystemExit(f"{job}: expected engine {engine}, the job reported {engine_seen}")
    return elapsed


def end_to_end(stores: int | None) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    limit = f"forecasting.limit_groups={'null' if stores is None else stores}"
    for engine in ENGINES:
        home = tempfile.mkdtemp(prefix=f"bench-{engine}-")
        run_job(home, engine, "ingest_sales", "2015-06-14")
        out[(engine, "train_forecasts")] = run_job(
            home, engine, "train_forecasts", "2015-06-14", limit
        )
        run_job(home, engine, "ingest_bank", "2015-06-14")
        run_job(home, engine, "train_classifier", "2015-06-14")
        out[(engine, "score_classifier")] = run_job(
            home, engine, "score_classifier", "2015-06-14"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--stores", type=int, default=None, help="default: all 1,115")
    parser.add_argument("--micro-only", action="store_true")
    args = parser.parse_args(argv)
    figures = micro(args.rows)
    if not args.micro_only:
        figures.update(end_to_end(args.stores))
    stages = list(dict.fromkeys(stage for _, stage in figures))
    print(f"\n{'stage':<18} {'delta-rs s':>11} {'native s':>10} {'native/delta-rs':>16}")
    for stage in stages:
        rs, native = figures[("deltars", stage)], figures[("spark", stage)]
        print(f"{stage:<18} {rs:>11.2f} {native:>10.2f} {native / rs:>16.2f}")
    print(f"(micro: {args.rows:,} rows; end to end: whole job processes incl. JVM start)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
