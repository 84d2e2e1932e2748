#!/usr/bin/env python
"""Where a job's driver memory goes: run one job in this process and sample the driver's RSS
with the main thread's stack every ``--interval`` seconds.

Prints the peak RSS and what the driver was doing then, and the RSS growth attributed to each
project function (the innermost ``mlcore``/``jobs`` frame of the stack, with the innermost
library frame under it): the sum of the increases seen while it was on the stack. Memory that a
function allocates and keeps shows up under it even when the peak comes later. Only the driver's
Python process is measured (the JVM and Spark's Python workers are separate processes).

    MLCORE_HOME=/tmp/lake .venv/bin/python scripts/profile_driver_memory.py train_forecasts -- \\
        --env local --run-date 2015-06-14 --set "forecasting.group_keys=[store,item]"
    .venv/bin/python scripts/profile_driver_memory.py make_forecasts --top 15 -- --run-date 2015-06-14

``--tracemalloc`` also records the Python allocations alive at the peak (slower; numpy and
pandas buffers are traced, Arrow's memory pool is not).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024
OWN = (f"{os.sep}mlcore{os.sep}", f"{os.sep}jobs{os.sep}")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def where(frame: object) -> str:
    """'project function <- library function' of a stack: the innermost project frame, and the
    innermost frame below it when that is library code (pandas, pyarrow, py4j, ...)."""
    stack = traceback.extract_stack(frame)  # type: ignore[arg-type]
    own = [i for i, f in enumerate(stack) if any(part in f.filename for part in OWN)]
    if not own:
        return "(outside the project)"
    mine = stack[own[-1]]
    label = f"{Path(mine.filename).parent.name}/{Path(mine.filename).name}:{mine.lineno} {mine.name}"
    if own[-1] < len(stack) - 1:
        inner = stack[-1]
        library = Path(inner.filename)
        label += f"  <- {library.parent.name}/{library.name}:{inner.lineno} {inner.name}"
    return label


@dataclass
class Sampler:
    """RSS and the main thread's stack every ``interval`` seconds, on a daemon thread."""

    interval: float
    trace: bool = False
    samples: list[tuple[float, int, str]] = field(default_factory=list)
    peak: tuple[float, int, str] = (0.0, 0, "")
    peak_snapshot: object = None

    def __post_init__(self) -> None:
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self._main)  # noqa: SLF001 - the sampler's job
            sample = (time.perf_counter() - self._start, rss_bytes(), where(frame) if frame else "")
            self.samples.append(sample)
            if sample[1] > self.peak[1]:
                self.peak = sample
                if self.trace:
                    import tracemalloc

                    self.peak_snapshot = tracemalloc.take_snapshot()

    def __enter__(self) -> Sampler:
        if self.trace:
            import tracemalloc

            tracemalloc.start(8)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def growth_by_place(self) -> dict[str, float]:
        """Bytes RSS rose while each place was on the stack (rises only)."""
        grown: dict[str, float] = defaultdict(float)
        for (_, before, _), (_, after, place) in zip(self.samples, self.samples[1:], strict=False):
            if after > before:
                grown[place] += after - before
        return grown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", help="a job name, e.g. train_forecasts")
    parser.add_argument("job_args", nargs="*", help="the job's own arguments (after --)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    parser.add_argument("--top", type=int, default=12, help="places listed by RSS growth")
    parser.add_argument("--tracemalloc", action="store_true", help="Python allocations at the peak")
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.top < 1:
        parser.error("--interval and --top must be positive")

    from mlcore.runner import run_job

    start_rss = rss_bytes()
    with Sampler(args.interval, args.tracemalloc) as sampler:
        code = run_job(args.job, args.job_args)
    if not sampler.samples:
        print("the job ended before the first sample", file=sys.stderr)
        return code
    at, peak, place = sampler.peak
    print(f"\n{args.job}: exit {code}; driver RSS {start_rss / MIB:.0f} MiB before the job, peak "
          f"{peak / MIB:.0f} MiB at {at:.1f} s in {place}, {sampler.samples[-1][1] / MIB:.0f} MiB "
          f"at the end ({len(sampler.samples)} samples every {args.interval} s)")  # fmt: skip
    print(f"\nRSS growth by place (MiB, rises only; top {args.top}):")
    grown = sorted(sampler.growth_by_place().items(), key=lambda item: -item[1])
    for label, value in grown[: args.top]:
        print(f"  {value / MIB:8.1f}  {label}")
    if sampler.peak_snapshot is not None:
        print("\nPython allocations alive at the peak (tracemalloc, by line):")
        for stat in sampler.peak_snapshot.statistics("lineno")[: args.top]:  # type: ignore[attr-defined]
            print(f"  {stat.size / MIB:8.1f}  {stat.traceback[0]}")
    return code


if __name__ == "__main__":
    sys.exit(main())
