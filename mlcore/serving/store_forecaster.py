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
        self._models: dict[tuple, dict] | None = None
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

    def _featured(self, request: pd.DataFrame) -> pd.DataFrame:
        """The request's rows with the shared features, computed over the calendar around them."""
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
        # the planned calendar after the request, then sales on both sides (one read each)
        for name, start, priority in (("forecast_calendar", after, 1), ("sales", first - window, 2)):
            uri = self.calendar_uris.get(name)
            if not uri:
                continue
            end = after + window
            predicate = f"{date} >= '{start.isoformat()}' and {date} < '{end.isoformat()}'"
            found = self._read(uri, columns, predicate)
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

    def _load_models(self) -> dict[tuple, dict]:
        if self._models is None:
            import pyarrow as pa
            from deltalake import DeltaTable

            keys = list(self.forecasting.group_keys)
            table = DeltaTable(self.table_uri, version=self.table_version)
            reader = table.scan(
                columns=[
                    *keys, "champion", "model_json", "baseline_json", "model_sha256",
                    "baseline_sha256", "history_max",
                ],  # fmt: skip
                predicate=f"run_date = '{self.run_date}'",
            )
            frame = pa.table(reader).to_pandas()
            self._models = {
                tuple(row[k] for k in keys): row for row in frame.to_dict(orient="records")
            }
        return self._models

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        from mlcore.forecasting.prediction import forecast_group
        from mlcore.forecasting.schemas import forecast_columns

        keys = list(self.forecasting.group_keys)
        models = self._load_models()
        if self.forecasting.features.enabled and len(model_input):
            model_input = self._featured(model_input)
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


set_model(StoreForecasterModel())
