"""The application factory."""

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from service import __version__
from service.api.errors.problems import PROBLEM_HANDLERS
from service.api.middleware.access_log import log_exchange, log_exchange_but_probes
from service.api.middleware.auth import APIKeys, load_api_keys
from service.api.middleware.direct import DirectScoring
from service.api.middleware.dispatch import ScoringApp, ScoringDispatch, named_posts
from service.api.middleware.drain import install_drain_hook
from service.api.middleware.exchange import ExchangeMiddleware
from service.api.middleware.limits import Gate
from service.api.middleware.loop_lag import watch_loop_lag
from service.api.middleware.metrics import Metrics, refresh_worker_stats
from service.api.openapi.document import complete
from service.api.routes import REQUEST_MODELS, docs, routers
from service.api.serving import trim_malloc
from service.monitors.configs import ConfigCache
from service.monitors.counters import MonitorCounters
from service.monitors.holder import StoreHolder
from service.settings import Settings

DESCRIPTION = """\
Xent scores batches of probabilistic classifier outputs and recalibrates them.

- **Scores** — `/v1/cross-entropy` (PyTorch's options: label smoothing, class weights,
  ignore_index, reductions; per-sample losses), `/v1/divergence` (KL both ways, Jensen–Shannon,
  entropies and cross-entropy per row).
- **Calibration** — `/v1/calibration` (binned ECE/MCE/RMSCE with every convention named, class-wise
  and marginal targets, adaptive and debiased estimators, smooth ECE, Brier with its decomposition,
  Spiegelhalter's Z, KS and Kuiper tests, reliability bins, bootstrap intervals, presets reproducing
  torchmetrics, scikit-learn, netcal and Guo et al.) and `/v1/reliability-diagram` (SVG).
- **Recalibration** — `/v1/temperature` (exact temperature fit), `/v1/recalibrate` (temperature,
  vector, matrix, Platt, beta, isotonic, histogram; optional hold-out or k-fold check) and
  `/v1/apply` (apply fitted parameters to new predictions).
- **Open Inference Protocol** — `/v2`: every scoring endpoint is a KServe v2 / Triton model
  (metadata, readiness, `infer` with JSON or binary tensors), so tritonclient and KServe clients call
  Xent unchanged.
- **Operations** — `/healthz`, `/readyz`, `/metrics` (Prometheus); API keys (`Authorization: Bearer`
  or `X-API-Key`) when `XENT_API_KEYS` is set; limits on body size, elements, concurrency and time.

Every array may be a nested JSON list or an Open Inference Protocol tensor object
(`{"shape": [N, K], "datatype": "FP32", "data": [...]}`); whole bodies may be OIP inference requests,
the OIP binary tensor extension (`application/octet-stream`) or `.npz` archives. Errors are RFC 9457
`application/problem+json` naming the field and the first offending index. Every response echoes the
conventions used (log base, eps policy, reduction, ...). Non-finite results are sent as the strings
"Infinity", "-Infinity" and "NaN".
"""


def _route_id(route: APIRoute) -> str:
    return route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Xent ASGI app with `settings` (default: read from the environment)."""
    settings = settings or Settings()
    gate = Gate(on_idle=trim_malloc if settings.idle_trim_s > 0 else None, idle_s=settings.idle_trim_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        restore = install_drain_hook(gate, drain_s=settings.drain_s, grace_s=settings.shutdown_grace_s)
        # The OpenAPI document, built now rather than by a worker's first /docs or /openapi.json
        # request, which held its event loop ~0.2 s (every request waited behind it).
        app.openapi()
        # Everything built so far (modules, the app, its schemas, that document) lives as long as
        # the worker: moved out of the collector's reach, full collections stop re-scanning it.
        # Measured with 16 clients on 32×10 requests: p99 latency ~85–127 ms -> ~33–40 ms.
        # Once per process: an app started again in the same process (the tests start ~2,000)
        # finds the modules frozen already and skips a full collection (~0.2–0.3 s there).
        if gc.get_freeze_count() == 0:
            gc.collect()
            gc.freeze()
        monitor = asyncio.ensure_future(watch_loop_lag(app.state.metrics.loop_lag.observe))
        stats = asyncio.ensure_future(refresh_worker_stats(app.state.metrics))
        # The monitor store, opened once per worker (in a thread: it may create and migrate the
        # database); its compaction runs in a thread of its own, never on the event loop.
        await anyio.to_thread.run_sync(monitors.open)
        counters = app.state.monitor_counters
        counters.bind(asyncio.get_running_loop())  # writes committed in threads count on this loop
        yield
        counters.bind(None)  # a thread's write from now on adds its increments at once
        counters.flush()  # the increments held (counters.FLUSH_S), threads' too, before they are lost
        await anyio.to_thread.run_sync(monitors.close)
        stats.cancel()
        monitor.cancel()
        restore()

    app = ScoringApp(
        title="Xent",
        version=__version__,
        description=DESCRIPTION,
        generate_unique_id_function=_route_id,
        exception_handlers=PROBLEM_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,  # /docs and /redoc: service.api.routes.docs, assets served here, no CDN
        redoc_url=None,  # `/v1/cross-entropy/` is a problem+json 404 naming the route, not a bare 307
    )
    app.state.settings = settings
    app.state.gate = gate
    app.state.scoring_limiter = anyio.CapacityLimiter(settings.scoring_threads)
    app.state.metrics = Metrics()
    app.state.monitor_counters = MonitorCounters(app.state.metrics.registry)
    app.state.monitor_configs = ConfigCache()
    monitors = StoreHolder(
        settings,
        compaction_interval_s=settings.compaction_interval_s,
        on_settled=app.state.monitor_counters.add,
    )
    app.state.monitors = monitors
    included = routers()
    for router in included:
        app.include_router(router)
    docs.install(app)
    app.state.route_signature = tuple(
        (route.path, tuple(sorted(route.methods or ())), route.name)
        for router in included
        for route in router.routes
        if isinstance(route, APIRoute)
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    _serve_openapi_as_bytes(app)
    scoring = _scoring_routes(included)
    app.scoring_paths = frozenset(scoring)
    app.named_posts = named_posts([route for router in included for route in router.routes])
    _add_middleware(app, settings, gate, included, scoring)
    return app


def _serve_openapi_as_bytes(app: FastAPI) -> None:
    """``GET /openapi.json`` from bytes printed once per root path, not re-printed per request.

    FastAPI's own route ran ``json.dumps`` over the 170 KB document on every request (~6 ms of
    the worker's event loop each). The answer is the same document, with FastAPI's rule for a
    ``root_path`` (listed first in ``servers``).
    """
    printed: dict[str, bytes] = {}

    async def openapi(request: Request) -> Response:
        root_path = request.scope.get("root_path", "").rstrip("/")
        body = printed.get(root_path)
        if body is None:
            schema = app.openapi()
            servers = schema.get("servers", [])
            if root_path and app.root_path_in_servers and root_path not in {s.get("url") for s in servers}:
                schema = {**schema, "servers": [{"url": root_path}, *servers]}
            body = orjson.dumps(schema)
            if len(printed) < 8:  # root paths come from the deployment: a handful at most
                printed[root_path] = body
        return Response(body, media_type="application/json")

    url = app.openapi_url
    assert url is not None
    app.router.routes = [route for route in app.router.routes if getattr(route, "path", None) != url]
    app.add_route(url, openapi, include_in_schema=False)


def _scoring_routes(included: list[APIRouter]) -> dict[str, APIRoute]:
    """Path -> route of every POST endpoint made by :func:`service.api.deps.scoring`.

    Read from the routers themselves: since FastAPI 0.165 ``app.routes`` lists included
    routers, not their routes.
    """
    return {
        route.path: route
        for router in included
        for route in router.routes
        if isinstance(route, APIRoute)
        and "POST" in (route.methods or ())
        and hasattr(route.endpoint, "inline_bytes")
    }


def _add_middleware(
    app: ScoringApp, settings: Settings, gate: Gate, included: list[APIRouter], scoring: dict[str, APIRoute]
) -> None:
    """Xent's one layer (ids, auth, codings, limits, metrics, log), then the scoring dispatch inside it."""
    app.add_middleware(
        ScoringDispatch, routes=scoring, handlers=app.exception_handlers, named=app.named_posts
    )
    inline = {
        path: limit
        for path, route in scoring.items()
        if (limit := int(getattr(route.endpoint, "inline_bytes", 0))) > 0
    }
    keys = load_api_keys(settings)
    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    cors = (
        {
            "allow_origins": origins,
            "allow_methods": ["GET", "POST", "PUT", "DELETE"],
            "allow_headers": [
                "Authorization",
                "Content-Type",
                "Content-Encoding",
                "X-API-Key",
                "X-Request-ID",
            ],
            "expose_headers": ["X-Request-ID", "Retry-After", "WWW-Authenticate"],
            "max_age": 600,
        }
        if origins
        else None
    )
    observers = [app.state.metrics.observe]
    if settings.access_log:
        observers.append(log_exchange if settings.log_probes else log_exchange_but_probes)
    # The documented paths, read from the routers: building them from `app.openapi()` on the
    # first unmatched request held that worker's event loop ~0.2 s.
    known_paths = frozenset(
        route.path
        for router in included
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
    )
    app.add_middleware(
        ExchangeMiddleware,
        settings=settings,
        gate=gate,
        inline_bytes=inline,
        inline_named=app.named_posts,
        observers=observers,
        known_paths=known_paths,
        served_paths=_served_paths(app),
        keys=APIKeys(keys, protect_metrics=settings.protect_metrics) if keys else None,
        cors=cors,
        on_build=lambda layer: app.enter_scoring_at(
            layer
            if cors is not None
            else DirectScoring(layer, scoring, app.exception_handlers, app.named_posts)
        ),
    )


def _served_paths(app: FastAPI) -> frozenset[str]:
    """The pages and documents FastAPI serves itself (``/docs``, ``/openapi.json``, ...)."""
    urls = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    return frozenset(url for url in urls if url)


# Documents printed once per process, by what they are built from (title, version, description
# and the routes): every app with the same code has the same document. A worker builds one app,
# but the test suite builds ~2,000, each spending ~0.5 s on the 1.2 MB document at start-up.
_DOCUMENTS: dict[tuple[Any, ...], bytes] = {}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the request-body models that routes publish by reference.

    Each app gets its own copy (parsed from the bytes printed for its kind of app), so no app
    can change another's.
    """
    if app.openapi_schema is None:
        key = (app.title, app.version, app.description, app.state.route_signature)
        printed = _DOCUMENTS.get(key)
        if printed is None:
            printed = _DOCUMENTS[key] = orjson.dumps(_build_openapi(app))
        app.openapi_schema = orjson.loads(printed)
    return app.openapi_schema


def _build_openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    _, defs = models_json_schema(
        [(model, "validation") for model in REQUEST_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
    complete(schema)  # rules, examples, security schemes, the binary header
    return schema
