"""What only a classic Spark session offers, each with what replaces it over Spark Connect.

Databricks serverless jobs and standard-access (shared) clusters run Python over Spark Connect:
no ``SparkContext``, no ``_jvm``, no ``_jdf``, no RDD API. This is the one module of mlcore that
touches those (``tests/unit/test_connect_safety.py`` fails on any other use), and each function
here works on both kinds of session: the classic path where it is faster or richer, an
equivalent over Connect, never a crash.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def is_classic(spark: Any) -> bool:
    """True for a classic (py4j) session, False for a Spark Connect one."""
    try:
        from pyspark.sql.connect.session import SparkSession as ConnectSession
    except ImportError:  # Connect's client dependencies (grpc) not installed: classic only
        return True
    return not isinstance(spark, ConnectSession)


@dataclass(frozen=True)
class Captured(Generic[T]):
    """A value shipped inside the function that uses it (serialized once per task with the
    UDF), the Connect stand-in for a broadcast variable: same ``.value`` interface."""

    value: T

    def unpersist(self, blocking: bool = False) -> None:
        """Nothing to free: the value travels with each task (the broadcast's interface)."""

    def destroy(self, blocking: bool = False) -> None:
        """Nothing to free: the value travels with each task (the broadcast's interface)."""


def share(spark: Any, value: T) -> Any:
    """A read-only value for executors, read as ``.value``: a broadcast on classic Spark (one
    copy per executor), captured in the function's closure over Connect."""
    if is_classic(spark):
        return spark.sparkContext.broadcast(value)
    return Captured(value)


def default_parallelism(spark: Any) -> int:
    """The session's default task parallelism: SparkContext's on classic Spark; over Connect,
    ``spark.default.parallelism`` if set, else ``spark.sql.shuffle.partitions``."""
    if is_classic(spark):
        return int(spark.sparkContext.defaultParallelism)
    for key in ("spark.default.parallelism", "spark.sql.shuffle.partitions"):
        try:
            value = spark.conf.get(key, None)
        except Exception:  # noqa: BLE001 - a server that hides the key: try the next one
            value = None
        if value:
            return max(1, int(value))
    return 2


def status_tracker(spark: Any) -> Any | None:
    """Spark's status tracker (active stages and task counts) on classic Spark, else None."""
    return spark.sparkContext.statusTracker() if is_classic(spark) else None


def set_local_property(spark: Any, key: str, value: str | None) -> bool:
    """Set a thread-local Spark property (e.g. the fair-scheduler pool); False over Connect,
    which has no local properties."""
    if not is_classic(spark):
        return False
    spark.sparkContext.setLocalProperty(key, value)
    return True


def set_log_level(spark: Any, level: str) -> None:
    """The JVM's log level on classic Spark; over Connect the server's logging is its own."""
    if is_classic(spark):
        spark.sparkContext.setLogLevel(level)


def optimized_plan_kind(df: Any) -> str | None:
    """The class name of ``df``'s optimised logical plan (e.g. ``LocalRelation``) on classic
    Spark; None over Connect or for shapes it cannot tell."""
    try:
        if not is_classic(df.sparkSession):
            return None
        plan = df._jdf.queryExecution().optimizedPlan()
        return str(plan.getClass().getSimpleName())
    except Exception:  # noqa: BLE001 - mocks and unknown plans
        return None


def activate_on_this_thread(spark: Any) -> None:
    """Make ``spark`` the JVM's active session on the calling thread (classic only: Python data
    sources are looked up in the active session, which a new thread lacks)."""
    jvm = getattr(spark, "_jvm", None)
    jsession = getattr(spark, "_jsparkSession", None)
    if jvm is not None and jsession is not None:
        jvm.org.apache.spark.sql.SparkSession.setActiveSession(jsession)


class StageProgress:
    """Task counts ``(completed, total)`` of the running stages: from the status tracker on
    classic Spark, from the Spark Connect client's progress handler over Connect (the server
    reports stage progress with each response). Call :meth:`close` when done."""

    def __init__(self, spark: Any) -> None:
        self._spark = spark
        self._tracker = status_tracker(spark)
        self._latest: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self._handler = None
        if self._tracker is None and hasattr(spark, "registerProgressHandler"):

            def handler(stages=None, inflight_tasks=0, operation_id=None, done=False) -> None:
                running = [
                    (int(s.num_completed_tasks), int(s.num_tasks))
                    for s in (stages or [])
                    if not s.done and s.num_tasks > 0
                ]
                with self._lock:
                    self._latest = [] if done else running

            self._handler = handler
            spark.registerProgressHandler(handler)

    def active(self) -> list[tuple[int, int]]:
        if self._tracker is not None:
            infos = [self._tracker.getStageInfo(s) for s in self._tracker.getActiveStageIds()]
            return [(i.numCompletedTasks, i.numTasks) for i in infos if i is not None and i.numTasks > 0]
        with self._lock:
            return list(self._latest)

    def close(self) -> None:
        if self._handler is not None:
            self._spark.removeProgressHandler(self._handler)
            self._handler = None
