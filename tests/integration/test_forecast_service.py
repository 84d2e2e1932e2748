"""The planners' service over real Delta tables written by the jobs (8 Rossmann stores): each
endpoint against the tables, the on-demand path against make_forecasts, the cache and its
invalidation when a new run is published while the service runs, auth, CORS and bad input."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable
from fastapi.testclient import TestClient

from tests.conftest import CONF_DIR
from tests.integration.service_lake import RUN_DATES, STORES, TRAIN_DATE, copy_lake, job_args

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token-for-tests"


def service(home: Path, *overrides: str, token: str | None = None):
    """The app over ``home``'s lake (auth off unless a token is given)."""
    from mlcore.config.loader import load_config
    from mlcore.serving.app import create_app
    from mlcore.serving.lake import Lake
    from mlcore.tracking.runs import configure_mlflow

    auth = [f"service.auth_required={'true' if token else 'false'}"]
    config = load_config(
        "test", conf_dir=CONF_DIR, overrides=[*auth, *overrides], environ={"MLCORE_HOME": str(home)}
    )
    configure_mlflow(config)
    return create_app(config, Lake(config), token=token)


def table(home: Path, name: str) -> pd.DataFrame:
    return DeltaTable(str(home / "lake" / name)).to_pandas()


@pytest.fixture
def client(service_lake):
    with TestClient(service(service_lake)) as test_client:
        yield test_client


def test_forecast_is_the_published_run_day_by_day(client, service_lake):
    forecasts = table(service_lake, "forecasts")
    latest = forecasts[(forecasts["run_date"] == RUN_DATES[-1]) & (forecasts["store"] == 3)].sort_values("ds")
    response = client.get("/stores/3/forecast")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run_date"] == RUN_DATES[-1].isoformat() and body["run_id"] == latest["run_id"].iloc[0]
    assert body["model"] == {
        "name": "store_forecaster", "version": 1, "trained_run_date": TRAIN_DATE.isoformat(),
    }  # fmt: skip
    assert body["versions"]["forecasts"] == DeltaTable(str(service_lake / "lake" / "forecasts")).version()
    points = pd.DataFrame(body["points"])
    assert len(points) == 48 and (points["source"] == "forecasts").all() and body["on_demand"] is None
    assert list(points["date"]) == [d.isoformat() for d in latest["ds"]]
    for column in ("yhat", "yhat_lower", "yhat_upper"):
        assert points[column].to_numpy() == pytest.approx(latest[column].to_numpy(), abs=0.006)
    assert list(points["model_type"]) == list(latest["model_type"])
    # closed days are marked from the planned calendar and forecast 0
    calendar = table(service_lake, "forecast_calendar")
    sales = table(service_lake, "sales")
    planned = pd.concat([sales[sales["store"] == 3], calendar[calendar["store"] == 3]])
    open_by_day = {d.isoformat(): bool(o) for d, o in zip(planned["date"], planned["open"], strict=True)}
    assert list(points["open"]) == [open_by_day.get(d, True) for d in points["date"]]
    closed = points[~points["open"]]
    assert len(closed) >= 6 and (closed["yhat"] == 0).all()

    older = client.get(f"/stores/3/forecast?run_date={RUN_DATES[0]}&start=2015-06-20&end=2015-06-22").json()
    assert older["run_date"] == RUN_DATES[0].isoformat() and len(older["points"]) == 3


def test_on_demand_forecasts_match_make_forecasts(client, service_lake):
    """Days past the table come from the champion's models with the future calendar; for days
    the table holds, the same path gives make_forecasts' numbers."""
    beyond = client.get("/stores/5/forecast?start=2015-08-10&end=2015-08-17")  # the table ends 08-07
    assert beyond.status_code == 200, beyond.text
    body = beyond.json()
    assert {p["source"] for p in body["points"]} == {"on_demand"} and len(body["points"]) == 8
    assert body["on_demand"]["days"] == 8 and body["on_demand"]["model_version"] == "1"
    assert all(p["yhat_lower"] <= p["yhat"] <= p["yhat_upper"] for p in body["points"])
    assert all(p["yhat"] > 0 for p in body["points"] if p["open"])

    spanning = client.get("/stores/5/forecast?start=2015-08-05&end=2015-08-10").json()
    sources = [p["source"] for p in spanning["points"]]
    assert sources == ["forecasts"] * 3 + ["on_demand"] * 3 and spanning["on_demand"]["days"] == 3

    from mlcore.serving.planner import Planner

    app = client.app
    snapshot = app.state.lake.snapshot
    planner = Planner(app.state.lake.config)
    forecasts = table(service_lake, "forecasts")
    held = forecasts[(forecasts["run_date"] == RUN_DATES[0]) & (forecasts["store"] == 5)].sort_values("ds")
    points: dict = {}
    planner._on_demand(snapshot, 5, list(held["ds"]), {}, points)
    assert len(points) == 48
    recomputed = [points[d]["yhat"] for d in held["ds"]]
    assert recomputed == pytest.approx(held["yhat"].round(2).to_list(), abs=0.011)
    health = client.get("/health").json()
    assert health["champion"]["models_loaded"] == 1 and health["champion"]["version"] == "1"


def test_history_and_similar_stores_come_from_their_tables(client, service_lake):
    sales = table(service_lake, "sales")
    store_sales = sales[sales["store"] == 2].sort_values("date")
    history = client.get("/stores/2/history?weeks=3").json()
    assert len(history["points"]) == 21 and history["end"] == store_sales["date"].max().isoformat()
    assert [p["sales"] for p in history["points"]] == store_sales["sales"].tail(21).astype(float).to_list()

    neighbours = table(service_lake, "store_neighbours")
    expected = neighbours[neighbours["store"] == 2].sort_values("rank").head(3)
    similar = client.get("/stores/2/similar?k=3").json()
    assert [n["store"] for n in similar["neighbours"]] == expected["neighbour"].to_list()
    assert [n["rank"] for n in similar["neighbours"]] == [1, 2, 3]
    scores = [n["similarity"] for n in similar["neighbours"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert similar["run_date"] == TRAIN_DATE.isoformat()
    catalog = client.get("/stores").json()
    assert catalog["stores"] == list(range(1, STORES + 1))
    assert catalog["run_dates"] == [d.isoformat() for d in reversed(RUN_DATES)]


def test_batch_query_and_its_bounds(client):
    response = client.post(
        "/forecasts/query", json={"stores": [1, 4, 1], "start": "2015-06-25", "end": "2015-06-30"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [f["store"] for f in body["forecasts"]] == [1, 4]
    assert all(len(f["points"]) == 6 for f in body["forecasts"])
    single = client.get("/stores/4/forecast?start=2015-06-25&end=2015-06-30").json()
    assert body["forecasts"][1]["points"] == single["points"]
    too_many = client.post("/forecasts/query", json={"stores": list(range(1, 52))})
    assert too_many.status_code == 400 and "at most 50" in too_many.json()["error"]


@pytest.mark.parametrize(
    ("request_line", "status", "message"),
    [
        ("GET /stores/abc/forecast", 400, "store: Input should be a valid integer"),
        ("GET /stores/-3/forecast", 400, "greater than or equal to 0"),
        ("GET /stores/99999999999/forecast", 400, "less than or equal to"),
        ("GET /stores/1/forecast?start=2015-02-30", 400, "start:"),
        ("GET /stores/1/forecast?start=2015-07-10&end=2015-07-01", 400, "is before start"),
        ("GET /stores/1/forecast?start=2015-06-21&end=2016-01-01", 400, "at most 120"),
        ("GET /stores/1/forecast?start=2015-01-05&end=2015-01-09", 400, "training cut-off"),
        ("GET /stores/1/forecast?start=2016-01-01&end=2016-01-05", 400, "on-demand reach"),
        ("GET /stores/1/forecast?run_date=2015-01-01", 404, "no forecast run for run_date 2015-01-01"),
        ("GET /stores/1/forecast?run_date=2015-06-14&end=2015-08-30", 404, "ask without run_date"),
        ("GET /stores/4242/forecast", 404, "store 4242 has no forecasts"),
        ("GET /stores/4242/history", 404, "store 4242 has no sales"),
        ("GET /stores/4242/similar", 404, "store 4242 has no neighbours"),
        ("GET /stores/1/history?weeks=0", 400, "weeks:"),
        ("GET /stores/1/history?weeks=500", 400, "at most 104"),
        ("GET /stores/1/similar?k=21", 400, "at most 20"),
        ("GET /stores/1/forecast?run_date=../../etc/passwd", 400, "run_date:"),
        ("POST /forecasts/query", 400, "stores: Field required"),
        ("POST /forecasts/query {\"stores\": [1], \"path\": \"/etc\"}", 400, "Extra inputs"),
        ("POST /forecasts/query {\"stores\": \"1; drop\"}", 400, "stores:"),
        ("DELETE /stores/1/forecast", 405, ""),
    ],
)
def test_bad_input_gets_a_clear_4xx_never_a_500(client, request_line, status, message):
    method, rest = request_line.split(" ", 1)
    path, _, body = rest.partition(" ")
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if method == "POST" else {}
    if method == "POST" and not body:
        kwargs = {"json": {}}
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["error"]


def test_responses_are_cached_by_request_and_versions(client):
    first = client.get("/stores/6/forecast?start=2015-06-22&end=2015-06-28")
    second = client.get("/stores/6/forecast?start=2015-06-22&end=2015-06-28")
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert first.content == second.content
    other = client.get("/stores/6/forecast?start=2015-06-22&end=2015-06-29")
    assert other.headers["x-cache"] == "miss"
    stats = client.get("/health").json()["cache"]
    assert stats["hits"] == 1 and stats["misses"] == 2 and stats["max_entries"] == 4096
    # one entry per answer (the front of the app and the routes share the key)
    assert stats["entries"] == 2 and stats["bytes"] == len(first.content) + len(other.content)


def test_a_new_run_published_while_serving_is_picked_up_and_never_mixed(service_lake, tmp_path, monkeypatch):
    """make_forecasts publishes a run while the service runs: within refresh_seconds the
    service answers from the new versions, and cached answers of the old ones are not served."""
    from mlcore.runner import run_job

    home = copy_lake(service_lake, tmp_path / "home")
    app = service(home, "service.refresh_seconds=0.2", "service.cache_entries=2")
    with TestClient(app) as client:
        before = client.get("/stores/7/forecast")
        assert client.get("/stores/7/forecast").headers["x-cache"] == "hit"
        assert before.json()["run_date"] == RUN_DATES[-1].isoformat()
        old_version = before.json()["versions"]["forecasts"]
        monkeypatch.setenv("MLCORE_HOME", str(home))
        new_run = dt.date(2015, 6, 28)
        assert run_job("make_forecasts", job_args(new_run)) == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if client.get("/health").json()["latest_run_date"] == new_run.isoformat():
                break
            time.sleep(0.1)
        else:
            pytest.fail("the new forecasts version was not picked up within 30 s")
        after = client.get("/stores/7/forecast")
        body = after.json()
        assert after.headers["x-cache"] == "miss" and after.headers["x-snapshot"] != before.headers["x-snapshot"]
        assert body["run_date"] == new_run.isoformat()
        assert body["versions"]["forecasts"] == old_version + 1
        assert body["points"][0]["date"] == new_run.isoformat()
        # the old run is still there, read at the new version
        again = client.get(f"/stores/7/forecast?run_date={RUN_DATES[-1]}").json()
        assert again["versions"]["forecasts"] == old_version + 1
        # the bounded cache never holds more than configured
        for store in range(1, 6):
            client.get(f"/stores/{store}/history")
        assert client.get("/health").json()["cache"]["entries"] <= 2


def test_bearer_token_guards_the_data_and_never_reaches_the_logs(service_lake, caplog):
    caplog.set_level(logging.DEBUG)
    with TestClient(service(service_lake, token=TOKEN)) as client:
        assert client.get("/stores/1/forecast").status_code == 401
        wrong = client.get("/stores/1/forecast", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        right = client.get("/stores/1/forecast", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200
        again = client.get("/stores/1/forecast", headers={"Authorization": f"Bearer {TOKEN}"})
        assert again.headers["x-cache"] == "hit"  # cached now: still not served without the token
        assert client.get("/stores/1/forecast").status_code == 401
        assert client.get("/stores/1/forecast", headers={"Authorization": "Basic x"}).status_code == 401
        assert client.post("/forecasts/query", json={"stores": [1]}).status_code == 401
        assert client.get("/health").json() == {"status": "ok"}  # liveness only
        detailed = client.get("/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert "tables" in detailed and TOKEN not in str(detailed)
        page = client.get("/")
        assert page.status_code == 200 and "dashboard.js" in page.text  # the page holds no data
        spec = client.get("/openapi.json").json()
        assert {"/stores/{store}/forecast", "/stores/{store}/history", "/stores/{store}/similar",
                "/forecasts/query", "/health"} <= set(spec["paths"])  # fmt: skip
        docs = client.get("/docs").text
        assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn." not in docs  # works offline
        assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
        assert client.get("/static/dashboard.js").status_code == 200
        assert client.get("/static/../app.py").status_code == 404
    assert TOKEN not in caplog.text


def test_cors_is_off_unless_configured(service_lake):
    origin = {"Origin": "https://planning.example.com"}
    with TestClient(service(service_lake)) as client:
        assert "access-control-allow-origin" not in client.get("/stores", headers=origin).headers
    allowed = "service.cors_origins=[https://planning.example.com]"
    with TestClient(service(service_lake, allowed)) as client:
        for _ in range(2):  # the second is a cached answer: it carries the header too
            headers = client.get("/stores", headers=origin).headers
            assert headers["access-control-allow-origin"] == "https://planning.example.com"
        assert headers["x-cache"] == "hit"


def test_serve_refuses_a_bad_config_in_one_line(service_lake, monkeypatch, capsys):
    from mlcore.cli import main

    monkeypatch.setenv("MLCORE_HOME", str(service_lake))
    monkeypatch.delenv("MLCORE_SERVICE_TOKEN", raising=False)
    base = ["serve", "--env", "test", "--conf-dir", str(CONF_DIR)]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "MLCORE_SERVICE_TOKEN" in err and err.count("\n") == 1 and "Traceback" not in err
    assert main([*base, "--set", "service.auth_required=false", "--port", "0"]) == 2
    assert "service.port must be at least 1" in capsys.readouterr().err
    assert main([*base, "--set", "service.bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_find_similar_stores_rows_rerun_and_bad_config(service_lake, tmp_path, monkeypatch, capsys):
    """Every store gets its k nearest other stores, ranked; a rerun for the run date changes
    nothing; a bad similarity setting exits 2 before any Spark work."""
    from mlcore.runner import run_job

    neighbours = table(service_lake, "store_neighbours")
    assert set(neighbours["store"]) == set(range(1, STORES + 1))
    for store, rows in neighbours.groupby("store"):
        assert list(rows.sort_values("rank")["rank"]) == list(range(1, STORES))  # k=10 capped at 7
        assert store not in set(rows["neighbour"]) and rows["neighbour"].is_unique
        ranked = rows.sort_values("rank")
        assert (ranked["similarity"].diff().dropna() <= 1e-12).all()
        assert ((ranked["similarity"] > 0) & (ranked["similarity"] <= 1)).all()
    assert (neighbours["run_date"] == TRAIN_DATE).all() and neighbours["run_id"].nunique() == 1

    monkeypatch.setenv("MLCORE_HOME", str(service_lake))  # a rerun as it was run: a no-op
    before = DeltaTable(str(service_lake / "lake" / "store_neighbours")).version()
    assert run_job("find_similar_stores", job_args(TRAIN_DATE)) == 0
    assert "already published" in capsys.readouterr().out
    assert DeltaTable(str(service_lake / "lake" / "store_neighbours")).version() == before
    home = copy_lake(service_lake, tmp_path / "home")
    monkeypatch.setenv("MLCORE_HOME", str(home))
    bad = job_args(dt.date(2015, 6, 21), "--set", "similarity.k=0")
    assert run_job("find_similar_stores", bad) == 2
    assert "similarity.k must be at least 1" in capsys.readouterr().err
    k3 = job_args(dt.date(2015, 6, 21), "--set", "similarity.k=3", "--set", "similarity.weights.attributes=0")
    assert run_job("find_similar_stores", k3) == 0
    newer = table(home, "store_neighbours")
    assert len(newer[newer["run_date"] == dt.date(2015, 6, 21)]) == STORES * 3
    assert len(newer[newer["run_date"] == TRAIN_DATE]) == len(neighbours)  # the other date kept


def test_an_unreadable_models_table_is_a_503_with_the_reason(service_lake, tmp_path):
    """On-demand days need the champion's stored models (the table its registration records):
    when that table is gone the answer says so (503); the days the forecasts table holds are
    still served."""
    with TestClient(service(service_lake)) as client:
        champion = client.app.state.lake.snapshot.champion
        # the forecast_models table the registered version records, gone
        champion.model.table_uri = str(tmp_path / "gone" / "forecast_models")
        held = client.get("/stores/2/forecast")
        assert held.status_code == 200 and held.json()["on_demand"] is None
        beyond = client.get("/stores/2/forecast?start=2015-08-10&end=2015-08-12")
        assert beyond.status_code == 503, beyond.text
        assert "on-demand forecasts from champion v1 failed for store 2" in beyond.json()["error"]
