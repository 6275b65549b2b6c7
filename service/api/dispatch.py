"""A direct way in for the scoring POSTs, past FastAPI's router and per-route machinery.

The scoring endpoints (:func:`service.api.deps.scoring`) take only the request and return a
finished response: FastAPI has no dependencies to solve, no body to validate and no model to
serialise for them. Its router, exception middleware, exit stack and endpoint wrapper still
cost a 32×10 request ~120 µs of ~540 (README, Performance). :class:`ScoringDispatch` sits
innermost among Xent's middleware and sends a ``POST`` to an exact scoring path straight to
its endpoint, with the app's exception handlers (problem+json) around it; everything else
(other methods, other paths, a ``root_path``) goes on to FastAPI. An error no handler takes
propagates exactly as before, to :class:`service.api.metrics.ExchangeMiddleware`, which
answers 500. The routes stay FastAPI's, so the OpenAPI document is unchanged.
"""

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

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
