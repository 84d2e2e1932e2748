"""Tables written by an older mlcore: a job refuses to write to them with one line naming the
command, ``python -m mlcore migrate`` converts each in one commit with every row kept, and a
second run changes nothing. On both engines."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from mlcore.io import DeltaTables
from mlcore.io.errors import DeltaIOError
from mlcore.migrate import main as migrate
from tests.conftest import CONF_DIR

ARGS = ["--env", "test", "--conf-dir", str(CONF_DIR)]


def old_tables(lake) -> dict[str, int]:
    """forecasts with a string model_version, forecast_metrics with ``window``, rides partitioned
    by day without pickup_month: as mlcore wrote them before; returns each table's row count."""
    run_date = dt.date(2015, 6, 14)
    forecasts = pa.table({
        "store": pa.array([1, 1, 2], pa.int32()), "yhat": [10.0, 11.0, 12.0],
        "model_version": ["3", "3", "3"], "run_date": [run_date] * 3,
    })  # fmt: skip
    metrics = pa.table({
        "store": pa.array([1, 2], pa.int32()), "window": pa.array([0, 0], pa.int32()),
        "metric": ["wape", "wape"], "value": [0.1, 0.2], "run_date": [run_date] * 2,
    })  # fmt: skip
    days = [dt.date(2019, 1, 30), dt.date(2019, 1, 31), dt.date(2019, 2, 1)]
    rides = pa.table({
        "trip_distance": [1.0, 2.0, 3.0], "pickup_date": days, "run_date": [run_date] * 3,
    })  # fmt: skip
    write_deltalake(str(lake / "forecasts"), forecasts, partition_by=["run_date"])
    write_deltalake(str(lake / "forecast_metrics"), metrics, partition_by=["run_date"])
    write_deltalake(str(lake / "rides"), rides, partition_by=["pickup_date"])
    return {"forecasts": 3, "forecast_metrics": 2, "rides": 3}


def test_jobs_refuse_old_tables_and_migrate_converts_each_once(spark, make_config, mlcore_home, capsys):
    lake = mlcore_home / "lake"
    rows = old_tables(lake)
    tables = DeltaTables(spark, make_config())
    frame = spark.createDataFrame(pd.DataFrame({"store": [3], "yhat": [1.0], "model_version": [4]})
                                  .assign(run_date=dt.date(2015, 6, 15)), "store int, yhat double, model_version int, run_date date")  # fmt: skip
    with pytest.raises(DeltaIOError, match=r"model_version string -> int.*`python -m mlcore migrate --env test`"):
        tables.write(frame, "forecasts", mode="append")
    versions = {name: DeltaTable(str(lake / name)).version() for name in rows}

    assert migrate([*ARGS, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "forecasts: model_version string -> int" in out and "(dry run: not changed)" in out
    assert {name: DeltaTable(str(lake / name)).version() for name in rows} == versions

    assert migrate(ARGS) == 0
    out = capsys.readouterr().out
    for name in rows:
        assert f"{name}: migrated in one commit" in out
        table = DeltaTable(str(lake / name))
        assert table.version() == versions[name] + 1, "one commit each"
        assert len(table.to_pandas()) == rows[name], "every row kept"
    forecasts = DeltaTable(str(lake / "forecasts")).to_pandas()
    assert forecasts["model_version"].tolist() == [3, 3, 3]
    metrics = DeltaTable(str(lake / "forecast_metrics")).to_pandas()
    assert "window" not in metrics and metrics["backtest_window"].tolist() == [0, 0]
    rides = DeltaTable(str(lake / "rides"))
    assert rides.metadata().partition_columns == ["pickup_month"]
    assert sorted(rides.to_pandas()["pickup_month"]) == ["2019-01", "2019-01", "2019-02"]

    tables.write(frame, "forecasts", mode="append")  # the current shape: written
    assert migrate(ARGS) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_native_delta_migrates_in_one_commit(spark, make_config, mlcore_home):
    from tests.conftest import require_native_delta

    require_native_delta(spark)
    lake = mlcore_home / "lake"
    old_tables(lake)
    tables = DeltaTables(spark, make_config(), engine="spark")
    assert [m.table for m in tables.pending_migrations("rides")] == ["rides"]
    before = DeltaTable(str(lake / "rides")).version()
    result = tables.migrate("rides")
    assert result is not None and result.committed
    rides = DeltaTable(str(lake / "rides"))
    assert rides.version() == before + 1 and rides.metadata().partition_columns == ["pickup_month"]
    assert len(rides.to_pandas()) == 3
    assert tables.migrate("forecasts") is not None
    assert DeltaTable(str(lake / "forecasts")).to_pandas()["model_version"].tolist() == [3, 3, 3]
    assert tables.pending_migrations("forecasts") == [] and tables.migrate("forecasts") is None
