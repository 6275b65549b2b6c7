"""The application factory."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from service import __version__
from service.api.problems import PROBLEM_HANDLERS
from service.api.routes import REQUEST_MODELS, build_router
from service.settings import Settings

DESCRIPTION = """\
Scores batches of classifier outputs: cross-entropy, divergences and entropies.

Every array may be a nested JSON list or an Open Inference Protocol tensor object
(`{"shape": [N, K], "datatype": "FP32", "data": [...]}`). Errors are RFC 9457
`application/problem+json` naming the field and the first offending index.
Every response echoes the conventions used (log base, eps policy, reduction, ...).
Non-finite results are sent as the strings "Infinity", "-Infinity" and "NaN".
"""


def _route_id(route: APIRoute) -> str:
    return route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Xent ASGI app with `settings` (default: read from the environment)."""
    app = FastAPI(
        title="Xent",
        version=__version__,
        description=DESCRIPTION,
        generate_unique_id_function=_route_id,
        exception_handlers=PROBLEM_HANDLERS,  # type: ignore[arg-type]
    )
    app.state.settings = settings or Settings()
    app.include_router(build_router())
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the request-body models that routes publish by reference."""
    if app.openapi_schema is None:
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
        app.openapi_schema = schema
    return app.openapi_schema
