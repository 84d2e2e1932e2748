"""Fixtures shared by the planners' service tests (API and browser)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def service_lake(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MLCORE_HOME of the small real lake in :mod:`tests.integration.service_lake` (built once)."""
    from tests.integration.service_lake import build_lake

    return build_lake(spark, tmp_path_factory.mktemp("service_lake"))


@pytest.fixture(scope="session")
def item_lake(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MLCORE_HOME of a store x item lake, built through config alone: the bundled synthetic
    stores (6) x 3 generated items ingested, trained and forecast per (store, item) for
    2015-06-14, and the stores' neighbours."""
    import datetime as dt

    from mlcore.runner import run_job
    from tests.integration.service_lake import job_args

    home = tmp_path_factory.mktemp("item_lake")
    run_date = dt.date(2015, 6, 14)
    keyed = ("--set", "forecasting.group_keys=[store,item]")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLCORE_HOME", str(home))
        items = "sources.sales.items_per_store=3"
        assert run_job("ingest_sales", job_args(run_date, "--set", items)) == 0
        assert run_job("train_forecasts", job_args(run_date, *keyed)) == 0
        assert run_job("make_forecasts", job_args(run_date, *keyed)) == 0
        assert run_job("find_similar_stores", job_args(run_date, "--set", "similarity.k=3")) == 0
    return home
