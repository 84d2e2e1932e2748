"""Load benchmark of the planners' service (``mlcore serve``) on loopback.

Starts the service as users do (``python -m mlcore serve``, one uvicorn worker) over an existing
lake (``MLCORE_HOME``: run ``./scripts/demo.sh --all-stores`` and ``find_similar_stores`` first),
then drives it with a keep-alive HTTP/1.1 load generator (asyncio, in this process) and prints
p50 / p99 latency and throughput per phase, and the service's memory:

- cached:    48-day forecasts of the latest run, every answer already in the response cache;
- uncached:  the same requests against a service started with ``service.cache_entries=0``
             (every answer built from the in-memory snapshot);
- history / similar: uncached too;
- on-demand: 7-day forecasts past the table's horizon (the champion's models, read once per
             store, predict with the planned calendar), uncached, at ``--concurrency`` and
             one at a time.

Bounded in count and time: ``--requests`` per phase (default 20,000; a tenth for on-demand) at
``--concurrency`` (default 32), each phase stopped after ``--max-seconds``. The load generator
shares the machine's cores with the service: figures are for this machine, compare them only
within one run.

    MLCORE_HOME=.mlcore .venv/bin/python scripts/bench_service.py
    MLCORE_HOME=/tmp/home .venv/bin/python scripts/bench_service.py --requests 5000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident memory of ``pid`` in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


class Service:
    """``python -m mlcore serve`` in a subprocess on a free loopback port."""

    def __init__(self, env: str, overrides: list[str]):
        self.port = free_port()
        args = [sys.executable, "-m", "mlcore", "serve", "--env", env, "--port", str(self.port),
                "--log-level", "warning", "--set", "service.auth_required=false"]  # fmt: skip
        for item in overrides:
            args += ["--set", item]
        # the service's log goes to a file: an unread pipe would fill up and stall the service
        self.log = tempfile.NamedTemporaryFile(prefix="mlcore-serve-", suffix=".log", delete=False)
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(self.url("/health"), timeout=2) as response:
                    self.health = json.load(response)
                    break
            except OSError:
                if self.process.poll() is not None:
                    raise SystemExit(f"service exited: {Path(self.log.name).read_text()[-2000:]}") from None
                if time.monotonic() > deadline:
                    raise SystemExit("service did not start within 120 s") from None
                time.sleep(0.2)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url(path), timeout=30) as response:
            return json.load(response)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        warnings = [line for line in Path(self.log.name).read_text().splitlines() if "Warning" in line]
        if warnings:
            print(f"service log: {len(warnings)} warning line(s), e.g. {warnings[0][:200]}")
        Path(self.log.name).unlink()


async def load(port: int, paths: list[str], requests: int, concurrency: int, max_seconds: float) -> dict:
    """Send ``requests`` GETs (cycling through ``paths``) over ``concurrency`` keep-alive
    connections; returns latencies (s), statuses and wall time."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(requests))
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for index in counter:
                if time.perf_counter() > deadline:
                    return
                path = paths[index % len(paths)]
                request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"
                started = time.perf_counter()
                writer.write(request.encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"latencies": latencies, "statuses": statuses, "wall": time.perf_counter() - started}


def report(name: str, result: dict, service: Service) -> dict:
    latencies = np.array(result["latencies"]) * 1000
    current, peak = rss_kib(service.process.pid)
    row = {
        "phase": name,
        "requests": len(latencies),
        "p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
        "max_ms": float(latencies.max()) if len(latencies) else float("nan"),
        "per_second": len(latencies) / result["wall"] if result["wall"] else 0.0,
        "statuses": result["statuses"],
        "rss_mib": current / 1024,
        "peak_mib": peak / 1024,
    }
    print(
        f"{name:<28} {row['requests']:>7} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['max_ms']:>8.1f} "
        f"{row['per_second']:>9.0f} {row['rss_mib']:>8.0f} {row['peak_mib']:>8.0f}  {row['statuses']}",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="local")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--stores", type=int, default=200, help="distinct stores requested")
    parser.add_argument("--json", help="write the figures here as JSON")
    args = parser.parse_args(argv)
    print(f"MLCORE_HOME={os.environ.get('MLCORE_HOME', '.mlcore')}, {os.cpu_count()} cores, "
          f"{args.requests} requests per phase at concurrency {args.concurrency}")  # fmt: skip
    rows = []
    header = f"{'phase':<28} {'count':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'req/s':>9} {'rss MiB':>8} {'peak MiB':>8}"
    for cache_entries in ("4096", "0"):
        service = Service(args.env, [f"service.cache_entries={cache_entries}", "service.refresh_seconds=3600"])
        try:
            catalog = service.get("/stores")
            stores = catalog["stores"][: args.stores]
            if not stores:
                raise SystemExit("no forecasts in this lake: run make_forecasts first")
            sample = service.get(f"/stores/{stores[0]}/forecast")
            start, end = sample["start"], sample["end"]
            days = len(sample["points"])
            after = np.datetime64(end) + np.timedelta64(1, "D")
            cached = cache_entries != "0"
            label = "cached" if cached else "uncached"
            if cached:
                print(f"stores: {len(catalog['stores'])} in the latest run, {len(stores)} requested; "
                      f"forecast range {start}..{end} ({days} days); on-demand from {after}")  # fmt: skip
                print(f"service memory at start: {rss_kib(service.process.pid)[0] / 1024:.0f} MiB "
                      f"(snapshot {service.health.get('memory', {}).get('snapshot_bytes', 0) / 2**20:.0f} MiB)")  # fmt: skip
                print(header)
            forecast_paths = [f"/stores/{s}/forecast?start={start}&end={end}" for s in stores]
            if cached:  # every answer in the cache before the clock starts
                asyncio.run(load(service.port, forecast_paths, len(forecast_paths), 8, args.max_seconds))
            rows.append(report(
                f"forecast 48d ({label})", asyncio.run(load(service.port, forecast_paths, args.requests,
                                                              args.concurrency, args.max_seconds)), service))  # fmt: skip
            if not cached:
                for name, paths in (
                    ("history 8w (uncached)", [f"/stores/{s}/history?weeks=8" for s in stores]),
                    ("similar k=5 (uncached)", [f"/stores/{s}/similar?k=5" for s in stores]),
                ):
                    rows.append(report(name, asyncio.run(load(service.port, paths, args.requests,
                                                              args.concurrency, args.max_seconds)), service))  # fmt: skip
                end_on_demand = after + np.timedelta64(6, "D")
                on_demand = [f"/stores/{s}/forecast?start={after}&end={end_on_demand}" for s in stores]
                random.Random(0).shuffle(on_demand)
                rows.append(report(
                    "on-demand 7d (uncached)", asyncio.run(load(service.port, on_demand, max(1, args.requests // 10),
                                                                 args.concurrency, args.max_seconds)), service))  # fmt: skip
                rows.append(report(  # one planner at a time: the latency without queueing
                    "on-demand 7d (concurrency 1)", asyncio.run(load(service.port, on_demand[::-1], 200, 1,
                                                                      args.max_seconds)), service))  # fmt: skip
                health = service.get("/health")
                print(f"champion models held after the on-demand phase: {health['champion'].get('models_loaded')} "
                      f"(max {health['champion'].get('models_max')})")  # fmt: skip
        finally:
            service.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
