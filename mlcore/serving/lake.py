"""What the planners' service reads: consistent snapshots of the published tables, with delta-rs.

A :class:`Snapshot` is the service's view of the lake at one moment: the version of every table
it serves (``forecasts``, ``sales``, ``store_neighbours``, ``forecast_calendar``) and the
registered champion, with the data read *at those versions* (recent actuals, the latest
neighbours, the planned calendar; forecast runs are read on first use, at the snapshot's
``forecasts`` version). A request takes the current snapshot once and answers from it alone, so
one response never mixes two versions of a table; :class:`Lake` builds the next snapshot when a
version moves (:meth:`Lake.refresh`, called every ``service.refresh_seconds`` by a background
thread) and swaps it in with one assignment. Parts whose table did not move are reused.

No Spark anywhere: Delta tables are read with delta-rs into Arrow and pandas; the champion's
models come from the registered ``store_forecaster`` pyfunc (:mod:`mlcore.serving.store_forecaster`),
which reads ``forecast_models`` at the version its registration records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlcore.config.models import MlcoreConfig

log = logging.getLogger(__name__)

FORECASTS, SALES, NEIGHBOURS, CALENDAR = "forecasts", "sales", "store_neighbours", "forecast_calendar"
SERVED_TABLES = (FORECASTS, SALES, NEIGHBOURS, CALENDAR)
FORECAST_COLUMNS = ["ds", "yhat", "yhat_lower", "yhat_upper", "model_type", "model_name",
                    "model_version", "trained_run_date", "run_id"]  # fmt: skip


class Unavailable(LookupError):
    """The data a request needs is not published (yet): the table or the champion is missing."""


class NotFound(LookupError):
    """The store, run or date range asked for is not there (HTTP 404)."""


@dataclass(frozen=True)
class KeyedFrame:
    """Rows sorted by group key then ``order`` (a date or a rank), with each key's row range and
    every column as a numpy array (dates as ``datetime64[D]``): a key's rows, or its rows between
    two dates, are found with a dict lookup and a binary search, never a scan. ``frame`` serves
    the callers that need a DataFrame slice (the champion's calendar)."""

    frame: pd.DataFrame
    ranges: Mapping[Any, tuple[int, int]]
    order: str
    arrays: Mapping[str, np.ndarray]

    @classmethod
    def build(
        cls, frame: pd.DataFrame, keys: Sequence[str], order: str, dates: Sequence[str] = ()
    ) -> KeyedFrame:
        """``keys``: the group key columns; a series is found by its value (one key) or by the
        tuple of its values (several, e.g. ``(store, item)``)."""
        frame = frame.sort_values([*keys, order], kind="mergesort").reset_index(drop=True)
        arrays = {}
        for column in frame.columns:
            if column in dates:  # datetime64, not one date object per row (less for the GC)
                frame[column] = pd.to_datetime(frame[column])
                arrays[column] = frame[column].to_numpy().astype("datetime64[D]")
            else:
                arrays[column] = frame[column].to_numpy()
        columns = [frame[key].to_numpy() for key in keys]
        ranges: dict[Any, tuple[int, int]] = {}
        rows = len(frame)
        if rows:
            changed = np.zeros(rows - 1, dtype=bool)
            for values in columns:
                changed |= values[1:] != values[:-1]
            starts = np.flatnonzero(np.r_[True, changed])
            stops = np.r_[starts[1:], rows]
            if len(columns) == 1:
                ids: list[Any] = [int(columns[0][a]) for a in starts]
            else:
                ids = [tuple(int(values[a]) for values in columns) for a in starts]
            ranges = {id_: (int(a), int(b)) for id_, a, b in zip(ids, starts, stops, strict=True)}
        return cls(frame, ranges, order, arrays)

    def span(self, key: Any) -> tuple[int, int]:
        return self.ranges.get(key, (0, 0))

    def window(self, key: Any, first: dt.date, last: dt.date) -> tuple[int, int]:
        """Positions of ``key``'s rows with ``first <= order <= last`` (dates)."""
        start, stop = self.span(key)
        values = self.arrays[self.order][start:stop]
        lower = np.searchsorted(values, np.datetime64(first, "D"), side="left")
        upper = np.searchsorted(values, np.datetime64(last, "D"), side="right")
        return start + int(lower), start + int(upper)

    @property
    def keys(self) -> list[Any]:
        return sorted(self.ranges)

    @property
    def nbytes(self) -> int:
        frame = int(self.frame.memory_usage(deep=True).sum())
        return frame + sum(int(array.nbytes) for array in self.arrays.values())


@dataclass(frozen=True)
class Champion:
    """The registered champion and its loaded pyfunc (models are read per store on first use)."""

    name: str
    version: str
    trained_run_date: dt.date
    models_version: int
    model: Any  # mlcore.serving.store_forecaster.StoreForecasterModel


@dataclass
class Snapshot:
    """One consistent view of the served tables (see the module docstring)."""

    versions: dict[str, int | None]
    champion: Champion | None
    champion_problem: str | None
    run_dates: list[dt.date]
    history: KeyedFrame | None
    neighbours: KeyedFrame | None
    neighbours_run_date: dt.date | None
    calendar: KeyedFrame | None
    loaded_at: float
    read_run: Callable[[dt.date], KeyedFrame]
    runs_cached: int
    _runs: OrderedDict[dt.date, KeyedFrame] = field(default_factory=OrderedDict)
    _runs_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def id(self) -> str:
        """Identifies the versions this snapshot serves (part of every cache key)."""
        parts = [f"{name}={self.versions.get(name)}" for name in SERVED_TABLES]
        parts.append(f"champion={self.champion.version if self.champion else None}")
        return hashlib.sha1(";".join(parts).encode()).hexdigest()[:16]

    def forecast_run(self, run_date: dt.date | None) -> tuple[dt.date, KeyedFrame]:
        """One published forecast run (the latest by default), read at this snapshot's version."""
        if not self.run_dates:
            raise Unavailable("no forecasts are published yet: run make_forecasts")
        chosen = self.run_dates[-1] if run_date is None else run_date
        if chosen not in self.run_dates:
            recent = ", ".join(d.isoformat() for d in self.run_dates[-5:])
            raise NotFound(f"no forecast run for run_date {chosen}; latest runs: {recent}")
        with self._runs_lock:
            if chosen in self._runs:
                self._runs.move_to_end(chosen)
                return chosen, self._runs[chosen]
        frame = self.read_run(chosen)
        with self._runs_lock:
            self._runs[chosen] = frame
            while len(self._runs) > self.runs_cached:
                self._runs.popitem(last=False)
        return chosen, frame

    def memory_bytes(self) -> int:
        parts = [self.history, self.neighbours, self.calendar, *self._runs.values()]
        return sum(part.nbytes for part in parts if part is not None)


class Lake:
    """Reads the served tables with delta-rs and keeps the current :class:`Snapshot`."""

    def __init__(self, config: MlcoreConfig, champion_loader: Callable[[], Champion | None] | None = None):
        from mlcore.io.tables import resolve_table

        self.config = config
        self.service = config.service
        fc = config.forecasting
        if not 1 <= len(fc.group_keys) <= 2:
            raise ValueError(
                "the service serves a store key and at most one more (forecasting.group_keys = "
                f"{fc.group_keys})"
            )
        self.keys = list(fc.group_keys)
        self.store_key = fc.features.stores_key
        self.date = fc.date_column
        self.uris = {name: resolve_table(config, name).uri for name in SERVED_TABLES}
        self._champion_loader = champion_loader or self._load_champion
        self._champion: Champion | None = None
        self._champion_problem: str | None = None
        self._parts: dict[tuple[str, int | None], Any] = {}
        self._lock = threading.Lock()  # one refresh at a time
        self.snapshot: Snapshot = self._build(self._versions(), self._champion_version())
        _freeze_garbage_collector()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- versions ---------------------------------------------------------------------------
    def _versions(self) -> dict[str, int | None]:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        versions: dict[str, int | None] = {}
        for name, uri in self.uris.items():
            try:
                versions[name] = DeltaTable(uri).version()
            except TableNotFoundError:
                versions[name] = None
        return versions

    def _champion_version(self) -> str | None:
        if not self.config.mlflow.enabled:
            return None
        from mlcore.tracking.registry import ModelRegistry

        try:
            found = ModelRegistry().champion(self.config.forecasting.model_name)
        except Exception as exc:  # noqa: BLE001 - a registry outage keeps the current champion
            log.warning("model registry unreachable (%s): keeping the current champion", exc)
            return self._champion.version if self._champion else None
        return str(found.version) if found is not None else None

    # -- refresh ----------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Build a new snapshot if any served table or the champion moved; True if it did."""
        with self._lock:
            versions, champion = self._versions(), self._champion_version()
            current = self.snapshot
            serving = current.champion.version if current.champion else None
            if versions == current.versions and champion == serving:
                return False  # (a champion that failed to load is None here: retried)
            self.snapshot = self._build(versions, champion)
            _freeze_garbage_collector()
            log.info("serving table versions %s, champion %s", versions, champion)
            return True

    def start(self) -> None:
        """Look for new versions every ``service.refresh_seconds`` on a daemon thread."""
        if self._thread is not None or self.service.refresh_seconds <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(self.service.refresh_seconds):
                try:
                    self.refresh()
                except Exception as exc:  # noqa: BLE001 - keep serving the last good snapshot
                    log.warning("refresh failed, still serving the previous versions: %s", exc)

        self._thread = threading.Thread(target=loop, name="mlcore-lake-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- building a snapshot ----------------------------------------------------------------
    def _part(self, name: str, version: int | None, read: Callable[[int], Any]) -> Any:
        """A table's loaded part at ``version``, reused while the version does not move."""
        if version is None:
            return None
        cache_key = (name, version)
        if cache_key not in self._parts:
            for stale in [k for k in self._parts if k[0] == name]:
                del self._parts[stale]
            self._parts[cache_key] = read(version)
        return self._parts[cache_key]

    def _build(self, versions: dict[str, int | None], champion_version: str | None) -> Snapshot:
        if champion_version is None:
            self._champion, self._champion_problem = None, "no champion registered yet"
        elif self._champion is None or self._champion.version != champion_version:
            try:
                self._champion, self._champion_problem = self._champion_loader(), None
            except Exception as exc:  # noqa: BLE001 - on-demand forecasts say why they are off
                self._champion = None
                self._champion_problem = f"champion v{champion_version} could not be loaded: {exc}"
                log.warning("%s", self._champion_problem)
        neighbours = self._part(NEIGHBOURS, versions[NEIGHBOURS], self._read_neighbours)
        forecasts_version = versions[FORECASTS]
        return Snapshot(
            versions=dict(versions),
            champion=self._champion,
            champion_problem=self._champion_problem,
            run_dates=self._part(FORECASTS + ":runs", forecasts_version, self._read_run_dates) or [],
            history=self._part(SALES, versions[SALES], self._read_history),
            neighbours=neighbours[1] if neighbours else None,
            neighbours_run_date=neighbours[0] if neighbours else None,
            calendar=self._part(CALENDAR, versions[CALENDAR], self._read_calendar),
            loaded_at=time.time(),
            read_run=lambda run_date: self._read_run(forecasts_version, run_date),
            runs_cached=max(1, self.service.forecast_runs_cached),
        )

    def _table(self, name: str, version: int) -> Any:
        from deltalake import DeltaTable

        return DeltaTable(self.uris[name], version=version)

    def _scan(self, name: str, version: int, columns: Sequence[str], predicate: str = "") -> pd.DataFrame:
        import pyarrow as pa

        table = self._table(name, version)
        present = set(table.schema().to_arrow().names)
        reader = table.scan(columns=[c for c in columns if c in present], predicate=predicate or None)
        frame = pa.table(reader).to_pandas()
        for column in columns:
            if column not in frame.columns:
                frame[column] = np.nan
        return frame

    def _read_run_dates(self, version: int) -> list[dt.date]:
        partitions = self._table(FORECASTS, version).partitions()
        return sorted({dt.date.fromisoformat(p["run_date"]) for p in partitions if p.get("run_date")})

    def _read_run(self, version: int | None, run_date: dt.date) -> KeyedFrame:
        if version is None:
            raise Unavailable("no forecasts are published yet: run make_forecasts")
        frame = self._scan(
            FORECASTS, version, [*self.keys, *FORECAST_COLUMNS], f"run_date = '{run_date.isoformat()}'"
        )
        return KeyedFrame.build(frame, self.keys, "ds", dates=("ds", "trained_run_date"))

    def _calendar_columns(self) -> list[str]:
        from mlcore.forecasting.features import calendar_columns

        return [*self.keys, self.date, *calendar_columns(self.config.forecasting)]

    def _read_history(self, version: int) -> KeyedFrame:
        """The last ``max_history_weeks`` weeks of actuals, with their calendar."""
        import pyarrow as pa
        import pyarrow.compute as pc

        dates = pa.table(self._table(SALES, version).scan(columns=[self.date]))[self.date]
        last = pc.max(dates).as_py() if len(dates) else None
        target = self.config.forecasting.target_column
        columns = [*self._calendar_columns(), target]
        if last is None:
            return KeyedFrame.build(pd.DataFrame(columns=columns), self.keys, self.date, (self.date,))
        first = last - dt.timedelta(weeks=self.service.max_history_weeks)
        frame = self._scan(SALES, version, columns, f"{self.date} > '{first.isoformat()}'")
        return KeyedFrame.build(_compact(frame), self.keys, self.date, (self.date,))

    def _read_calendar(self, version: int) -> KeyedFrame:
        frame = _compact(self._scan(CALENDAR, version, self._calendar_columns()))
        return KeyedFrame.build(frame, self.keys, self.date, (self.date,))

    def _read_neighbours(self, version: int) -> tuple[dt.date, KeyedFrame] | None:
        partitions = self._table(NEIGHBOURS, version).partitions()
        dates = sorted(p["run_date"] for p in partitions if p.get("run_date"))
        if not dates:
            return None  # an empty table
        from mlcore.forecasting.similarity import NEIGHBOUR_COLUMNS

        frame = self._scan(
            NEIGHBOURS, version, [self.store_key, "neighbour", *NEIGHBOUR_COLUMNS], f"run_date = '{dates[-1]}'"
        )
        return dt.date.fromisoformat(dates[-1]), KeyedFrame.build(frame, [self.store_key], "rank")

    def _load_champion(self) -> Champion | None:
        """The registered champion as a :class:`StoreForecasterModel` of this code, configured with
        the ``model_config`` its registration records (the ``forecast_models`` version, the
        calendar and store tables); it holds at most ``service.model_cache_size`` stores' models.
        This code, not the copy registered with the version: the bounded model cache is this
        code's, and the recorded config pins what the models are."""
        from types import SimpleNamespace

        import mlflow

        from mlcore.serving.store_forecaster import StoreForecasterModel
        from mlcore.tracking.registry import ModelRegistry
        from mlcore.tracking.runs import TAG_RUN_DATE

        name = self.config.forecasting.model_name
        found = ModelRegistry().champion(name)
        if found is None:
            return None
        info = mlflow.models.get_model_info(f"models:/{name}/{found.version}")
        recorded = info.flavors.get("python_function", {}).get("config")
        if not recorded:
            raise ValueError(f"{name} v{found.version} records no model_config")
        model = StoreForecasterModel()
        model.load_context(SimpleNamespace(model_config=recorded))
        model.max_loaded_models = max(1, self.service.model_cache_size)
        return Champion(
            name=name,
            version=str(found.version),
            trained_run_date=dt.date.fromisoformat(found.tags[TAG_RUN_DATE]),
            models_version=int(found.tags["mlcore.forecast_models_version"]),
            model=model,
        )


def _compact(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as categories (a state-holiday code per row costs a string object each)."""
    for column in frame.columns:
        if frame[column].dtype == object and frame[column].map(type).eq(str).all():
            frame[column] = frame[column].astype("category")
    return frame


def _freeze_garbage_collector() -> None:
    """Move what the snapshots hold out of the cyclic GC's sight (``gc.freeze``): a full
    collection otherwise walks every object they hold, a pause of tens of milliseconds in the
    middle of requests. Unfrozen first and collected, so the replaced snapshot's reference
    cycles are freed at each swap instead of piling up in the frozen generation."""
    import gc

    gc.unfreeze()
    gc.collect()
    gc.freeze()
