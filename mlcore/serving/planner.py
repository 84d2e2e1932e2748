"""The planners' answers, built from one :class:`~mlcore.serving.lake.Snapshot`: a store's
forecast (from ``forecasts``, with on-demand days from the champion), its recent actuals, its
similar stores; and the bounded response cache they are kept in.

Everything here is plain Python on pandas frames already in memory; the one slow path is the
on-demand forecast (the champion's pyfunc: a store's model read once, then LightGBM predicts).
Request values reach this module validated (integers, dates); none becomes a path or SQL text.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlcore.config.models import MlcoreConfig
from mlcore.serving.lake import NotFound, Snapshot, Unavailable

log = logging.getLogger(__name__)


class BadRequest(ValueError):
    """The request asks for something out of bounds or inconsistent (HTTP 400)."""


class NeedsModel(Exception):  # noqa: N818 - a signal, not an error
    """The answer needs an on-demand forecast (slow: the caller moves it off the event loop)."""


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class ResponseCache:
    """Serialised responses, least recently used out beyond ``max_entries``. Keys carry the
    snapshot id, so an answer read from one set of table versions is never served for another;
    entries of replaced snapshots age out (and are dropped at once by :meth:`retire`)."""

    def __init__(self, max_entries: int):
        self.max_entries = max(0, int(max_entries))
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def get(self, key: Hashable) -> bytes | None:
        """The cached bytes for ``key`` (counted as a hit), or None (a miss)."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return found

    def peek(self, key: Hashable) -> bytes | None:
        """Like :meth:`get`, but a miss is not counted (the caller will ask :meth:`get`)."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.stats.hits += 1
            return found

    def put(self, key: Hashable, body: bytes) -> None:
        if not self.max_entries:
            return
        with self._lock:
            self._entries[key] = body
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.stats.evictions += 1

    def retire(self, snapshot_id: str) -> None:
        """Drop the entries of every snapshot but ``snapshot_id`` (called after a swap)."""
        with self._lock:
            for key in [k for k in self._entries if isinstance(k, tuple) and k[0] != snapshot_id]:
                del self._entries[key]

    def describe(self) -> dict[str, int]:
        with self._lock:
            size = sum(len(body) for body in self._entries.values())
            return {
                "entries": len(self._entries),
                "max_entries": self.max_entries,
                "bytes": size,
                "hits": self.stats.hits,
                "misses": self.stats.misses,
                "evictions": self.stats.evictions,
            }


def _records(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Equal-length column lists as one dict per row (JSON records), without pandas."""
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _day(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else pd.Timestamp(value).date()


class Planner:
    """Builds the service's answers from a snapshot (see the module docstring)."""

    def __init__(self, config: MlcoreConfig):
        self.config = config
        self.service = config.service
        fc = config.forecasting
        self.keys = list(fc.group_keys)
        self.key = self.keys[0]  # the store
        self.extra = self.keys[1] if len(self.keys) > 1 else None  # e.g. item: store x item series
        self.date = fc.date_column
        self.open_column = fc.open_column
        self.horizon_days = fc.horizon_days

    # -- which series a request means ----------------------------------------------------------
    def series(self, store: int, extra: int | None) -> Any:
        """The series of ``store`` (and ``extra``, the second group key, when the lake is
        forecast per store x item): the key the snapshot's frames are indexed by."""
        if self.extra is None:
            if extra is not None:
                raise BadRequest(f"this lake is forecast per {self.key} (forecasting.group_keys): "
                                 "ask without item")  # fmt: skip
            return store
        if extra is None:
            raise BadRequest(
                f"{self.extra} is required: forecasts are per {self.key} x {self.extra} "
                f"(forecasting.group_keys); GET /stores/{store}/items lists them"
            )
        return (store, extra)

    def ids(self, series: Any) -> dict[str, Any]:
        """The key columns of ``series`` as answer fields (``{"store": 3, "item": 2}``)."""
        return dict(zip(self.keys, series if isinstance(series, tuple) else (series,), strict=True))

    def describe(self, series: Any) -> str:
        return " ".join(f"{name} {value}" for name, value in self.ids(series).items())

    # -- the calendar a day is planned with -----------------------------------------------------
    def _open_days(self, snapshot: Snapshot, store: Any, first: dt.date, last: dt.date) -> dict[dt.date, bool]:
        """Open flags of first..last from the planned calendar, then the sales calendar (the
        order make_forecasts uses); days in neither are absent (the default applies)."""
        flags: dict[dt.date, bool] = {}
        if not self.open_column:
            return flags
        for part in (snapshot.history, snapshot.calendar):  # later sources win: the plan last
            if part is None:
                continue
            lower, upper = part.window(store, first, last)
            days = part.arrays[self.date][lower:upper].tolist()
            values = part.arrays[self.open_column][lower:upper].tolist()
            for day, is_open in zip(days, values, strict=True):
                if is_open == is_open and is_open is not None:  # not NaN / missing
                    flags[day] = bool(is_open)
        return flags

    def _calendar_rows(self, snapshot: Snapshot, store: Any) -> Callable[[str, dt.date, dt.date], pd.DataFrame]:
        """The champion's calendar reader over this snapshot (no Delta read per request): the
        series' rows of ``forecast_calendar`` or ``sales`` with start <= date < end."""

        def rows(name: str, start: dt.date, end: dt.date) -> pd.DataFrame:
            part = snapshot.calendar if name == "forecast_calendar" else snapshot.history
            if part is None:
                return pd.DataFrame()
            lower, upper = part.window(store, start, end - dt.timedelta(days=1))
            return part.frame.iloc[lower:upper].copy()

        return rows

    def _planned_rows(self, snapshot: Snapshot, store: Any, days: list[dt.date]) -> tuple[pd.DataFrame, int]:
        """The champion's input for ``days``: each day's planned calendar (forecast_calendar, else
        sales), else the documented defaults (open except Sundays, no promo, no holiday); returns
        the rows and how many days took the defaults."""
        from mlcore.forecasting.prediction import default_future_calendar

        fc = self.config.forecasting
        first, last = min(days), max(days)
        wanted = set(days)
        known = []
        for part in (snapshot.calendar, snapshot.history):  # the plan first, then sales
            if part is not None:
                lower, upper = part.window(store, first, last)
                rows = part.frame.iloc[lower:upper]
                dates = pd.Series(pd.to_datetime(rows[self.date]).dt.date, index=rows.index, dtype=object)
                known.append(rows.assign(**{self.date: dates})[dates.isin(wanted)])
        found = [frame for frame in known if len(frame)]
        planned = pd.concat(found, ignore_index=True).drop_duplicates(self.date) if found else None
        have = set(planned[self.date]) if planned is not None else set()
        defaults = default_future_calendar(first - dt.timedelta(days=1), (last - first).days + 1, fc)
        defaults = defaults[defaults[self.date].isin([d for d in days if d not in have])]
        parts = [frame for frame in (planned, defaults) if frame is not None and len(frame)]
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].copy()
        frame = frame.drop(columns=[c for c in (fc.target_column,) if c in frame.columns])
        for name, value in self.ids(store).items():
            frame[name] = value
        return frame.sort_values(self.date).reset_index(drop=True), len(defaults)

    # -- answers --------------------------------------------------------------------------------
    def forecast(
        self,
        snapshot: Snapshot,
        store: Any,
        start: dt.date | None,
        end: dt.date | None,
        run_date: dt.date | None,
        on_demand_allowed: bool = True,
    ) -> dict[str, Any]:
        """One series' forecast (``store``: see :meth:`series`) for start..end (default: the run's horizon), day by day, with the
        interval, the family, where each day came from and whether the store is open. Without
        ``on_demand_allowed``, days the table lacks raise :class:`NeedsModel` instead."""
        chosen, run = snapshot.forecast_run(run_date)
        first_row, stop_row = run.span(store)
        latest = chosen == snapshot.run_dates[-1]
        if first_row == stop_row and (
            not latest or snapshot.history is None or store not in snapshot.history.ranges
        ):  # a store the lake does not know: no model lookup
            raise NotFound(f"{self.describe(store)} has no forecasts in run {chosen}")
        held = run.arrays["ds"][first_row:stop_row]
        held_first = held[0].item() if len(held) else None
        held_last = held[-1].item() if len(held) else None
        start = start or held_first or chosen
        end = end or held_last or start + dt.timedelta(days=self.horizon_days - 1)
        if end < start:
            raise BadRequest(f"end {end} is before start {start}")
        span = (end - start).days + 1
        if span > self.service.max_range_days:
            raise BadRequest(f"start..end spans {span} days; at most {self.service.max_range_days}")
        wanted = [start + dt.timedelta(days=i) for i in range(span)]
        opened = self._open_days(snapshot, store, start, end)
        lower, upper = run.window(store, start, end)
        arrays = run.arrays
        points: dict[dt.date, dict[str, Any]] = {
            day: {
                "date": day.isoformat(),
                "yhat": yhat,
                "yhat_lower": low,
                "yhat_upper": high,
                "model_type": family,
                "open": opened.get(day, day.isoweekday() != 7),
                "source": "forecasts",
            }
            for day, yhat, low, high, family in zip(
                arrays["ds"][lower:upper].tolist(),
                np.round(arrays["yhat"][lower:upper].astype("float64"), 2).tolist(),
                np.round(arrays["yhat_lower"][lower:upper].astype("float64"), 2).tolist(),
                np.round(arrays["yhat_upper"][lower:upper].astype("float64"), 2).tolist(),
                arrays["model_type"][lower:upper].tolist(),
                strict=True,
            )
        }
        meta: dict[str, Any] = {}
        if first_row < stop_row:
            meta = {
                "name": str(arrays["model_name"][first_row]),
                "version": int(arrays["model_version"][first_row]),
                "trained_run_date": arrays["trained_run_date"][first_row].item().isoformat(),
            }
        missing = [day for day in wanted if day not in points]
        on_demand = None
        if missing:
            if not latest:
                raise NotFound(
                    f"run {chosen} holds {held_first or chosen} .. {held_last or chosen} for "
                    f"{self.describe(store)}; days outside it are forecast on demand by the current champion: "
                    "ask without run_date"
                )
            if not on_demand_allowed:
                raise NeedsModel()
            on_demand = self._on_demand(snapshot, store, missing, opened, points)
        return {
            **self.ids(store),
            "run_date": chosen.isoformat(),
            "run_id": str(arrays["run_id"][first_row]) if first_row < stop_row else None,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "model": meta or None,
            "on_demand": on_demand,
            "versions": self.versions(snapshot),
            "points": [points[day] for day in wanted],
        }

    def _on_demand(
        self,
        snapshot: Snapshot,
        store: Any,
        days: list[dt.date],
        opened: dict[dt.date, bool],
        points: dict[dt.date, dict[str, Any]],
    ) -> dict[str, Any]:
        champion = snapshot.champion
        if champion is None:
            raise Unavailable(
                f"{len(days)} day(s) from {days[0]} are not in the forecasts table and on-demand "
                f"forecasts are unavailable: {snapshot.champion_problem}"
            )
        cutoff = champion.trained_run_date
        if days[0] < cutoff:
            raise BadRequest(
                f"{days[0]} is before the champion's training cut-off {cutoff} and not in the "
                "forecasts table: see /history for actuals"
            )
        reach = cutoff + dt.timedelta(days=self.service.on_demand_days - 1)
        if days[-1] > reach:
            raise BadRequest(
                f"{days[-1]} is beyond the on-demand reach of {self.service.on_demand_days} days "
                f"after the champion's training date {cutoff} (up to {reach})"
            )
        frame, defaulted = self._planned_rows(snapshot, store, days)
        versions = {name: v for name, v in snapshot.versions.items() if v is not None}
        try:
            predicted = champion.model.predict(
                None,
                frame,
                params={"calendar_versions": versions, "calendar_rows": self._calendar_rows(snapshot, store)},
            )
        except Exception as exc:  # noqa: BLE001 - the models' table gone or unreadable: say so (503)
            log.warning("on-demand forecast of %s failed: %s: %s", self.describe(store), type(exc).__name__, exc)
            raise Unavailable(
                f"on-demand forecasts from champion v{champion.version} failed for {self.describe(store)}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            ) from None
        if not len(predicted):
            raise NotFound(
                f"{self.describe(store)} has no forecasts in the table for these days and no model in "
                f"champion v{champion.version}"
            )
        for record in predicted.to_dict("records"):
            day = _day(record["ds"])
            points[day] = {
                "date": day.isoformat(),
                "yhat": round(float(record["yhat"]), 2),
                "yhat_lower": round(float(record["yhat_lower"]), 2),
                "yhat_upper": round(float(record["yhat_upper"]), 2),
                "model_type": record["model_type"],
                "open": opened.get(day, day.isoweekday() != 7),
                "source": "on_demand",
            }
        return {
            "days": len(days),
            "model_version": champion.version,
            "trained_run_date": cutoff.isoformat(),
            "default_calendar_days": defaulted,
        }

    def history(self, snapshot: Snapshot, store: Any, weeks: int) -> dict[str, Any]:
        """The series' last ``weeks`` weeks of actuals (sales, open, promo), for the chart."""
        if snapshot.history is None:
            raise Unavailable("no sales are published yet: run ingest_sales")
        if weeks > self.service.max_history_weeks:
            raise BadRequest(f"weeks must be at most {self.service.max_history_weeks}")
        part = snapshot.history
        first_row, stop_row = part.span(store)
        if first_row == stop_row:
            raise NotFound(f"{self.describe(store)} has no sales in the last {self.service.max_history_weeks} weeks")
        target = self.config.forecasting.target_column
        last = part.arrays[self.date][stop_row - 1].item()
        lower, upper = part.window(store, last - dt.timedelta(weeks=weeks) + dt.timedelta(days=1), last)
        promo = self.config.forecasting.features.promo_column
        columns: dict[str, list[Any]] = {
            "date": [day.isoformat() for day in part.arrays[self.date][lower:upper].tolist()],
            "sales": part.arrays[target][lower:upper].astype("float64").tolist(),
        }
        for name, column in (("open", self.open_column), ("promo", promo)):
            if column and column in part.arrays:
                values = part.arrays[column][lower:upper].tolist()
                columns[name] = [bool(v) if v == v and v is not None else None for v in values]
        points = _records(columns)
        return {
            **self.ids(store),
            "weeks": weeks,
            "start": points[0]["date"] if points else None,
            "end": last.isoformat(),
            "versions": self.versions(snapshot),
            "points": points,
        }

    def similar(self, snapshot: Snapshot, store: int, k: int) -> dict[str, Any]:
        """The store's ``k`` most similar stores (find_similar_stores' latest run)."""
        if snapshot.neighbours is None:
            raise Unavailable("no store_neighbours are published yet: run find_similar_stores")
        if k > self.service.max_neighbours:
            raise BadRequest(f"k must be at most {self.service.max_neighbours}")
        part = snapshot.neighbours
        first_row, stop_row = part.span(store)
        if first_row == stop_row:
            raise NotFound(f"store {store} has no neighbours in run {snapshot.neighbours_run_date}")
        stop_row = min(stop_row, first_row + k)
        columns: dict[str, list[Any]] = {
            self.key: part.arrays["neighbour"][first_row:stop_row].astype("int64").tolist(),
            "rank": part.arrays["rank"][first_row:stop_row].astype("int64").tolist(),
        }
        for name in part.arrays:
            if name not in (self.key, "neighbour", "rank"):
                values = part.arrays[name][first_row:stop_row].astype("float64")
                columns[name] = np.round(values, 4).tolist()
        neighbours = _records(columns)
        return {
            self.key: store,
            "k": k,
            "run_date": snapshot.neighbours_run_date.isoformat() if snapshot.neighbours_run_date else None,
            "versions": self.versions(snapshot),
            "neighbours": neighbours,
        }

    def _known_series(self, snapshot: Snapshot) -> list[Any]:
        """The series with forecasts in the latest run (with sales, before any run)."""
        if not snapshot.run_dates:
            return snapshot.history.keys if snapshot.history is not None else []
        return snapshot.forecast_run(None)[1].keys

    def stores(self, snapshot: Snapshot) -> dict[str, Any]:
        """The stores with forecasts in the latest run, and the published runs."""
        known = self._known_series(snapshot)
        ids = sorted({series[0] for series in known}) if self.extra else known
        return {
            "stores": ids,
            "series_keys": self.keys,
            "run_dates": [d.isoformat() for d in reversed(snapshot.run_dates)],
            "versions": self.versions(snapshot),
        }

    def items(self, snapshot: Snapshot, store: int) -> dict[str, Any]:
        """The store's series (the second group key's values) in the latest run."""
        if self.extra is None:
            raise BadRequest(f"this lake is forecast per {self.key}: it has no items")
        values = [series[1] for series in self._known_series(snapshot) if series[0] == store]
        if not values:
            raise NotFound(f"{self.key} {store} has no series in the latest run")
        return {self.key: store, "items": values, "versions": self.versions(snapshot)}

    @staticmethod
    def versions(snapshot: Snapshot) -> dict[str, Any]:
        out: dict[str, Any] = dict(snapshot.versions)
        out["champion"] = snapshot.champion.version if snapshot.champion else None
        return out


__all__ = ["BadRequest", "NeedsModel", "NotFound", "Planner", "ResponseCache", "Unavailable"]
