"""MLflow pyfunc (models-from-code) serving the per-store models of one ``forecast_models`` version.

Registered as ``store_forecaster``: the version's ``model_config`` names the Delta table, the
table version and the training run date, so the registry entry always points at exactly the
models that were evaluated. No pickle anywhere: the code is this file, the models are Prophet
JSON rows read with delta-rs.

Input: one row per (group, date) with the group keys, the date column and the future regressors
(open, promo, school_holiday, state_holiday; missing ones get the documented defaults).
Output: keys, ds, yhat, yhat_lower, yhat_upper, model_type.

The shared features (``forecasting.features``) are computed here without Spark
(:func:`mlcore.forecasting.features.add_features_pandas`, held equal to the jobs' Spark version
by a test) over the request's rows plus the calendar around them that make_forecasts would read:
``sales`` for the ``context_days`` before the first requested day and, after the last one,
``forecast_calendar`` then ``sales`` (read with delta-rs from the URIs recorded at training),
and the store attributes at the ``stores`` version training read.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class StoreForecasterModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from mlcore.config.loader import build_section
        from mlcore.config.models import ForecastingConfig

        config = dict(context.model_config or {})
        self.forecasting = build_section(ForecastingConfig, config["forecasting"])
        self.table_uri = config["table_uri"]
        self.table_version = int(config["table_version"])
        # a date, not free text: it is rendered into the delta-rs scan predicate below
        self.run_date = dt.date.fromisoformat(str(config["run_date"])).isoformat()
        self.calendar_uris: dict[str, str] = dict(config.get("calendar_uris") or {})
        self.stores_uri = config.get("stores_uri")
        self.stores_version = config.get("stores_version")
        # None: every model read is kept (batch scoring); a number: at most that many groups'
        # models are kept, least recently used first out.
        self.max_loaded_models: int | None = None
        self._lock = threading.Lock()  # the service predicts from several threads
        self._loaded: OrderedDict[tuple, dict | None] = OrderedDict()
        self._stores: pd.DataFrame | None = None

    def _read(self, uri: str, columns: list[str], predicate: str, version: int | None = None) -> pd.DataFrame:
        import pyarrow as pa
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            table = DeltaTable(uri, version=version)
        except TableNotFoundError:
            return pd.DataFrame(columns=columns)
        present = set(table.schema().to_arrow().names)
        reader = table.scan(columns=[c for c in columns if c in present], predicate=predicate or None)
        return pa.table(reader).to_pandas()

    def _store_attributes(self) -> pd.DataFrame | None:
        if self.stores_uri is None:
            return None
        if self._stores is None:
            from mlcore.forecasting.features import _STORE_COLUMNS

            version = int(self.stores_version) if self.stores_version is not None else None
            columns = [self.forecasting.features.stores_key, *_STORE_COLUMNS]
            self._stores = self._read(str(self.stores_uri), columns, "", version)
        return self._stores

    def _featured(
        self,
        request: pd.DataFrame,
        groups: list[tuple],
        versions: dict[str, int] | None = None,
        calendar_rows: Any = None,
    ) -> pd.DataFrame:
        """The request's rows with the shared features, computed over the calendar around them.

        ``groups``: the request's distinct key tuples (up to ``_KEYED_SCAN_LIMIT`` of them, the
        delta-rs reads are limited to their rows). ``calendar_rows(name, start, end)``: the rows
        of table ``name`` with ``start <= date < end`` when the caller already holds them (the
        planners' service: its snapshot), instead of a delta-rs read (at ``versions[name]``,
        else the latest version)."""
        from mlcore.forecasting.features import add_features_pandas, calendar_columns, context_days

        fc = self.forecasting
        keys, date = list(fc.group_keys), fc.date_column
        columns = [*keys, date, *calendar_columns(fc)]
        rows = request.copy()
        rows[date] = pd.to_datetime(rows[date]).dt.date
        window = dt.timedelta(days=context_days(fc))
        first, last = min(rows[date]), max(rows[date])
        after = last + dt.timedelta(days=1)
        around = [rows.assign(_priority=0, _requested=True)]
        # A request for a few groups reads only their rows: MLflow predicts on the one-group
        # input example when train_forecasts registers the model, and a date-only scan read
        # every series' calendar window into the driver (measured ~9 KB a series at 3,000).
        keyed = f" and ({_keys_predicate(keys, groups)})" if len(groups) <= self._KEYED_SCAN_LIMIT else ""
        # the planned calendar after the request, then sales on both sides (one read each)
        for name, start, priority in (("forecast_calendar", after, 1), ("sales", first - window, 2)):
            uri = self.calendar_uris.get(name)
            if not uri:
                continue
            end = after + window
            if calendar_rows is not None:
                found = calendar_rows(name, start, end)
            else:
                predicate = f"{date} >= '{start.isoformat()}' and {date} < '{end.isoformat()}'{keyed}"
                found = self._read(uri, columns, predicate, (versions or {}).get(name))
            if len(found):
                found[date] = pd.to_datetime(found[date]).dt.date
                outside = (found[date] < first) | (found[date] > last)  # the request's days are its own
                found = found[outside].merge(rows[keys].drop_duplicates(), on=keys)
                around.append(found.assign(_priority=priority, _requested=False))
        known = pd.concat(around, ignore_index=True)
        known[date] = pd.to_datetime(known[date]).dt.date
        known = known.sort_values("_priority", kind="mergesort").drop_duplicates([*keys, date])
        featured = add_features_pandas(known.reset_index(drop=True), fc, self._store_attributes())
        return featured[featured["_requested"].astype(bool)].drop(columns=["_priority", "_requested"])

    # A request for more groups than this reads the whole run's models (and the calendar window
    # of every series) in one scan; up to it, only its groups' rows (keyed scans). MLflow
    # predicts on the input example when the model is logged: one group, so registering a
    # 30,000-series run reads one model and one series' calendar, not all.
    _KEYED_SCAN_LIMIT = 256

    def _models_for(self, wanted: list[tuple]) -> dict[tuple, dict]:
        """The stored rows of the ``wanted`` groups, read once and kept (with
        ``max_loaded_models`` set, as the planners' service does, the most recently used ones
        only). Up to ``_KEYED_SCAN_LIMIT`` missing groups are read with a key predicate (one
        small scan); more, with the whole run's models in one scan (batch scoring)."""
        with self._lock:
            missing = [key for key in dict.fromkeys(wanted) if key not in self._loaded]
            if missing:
                whole = len(missing) > self._KEYED_SCAN_LIMIT
                found = self._scan_models(None if whole else missing)
                for key in missing:
                    self._loaded[key] = found.get(key)  # None: no model for this group
                if whole:
                    for key, row in found.items():
                        self._loaded.setdefault(key, row)
            out: dict[tuple, dict] = {}
            for key in wanted:
                if key in self._loaded:
                    self._loaded.move_to_end(key)
                    stored = self._loaded[key]
                    if stored is not None:
                        out[key] = stored
            limit = self.max_loaded_models
            while limit is not None and len(self._loaded) > max(limit, len(set(wanted))):
                self._loaded.popitem(last=False)
            return out

    @property
    def loaded_models(self) -> int:
        """Groups whose stored model rows are held in memory now."""
        return sum(row is not None for row in self._loaded.values())

    def _scan_models(self, keys: list[tuple] | None) -> dict[tuple, dict]:
        import pyarrow as pa
        from deltalake import DeltaTable

        group_keys = list(self.forecasting.group_keys)
        predicate = f"run_date = '{self.run_date}'"
        if keys is not None:
            predicate += f" and ({_keys_predicate(group_keys, keys)})"
        table = DeltaTable(self.table_uri, version=self.table_version)
        reader = table.scan(
            columns=[
                *group_keys, "champion", "model_json", "baseline_json", "model_sha256",
                "baseline_sha256", "history_max",
            ],  # fmt: skip
            predicate=predicate,
        )
        frame = pa.table(reader).to_pandas()
        return {
            tuple(row[k] for k in group_keys): row for row in frame.to_dict(orient="records")
        }

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        from mlcore.forecasting.prediction import forecast_group
        from mlcore.forecasting.schemas import forecast_columns

        keys = list(self.forecasting.group_keys)
        if not len(model_input):
            return pd.DataFrame(columns=forecast_columns(keys))
        wanted = [tuple(k) for k in model_input[keys].drop_duplicates().itertuples(index=False)]
        models = self._models_for(wanted)
        if self.forecasting.features.enabled:
            # params["calendar_versions"]: the table versions to read the calendar at (the
            # service pins them to the snapshot it answers from); latest versions otherwise
            versions = dict((params or {}).get("calendar_versions") or {})
            model_input = self._featured(
                model_input, wanted, versions, (params or {}).get("calendar_rows")
            )
        outputs = []
        for key_values, future in model_input.groupby(keys, sort=True):
            key_tuple = key_values if isinstance(key_values, tuple) else (key_values,)
            row = models.get(key_tuple)
            if row is None:
                continue
            outputs.append(
                forecast_group(
                    row, future, dict(zip(keys, key_tuple, strict=True)), self.forecasting
                )
            )
        if not outputs:
            return pd.DataFrame(columns=forecast_columns(keys))
        return pd.concat(outputs, ignore_index=True)


def _keys_predicate(names: list[str], keys: list[tuple]) -> str:
    """A delta-rs predicate matching exactly ``keys``: integers as numbers, anything else as a
    quoted string (quotes doubled), so a key from a request cannot change the predicate."""

    def literal(value: Any) -> str:
        import numbers

        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return str(int(value))
        return "'" + str(value).replace("'", "''") + "'"

    if len(names) == 1:
        return f"{names[0]} in ({', '.join(literal(key[0]) for key in keys)})"
    return " or ".join(
        "(" + " and ".join(f"{n} = {literal(v)}" for n, v in zip(names, key, strict=True)) + ")"
        for key in keys
    )


set_model(StoreForecasterModel())
