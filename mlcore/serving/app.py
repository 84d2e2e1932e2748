"""``mlcore serve``: the planners' forecast service (FastAPI on uvicorn) and its dashboard.

    mlcore serve --env local                       # http://127.0.0.1:8000 (dashboard at /)
    MLCORE_SERVICE_TOKEN=... mlcore serve --env emr --host 0.0.0.0 --port 8000 --workers 2

Endpoints (JSON; OpenAPI at /openapi.json, docs at /docs):
    GET  /stores/{store}/forecast?start=&end=&run_date=   a store's forecast, day by day
    GET  /stores/{store}/history?weeks=                   its recent actuals
    GET  /stores/{store}/similar?k=                       its most similar stores
    POST /forecasts/query                                 several stores at once
    GET  /stores                                          stores and published runs
    GET  /stores/{store}/items                            its series, in a store x item lake

A lake forecast per store x item (``forecasting.group_keys: [store, item]``) is served the same
way with ``?item=`` on forecast and history (``"item"`` in the query body): a series is a store
and an item; similar stores stay per store.
    GET  /health                                          versions served, champion, cache

Reads Delta with delta-rs through :mod:`mlcore.serving.lake` (no Spark in a request); answers are
cached by :class:`~mlcore.serving.planner.ResponseCache`, keyed by the request and the versions
they were read from. With ``service.auth_required`` every data endpoint wants
``Authorization: Bearer <token>`` (the token in the environment variable ``service.token_env``);
the dashboard page itself holds no data. The service is read-only.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures' types at runtime,
# and they are defined inside create_app.
import argparse
import contextvars
import datetime as dt
import hmac
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from pathlib import Path
from typing import Annotated, Any

from mlcore.config.checks import below_minimum
from mlcore.config.errors import ConfigError
from mlcore.config.models import MlcoreConfig

# The GET being answered, as CachedGets saw it (path, query string): the app caches a GET's answer
# under the key CachedGets looks it up by, so each answer is stored once.
_GET_REQUEST: contextvars.ContextVar[tuple[str, bytes] | None] = contextvars.ContextVar(
    "mlcore_service_get", default=None
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
STORE_ID_MAX = 2**31 - 1


def service_problems(config: MlcoreConfig) -> list[str]:
    """Config values the service cannot run with (checked before it starts: exit 2)."""
    settings = config.service
    problems = below_minimum(
        "service",
        (
            ("port", settings.port, 1),
            ("workers", settings.workers, 1),
            ("cache_entries", settings.cache_entries, 0),
            ("model_cache_size", settings.model_cache_size, 1),
            ("forecast_runs_cached", settings.forecast_runs_cached, 1),
            ("max_range_days", settings.max_range_days, 1),
            ("max_batch_stores", settings.max_batch_stores, 1),
            ("max_history_weeks", settings.max_history_weeks, 1),
            ("max_neighbours", settings.max_neighbours, 1),
            ("on_demand_days", settings.on_demand_days, 1),
            ("refresh_seconds", settings.refresh_seconds, 0),
        ),
    )
    if settings.port > 65535:
        problems.append(f"service.port must be at most 65535 (got {settings.port})")
    if not 1 <= len(config.forecasting.group_keys) <= 2:
        problems.append(
            "the service serves a store key and at most one more, e.g. [store, item] "
            f"(forecasting.group_keys = {config.forecasting.group_keys})"
        )
    if settings.auth_required and not os.environ.get(settings.token_env):
        problems.append(
            f"service.auth_required is true but the environment variable {settings.token_env} "
            "(service.token_env) is empty: set a token, or service.auth_required=false on a "
            "trusted machine"
        )
    return problems


def create_app(config: MlcoreConfig, lake: Any = None, token: str | None = None) -> Any:
    """The FastAPI app over ``lake`` (a :class:`~mlcore.serving.lake.Lake`; built from
    ``config`` when not given). ``token``: the bearer token (default: from ``service.token_env``
    when ``service.auth_required``)."""
    from contextlib import asynccontextmanager

    from fastapi import Body, Depends, FastAPI, Query, Request
    from fastapi import Path as PathParam
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.concurrency import run_in_threadpool

    from mlcore._version import __version__
    from mlcore.serving.lake import Lake, NotFound, Unavailable
    from mlcore.serving.planner import BadRequest, NeedsModel, Planner, ResponseCache

    settings = config.service
    if lake is None:
        lake = Lake(config)
    if token is None and settings.auth_required:
        token = os.environ.get(settings.token_env) or None
    if settings.auth_required and not token:
        raise ConfigError(f"service.auth_required is true but {settings.token_env} is empty")
    planner = Planner(config)
    cache = ResponseCache(settings.cache_entries)
    served = {"id": lake.snapshot.id}
    bearer = HTTPBearer(auto_error=False)
    key_name = planner.key

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        lake.start()
        yield
        lake.stop()

    app = FastAPI(
        title="mlcore forecast service",
        version=__version__,
        description="Per-store forecasts, actuals and similar stores for planners (read-only).",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load Swagger UI / ReDoc from a CDN: served locally below
        redoc_url=None,
    )

    def authorized(credentials: HTTPAuthorizationCredentials | None) -> bool:
        if not settings.auth_required:
            return True
        if credentials is None or credentials.scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.credentials.encode(), str(token).encode())

    async def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if not authorized(credentials):
            raise _Denied()

    class _Denied(Exception):
        pass

    def current() -> Any:
        snapshot = lake.snapshot
        if snapshot.id != served["id"]:  # a new snapshot: the old one's answers go at once
            served["id"] = snapshot.id
            cache.retire(snapshot.id)
        return snapshot

    async def answer(
        kind: str,
        params: Hashable,
        build: Callable[[Any, bool], dict[str, Any]],
    ) -> Response:
        """The cached answer, else ``build``'s: on the event loop from the snapshot in memory,
        or on a worker thread when it needs an on-demand forecast (``build(snapshot, True)``),
        which must not hold up the other answers."""
        snapshot = current()  # taken once: one response, one set of versions
        get = _GET_REQUEST.get()
        key = (snapshot.id, "GET", *get) if get is not None else (snapshot.id, kind, params)
        body = cache.get(key)
        hit = body is not None
        if body is None:

            def render(on_demand: bool) -> bytes:
                return json.dumps(build(snapshot, on_demand), separators=(",", ":")).encode()

            try:
                body = render(False)
            except NeedsModel:
                body = await run_in_threadpool(render, True)
            cache.put(key, body)
        return Response(
            body,
            media_type="application/json",
            headers={"X-Cache": "hit" if hit else "miss", "X-Snapshot": snapshot.id},
        )

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for item in exc.errors():
            where = ".".join(str(part) for part in item.get("loc", ())[1:]) or "request"
            problems.append(f"{where}: {item.get('msg', 'invalid')}")
        return error(400, "; ".join(problems[:5]))

    @app.exception_handler(BadRequest)
    async def bad(_request: Request, exc: BadRequest) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return error(404, str(exc))

    @app.exception_handler(Unavailable)
    async def unavailable(_request: Request, exc: Unavailable) -> JSONResponse:
        return error(503, str(exc))

    @app.exception_handler(_Denied)
    async def denied(_request: Request, _exc: _Denied) -> JSONResponse:
        return error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})

    store_path = Annotated[int, PathParam(ge=0, le=STORE_ID_MAX, description="store id")]
    # The second group key (store x item lakes): a query parameter named after it.
    extra_name = planner.extra or "item"
    extra_query = Annotated[
        int | None,
        Query(alias=extra_name, ge=0, le=STORE_ID_MAX,
              description=f"the {extra_name} (required when forecasting.group_keys has it)"),
    ]  # fmt: skip
    protected = [Depends(require_token)]

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=_swagger_ui_path()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Any:
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="mlcore forecast service: API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    @app.get("/health", summary="Versions served, the champion, cache statistics")
    async def health(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> dict[str, Any]:
        if not authorized(credentials):  # liveness for load balancers; details need the token
            return {"status": "ok"}
        snapshot = current()
        champion = snapshot.champion
        return {
            "status": "ok",
            "version": __version__,
            "snapshot": snapshot.id,
            "refreshed_at": dt.datetime.fromtimestamp(snapshot.loaded_at, dt.timezone.utc).isoformat(),
            "refresh_seconds": settings.refresh_seconds,
            "tables": dict(snapshot.versions),
            "latest_run_date": snapshot.run_dates[-1].isoformat() if snapshot.run_dates else None,
            "neighbours_run_date": (
                snapshot.neighbours_run_date.isoformat() if snapshot.neighbours_run_date else None
            ),
            "champion": (
                {
                    "name": champion.name,
                    "version": champion.version,
                    "trained_run_date": champion.trained_run_date.isoformat(),
                    "forecast_models_version": champion.models_version,
                    "models_loaded": champion.model.loaded_models,
                    "models_max": champion.model.max_loaded_models,
                }
                if champion
                else {"problem": snapshot.champion_problem}
            ),
            "cache": cache.describe(),
            "memory": {"rss_bytes": _rss_bytes(), "snapshot_bytes": snapshot.memory_bytes()},
        }

    @app.get("/stores", dependencies=protected, summary="Stores with forecasts; published runs")
    async def stores() -> Response:
        return await answer("stores", (), lambda snapshot, _: planner.stores(snapshot))

    @app.get("/stores/{store}/forecast", dependencies=protected, summary="A store's forecast")
    async def forecast(
        store: store_path,
        extra: extra_query = None,
        start: Annotated[dt.date | None, Query(description="first day (default: the run's first)")] = None,
        end: Annotated[dt.date | None, Query(description="last day (default: the run's last)")] = None,
        run_date: Annotated[dt.date | None, Query(description="forecast run (default: latest)")] = None,
    ) -> Response:
        return await answer(
            "forecast",
            (store, extra, start, end, run_date),
            lambda snapshot, on_demand: planner.forecast(
                snapshot, planner.series(store, extra), start, end, run_date, on_demand
            ),
        )

    @app.get("/stores/{store}/history", dependencies=protected, summary="A store's recent actuals")
    async def history(
        store: store_path,
        extra: extra_query = None,
        weeks: Annotated[int, Query(ge=1, description="weeks back from the last actual")] = 8,
    ) -> Response:
        return await answer(
            "history",
            (store, extra, weeks),
            lambda snapshot, _: planner.history(snapshot, planner.series(store, extra), weeks),
        )

    @app.get("/stores/{store}/items", dependencies=protected, summary="A store's series (store x item lakes)")
    async def items(store: store_path) -> Response:
        return await answer("items", (store,), lambda snapshot, _: planner.items(snapshot, store))

    @app.get("/stores/{store}/similar", dependencies=protected, summary="A store's most similar stores")
    async def similar(
        store: store_path,
        k: Annotated[int, Query(ge=1, description="neighbours to return")] = 5,
    ) -> Response:
        return await answer("similar", (store, k), lambda snapshot, _: planner.similar(snapshot, store, k))

    class ForecastQuery(BaseModel):
        """Several stores' forecasts over one range (on demand where the table ends)."""

        model_config = ConfigDict(extra="forbid")
        stores: list[Annotated[int, Field(ge=0, le=STORE_ID_MAX)]] = Field(
            min_length=1, max_length=settings.max_batch_stores
        )
        item: Annotated[int, Field(ge=0, le=STORE_ID_MAX)] | None = Field(
            default=None, description="store x item lakes: the item, for every store asked"
        )
        start: dt.date | None = None
        end: dt.date | None = None
        run_date: dt.date | None = None

    @app.post("/forecasts/query", dependencies=protected, summary="Forecasts of several stores")
    async def query(body: Annotated[ForecastQuery, Body()]) -> Response:
        wanted = tuple(dict.fromkeys(body.stores))

        def build(snapshot: Any, on_demand: bool) -> dict[str, Any]:
            results = [
                planner.forecast(
                    snapshot, planner.series(store, body.item), body.start, body.end, body.run_date, on_demand
                )
                for store in wanted
            ]
            for result in results:
                result.pop("versions")
            return {"versions": planner.versions(snapshot), "forecasts": results, key_name + "s": list(wanted)}

        return await answer("query", (wanted, body.item, body.start, body.end, body.run_date), build)

    app.state.lake = lake
    app.state.cache = cache
    app.add_middleware(
        CachedGets,
        cache=cache,
        snapshot_id=lambda: current().id,
        authorized=lambda header: authorized(_bearer_credentials(header)),
    )
    if settings.cors_origins:  # added last: the outermost layer, so cached answers carry it too
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


def _bearer_credentials(header: bytes | None) -> Any:
    from fastapi.security import HTTPAuthorizationCredentials

    if not header:
        return None
    scheme, _, credentials = header.decode("latin-1").partition(" ")
    if not credentials:
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials.strip())


class CachedGets:
    """The front of the app (ASGI): a GET of ``/stores...`` whose exact path and query were
    answered from the current snapshot is answered from the cache before routing and parameter
    parsing (after the token check), which is most of a cached answer's cost. A miss goes on to
    the app, which caches its answer under this same key (``_GET_REQUEST``): one entry per
    answer, never an error."""

    PREFIX = "/stores"

    def __init__(
        self,
        app: Any,
        cache: Any,
        snapshot_id: Callable[[], str],
        authorized: Callable[[bytes | None], bool],
    ) -> None:
        self.app = app
        self.cache = cache
        self.snapshot_id = snapshot_id
        self.authorized = authorized

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(self.PREFIX):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if not self.authorized(header):
            await self.app(scope, receive, send)  # the app answers 401
            return
        snapshot = self.snapshot_id()
        key = (snapshot, "GET", scope["path"], scope["query_string"])
        body = self.cache.peek(key)
        if body is not None:
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-cache", b"hit"),
                    (b"x-snapshot", snapshot.encode()),
                ],
            })  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        token = _GET_REQUEST.set((scope["path"], scope["query_string"]))
        try:
            await self.app(scope, receive, send)
        finally:
            _GET_REQUEST.reset(token)


def _swagger_ui_path() -> str:
    """Swagger UI's files from the swagger-ui-bundle package: /docs works with no internet."""
    import swagger_ui_bundle

    return str(swagger_ui_bundle.swagger_ui_path)


def _rss_bytes() -> int | None:
    """This process's resident memory (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def app_from_environment() -> Any:
    """uvicorn's factory for ``--workers N`` (each worker builds its own app from the env that
    ``mlcore serve`` exported: MLCORE_ENV, MLCORE_CONF_DIR, MLCORE_SERVE_OVERRIDES)."""
    from mlcore.config.loader import load_config
    from mlcore.tracking.runs import apply_client_settings, configure_mlflow

    overrides = json.loads(os.environ.get("MLCORE_SERVE_OVERRIDES", "[]"))
    config = load_config(os.environ.get("MLCORE_ENV"), os.environ.get("MLCORE_CONF_DIR"), overrides)
    apply_client_settings(config)
    if config.mlflow.enabled:
        configure_mlflow(config)
    return create_app(config)


def build_parser() -> argparse.ArgumentParser:
    from mlcore.config.loader import add_config_arguments

    parser = argparse.ArgumentParser(
        prog="mlcore serve",
        description="Serve forecasts, actuals and similar stores to planners (API + dashboard).",
        allow_abbrev=False,
    )
    add_config_arguments(parser)
    parser.add_argument("--host", help="address to listen on (default: service.host)")
    parser.add_argument("--port", type=int, help="port (default: service.port)")
    parser.add_argument("--workers", type=int, help="worker processes (default: service.workers)")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="uvicorn log level (default: info)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Validate the config, then run uvicorn; exit 2 on a config problem."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    from mlcore.config.loader import load_config

    overrides = list(args.overrides)
    for name in ("host", "port", "workers"):
        value = getattr(args, name)
        if value is not None:
            overrides.append(f"service.{name}={value}")
    try:
        config = load_config(args.env, args.conf_dir, overrides)
        problems = service_problems(config)
        if problems:
            raise ConfigError("; ".join(problems))
    except ConfigError as exc:
        print(f"serve: config error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    os.environ["MLCORE_ENV"] = config.env
    os.environ["MLCORE_CONF_DIR"] = config.conf_dir
    os.environ["MLCORE_SERVE_OVERRIDES"] = json.dumps(overrides)
    settings = config.service
    print(
        f"serve: env {config.env}, MLCORE_HOME {config.mlcore_home}, "
        f"http://{settings.host}:{settings.port}/ (auth {'on' if settings.auth_required else 'off'})",
        file=sys.stderr,
    )
    try:
        uvicorn.run(
            "mlcore.serving.app:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=args.log_level,
            proxy_headers=False,
        )
    except Exception as exc:  # noqa: BLE001 - a start-up failure (tables unreadable...) in one line
        print(f"serve: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
