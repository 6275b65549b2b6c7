"""A direct way in for the scoring POSTs, past FastAPI's router and per-route machinery.

The scoring endpoints (:func:`service.api.deps.scoring`) take only the request and return a
finished response: FastAPI has no dependencies to solve, no body to validate and no model to
serialise for them. Its router, exception middleware, exit stack and endpoint wrapper still
cost a 32×10 request ~120 µs of ~540 (docs/internals.md, Small requests). :class:`ScoringDispatch` sits
innermost among Xent's middleware and sends a ``POST`` to an exact scoring path straight to
its endpoint, with the app's exception handlers (problem+json) around it; everything else
(other methods, other paths, a ``root_path``) goes on to FastAPI. An error no handler takes
propagates exactly as before, to :class:`service.api.middleware.exchange.ExchangeMiddleware`,
which answers 500. The routes stay FastAPI's, so the OpenAPI document is unchanged.
"""

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request, Any], Response | Awaitable[Response]]


class ScoringDispatch:
    """Route ``POST`` requests for `routes` (path -> route) directly to their endpoints."""

    def __init__(
        self, app: ASGIApp, *, routes: Mapping[str, APIRoute], handlers: Mapping[Any, Handler]
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        # `Exception` (the 500 handler) is left to the outer middleware, as Starlette does.
        self.handlers = {kind: handler for kind, handler in handlers.items() if kind not in (Exception, 500)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Score a known POST here; pass anything else on."""
        route = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            route = self.routes.get(scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as error:
            handler = self._handler(error)
            if handler is None:
                raise
            answer = handler(request, error)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler(self, error: Exception) -> Handler | None:
        for kind in type(error).__mro__:
            if kind in self.handlers:
                return self.handlers[kind]
        return None


class ScoringApp(FastAPI):
    """FastAPI, with the scoring POSTs entering at Xent's own middleware.

    FastAPI's ``__call__`` asks its native telemetry whether OpenTelemetry is configured on
    every request, and its outer layers (the server-error, exception-telemetry and body-limit
    middleware) wrap every request; for the scoring POSTs none of that does anything — Xent's
    :class:`~service.api.middleware.exchange.ExchangeMiddleware` already answers an escaping
    error with a problem+json 500 before they could see it, and applies the body limit itself.
    Those requests start at that layer instead, which hands itself over as it is built
    (:meth:`enter_scoring_at`), so they pass through exactly Xent's stack; anything else, an
    app with a ``root_path``, and every request when FastAPI's telemetry was found configured
    as the stack was built, take FastAPI's way.

    What this skips of FastAPI is checked against the versions it was written for by
    ``tests/api/test_fastapi_pins.py``, which fails when an upgrade changes it.
    """

    scoring_paths: frozenset[str] = frozenset()
    _scoring_entry: ASGIApp | None = None
    _built_entry: ASGIApp | None = None

    def enter_scoring_at(self, layer: ASGIApp) -> None:
        """Where the scoring POSTs enter: called by Xent's outermost middleware as it is built."""
        self._built_entry = layer

    def build_middleware_stack(self) -> ASGIApp:
        """FastAPI's stack; the scoring entry is the layer built with it, unless telemetry is on."""
        self._built_entry = None
        stack = super().build_middleware_stack()
        self._scoring_entry = None if fastapi_telemetry_on(self) else self._built_entry
        return stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A scoring POST enters at Xent's middleware; anything else goes FastAPI's way."""
        entry = self._scoring_entry
        if (
            entry is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in self.scoring_paths
            and not self.root_path
            and not scope.get("root_path")
        ):
            scope["app"] = self
            await entry(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def fastapi_telemetry_on(app: FastAPI) -> bool:
    """Whether FastAPI's native telemetry (FastAPI ≥ 0.165) would trace this app's requests.

    Read from FastAPI's private ``_native_telemetry``, the one internal this module uses;
    ``tests/api/test_fastapi_pins.py`` checks it is still there and still means this.
    """
    telemetry = getattr(app, "_native_telemetry", None)
    return telemetry is not None and bool(telemetry.enabled())
