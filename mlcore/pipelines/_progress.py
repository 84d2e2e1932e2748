"""Progress of a long job stage, one log line at a steady cadence: done/total, rate and ETA.

Counts come from the running Spark stage's tasks (``spark_classic.StageProgress``: the status
tracker on classic Spark, the Connect client's progress reports over Connect), scaled to the
stage's own units (groups, fits). The count never goes backwards: a retried task or a stage
Spark re-plans restarts its task counter, the reported count keeps its best. Before the first
task finishes the line says so instead of printing an ETA of ``nan``; a stage without Spark
tasks (a driver-side fit) still gets its elapsed time on the same cadence.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from mlcore.spark_classic import StageProgress

log = logging.getLogger("mlcore.progress")


class StageReporter:
    """``with StageReporter(spark, "training", 1115, "groups"): ...`` logs every ``interval``
    seconds while the block runs, and a closing line with the total time."""

    def __init__(
        self,
        spark: Any,
        label: str,
        total: int | None = None,
        unit: str = "tasks",
        interval: float = 10.0,
    ) -> None:
        """``total`` None: the stage's own Spark tasks are the units (scoring partitions, a write)."""
        self.label, self.unit, self.interval = label, unit, interval
        self.by_tasks = total is None
        self.total = total or 0
        self.stages = StageProgress(spark) if spark is not None else None
        self.best = 0
        self.started = time.perf_counter()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mlcore-progress-{label}", daemon=True)

    def __enter__(self) -> StageReporter:
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self._done.set()
        self._thread.join()
        if self.stages is not None:
            self.stages.close()
        if kind is None:
            done = f"{self.total}/{self.total} {self.unit}" if self.total else "done"
            log.info("%s: %s in %.0f s", self.label, done, time.perf_counter() - self.started)

    def line(self, elapsed: float) -> str:
        """The progress line for the best count seen so far."""
        if not self.total:  # counted in tasks, before the first stage shows up
            return f"{self.label}: {elapsed:.0f} s elapsed, starting"
        done = f"{self.best}/{self.total} {self.unit}"
        if self.best <= 0:
            return f"{self.label}: {done}, {elapsed:.0f} s elapsed, ETA after the first {self.unit}"
        rate = self.best / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.best) / rate if rate > 0 else 0.0
        return f"{self.label}: {done}, {rate:.1f} {self.unit}/s, ETA {eta:.0f} s"

    def observe(self, completed: int, tasks: int) -> None:
        """A stage's task counts, scaled to units (or taken as they are when counting tasks);
        the count only grows."""
        if tasks <= 0:
            return
        if self.by_tasks:
            self.total = max(self.total, tasks)
            self.best = max(self.best, min(self.total, completed))
        else:
            self.best = max(self.best, min(self.total, int(completed / tasks * self.total)))

    def reached(self, done: int) -> None:
        """Driver-side work counted by the caller (drift monitors done); never goes back."""
        self.best = max(self.best, min(self.total, done) if self.total else done)

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            active = self.stages.active() if self.stages is not None else []
            if active:
                self.observe(*max(active, key=lambda stage: stage[1]))
            log.info(self.line(time.perf_counter() - self.started))
