"""make_forecasts gives every group a status row: a store whose stored models were damaged
after training used to vanish from ``forecasts`` with one log line (exit 0), and a model with a
changed ``y_scale`` published 1e11-scale rows as ``prophet``. Now: ``forecast_status`` says
ok / fallback / failed per store and why, the summary names what was not forecast, and above the
failure budget nothing is published."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlcore.runner import run_job
from tests.reliability.conftest import ARGS, FAST_FORECASTING, RUN_DATE, scan, write_sales

pytestmark = pytest.mark.slow
STORES = 4


def _tamper(lake: Path, edits: dict[int, dict[str, str]]) -> None:
    """Rewrite forecast_models' data files in place, as a damaged or edited store would."""
    for path in (lake / "forecast_models").rglob("*.parquet"):
        table = pq.read_table(path)
        rows = table.to_pylist()
        changed = False
        for row in rows:
            for column, text in edits.get(row["store"], {}).items():
                row[column] = text
                changed = True
        if changed:
            pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def _scaled(model_json: str, factor: float) -> str:
    """The model edited to forecast ``factor`` x its level (Prophet's y_scale, LightGBM's
    upper interval in log space), as a tampered table would hold it."""
    envelope = json.loads(model_json)
    if envelope["model_type"] == "prophet":
        prophet = json.loads(envelope["prophet_model"])
        prophet["y_scale"] *= factor
        envelope["prophet_model"] = json.dumps(prophet)
    else:
        envelope["residual_high"] += float(np.log(factor))
    return json.dumps(envelope)


def test_every_group_gets_a_status_and_damaged_models_never_publish(
    spark, tables, mlcore_home, capsys
):
    write_sales(spark, tables, STORES)
    args = [*ARGS, *FAST_FORECASTING]
    assert run_job("train_forecasts", args) == 0
    lake = mlcore_home / "lake"
    models = scan(lake / "forecast_models").set_index("store")
    assert (models.loc[[2, 3], "champion"] == "lightgbm").all()
    _tamper(
        lake,
        {
            2: {  # both models damaged: nothing usable
                "model_json": _scaled(models.loc[2, "model_json"], 1e12 / 15_689),
                "baseline_json": models.loc[2, "baseline_json"].replace("levels", "lvls"),
            },
            3: {"model_json": _scaled(models.loc[3, "model_json"], 1e12 / 15_689)},
        },
    )
    capsys.readouterr()

    budget = ["--set", "forecasting.failure_budget=0.5"]
    assert run_job("make_forecasts", [*args, *budget]) == 0
    out = capsys.readouterr().out
    assert "not forecast" in out and "store 2 (" in out and "content hash mismatch" in out
    status = scan(lake / "forecast_status").set_index("store")
    assert sorted(status.index) == list(range(1, STORES + 1)), "one status row per group"
    assert status.loc[2, "status"] == "failed" and status.loc[2, "forecast_rows"] == 0
    assert status.loc[3, "status"] == "fallback"
    assert "content hash mismatch" in status.loc[3, "status_reason"]
    assert status.loc[3, "model_type"] == "seasonal_naive"
    assert set(status.loc[[1, 4], "status"]) == {"ok"}
    forecasts = scan(lake / "forecasts")
    assert 2 not in set(forecasts["store"])
    assert set(forecasts.loc[forecasts["store"] == 3, "model_type"]) == {"seasonal_naive"}
    assert forecasts["yhat"].max() < 3 * models["history_max"].max()
    assert (status["forecast_rows"] == forecasts.groupby("store").size().reindex(status.index, fill_value=0)).all()

    # Over the budget: nothing published for that run date, the error names the store.
    later = [*ARGS[:-1], (RUN_DATE + dt.timedelta(days=7)).isoformat()]
    before = {name: scan(lake / name).shape for name in ("forecasts", "forecast_status")}
    assert run_job("make_forecasts", [*later, "--set", "forecasting.failure_budget=0.1"]) == 1
    err = capsys.readouterr().err
    assert "nothing published" in err and "store 2" in err
    assert {name: scan(lake / name).shape for name in ("forecasts", "forecast_status")} == before
