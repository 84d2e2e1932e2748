"""Fixtures shared by the planners' service tests (API and browser)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def service_lake(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MLCORE_HOME of the small real lake in :mod:`tests.integration.service_lake` (built once)."""
    from tests.integration.service_lake import build_lake

    return build_lake(spark, tmp_path_factory.mktemp("service_lake"))
