"""The registered store_forecaster's MLflow signature: what a caller passes and gets back.

Built from the training input's own column types (the group keys, the date, the open flag, the
regressors and the holidays column of ``sales``), so MLflow checks a scoring request against
what the models were trained on, and the model page shows the contract. The optional inputs
(open flag, regressors, holidays) get the documented defaults when absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlcore.config.models import ForecastingConfig

# Spark SQL type names -> MLflow column types. Integers are "long": a caller's pandas int64
# column is accepted (MLflow refuses to narrow int64 to a 32-bit "integer"); int32 widens.
MLFLOW_TYPES = {
    "tinyint": "long", "smallint": "long", "int": "long", "bigint": "long",
    "float": "float", "double": "double", "string": "string", "boolean": "boolean",
    "date": "datetime", "timestamp": "datetime", "timestamp_ntz": "datetime",
}  # fmt: skip


def forecaster_signature(config: ForecastingConfig, column_types: Mapping[str, str]) -> Any:
    """``column_types``: Spark SQL type names of the training table's columns."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    def spec(name: str, required: bool = True) -> ColSpec:
        kind = MLFLOW_TYPES.get(column_types.get(name, "string"), "string")
        return ColSpec(kind, name, required=required)

    from mlcore.forecasting.features import calendar_columns

    optional = list(calendar_columns(config))
    inputs = [*(spec(k) for k in config.group_keys), spec(config.date_column)]
    inputs += [spec(c, required=False) for c in dict.fromkeys(optional)]
    outputs = [*(spec(k) for k in config.group_keys), ColSpec("datetime", "ds")]
    outputs += [ColSpec("double", c) for c in ("yhat", "yhat_lower", "yhat_upper")]
    outputs.append(ColSpec("string", "model_type"))
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))  # type: ignore[arg-type]


def forecaster_input_example(
    config: ForecastingConfig, keys: Mapping[str, Any], first_day: Any, days: int = 2
) -> Any:
    """A request for ``days`` days of one group (open, no promo, no holiday): the example the
    model page shows and MLflow checks the signature with."""
    import datetime as dt

    import pandas as pd

    dates = pd.to_datetime([first_day + dt.timedelta(days=i) for i in range(days)])
    frame = pd.DataFrame({**{k: [v] * days for k, v in keys.items()}, config.date_column: dates})
    if config.open_column:
        frame[config.open_column] = 1
    for name in config.prophet.regressors:
        frame[name] = 0
    if config.prophet.holidays_column:
        frame[config.prophet.holidays_column] = "0"
    return frame
