"""MLflow pyfunc (models-from-code) serving the per-store models of one ``forecast_models`` version.

Registered as ``store_forecaster``: the version's ``model_config`` names the Delta table, the
table version and the training run date, so the registry entry always points at exactly the
models that were evaluated. No pickle anywhere: the code is this file, the models are Prophet
JSON rows read with delta-rs.

Input: one row per (group, date) with the group keys, the date column and the future regressors
(open, promo, school_holiday, state_holiday; missing ones get the documented defaults).
Output: keys, ds, yhat, yhat_lower, yhat_upper, model_type.
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
        self._models: dict[tuple, dict] | None = None

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
