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

A few POST routes with a name in their path (a monitor's writes) come in the same way
(:class:`NamedPost`): ``/v1/monitors/{name}/observations`` with a valid name goes to its direct
endpoint, which reads the name and its one header itself; any other name goes on to FastAPI,
which answers the 422 it always did. FastAPI's router would try the path against every route
before it, and solve the route's parameters per request (~0.3 ms of a 32×10 write).
"""

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.middleware.numpy_state import NUMPY_ERRSTATE

Handler = Callable[[Request, Any], Response | Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class DirectEntry:
    """Set as ``endpoint.direct`` on a POST route with one ``{name}`` in its path: the way in past FastAPI.

    `endpoint` takes the request alone (the name is in ``request.path_params["name"]``) and must
    do what FastAPI would with the route's other parameters; `name_pattern` is the path
    parameter's own pattern, so a name FastAPI would refuse goes to FastAPI. `inline_bytes`,
    given the request's scope, is the largest body the endpoint would handle on the event loop
    (0: none, now): such a request runs without a task of its own, as a scoring route's small
    body does (:class:`~service.api.middleware.limits.LimitsMiddleware`).
    """

    endpoint: Endpoint
    name_pattern: str
    inline_bytes: Callable[[Scope], int] | None = None


class NamedPost:
    """A POST route ``prefix{name}suffix`` served by its :class:`DirectEntry`."""

    def __init__(self, route: APIRoute, entry: DirectEntry) -> None:
        self.prefix, _, self.suffix = route.path.partition("{name}")
        self.route = route
        self.endpoint = entry.endpoint
        self.pattern = re.compile(entry.name_pattern)
        self.inline_bytes = entry.inline_bytes

    def name(self, path: str) -> str | None:
        """The name in `path`, if `path` is this route's with a name FastAPI would accept."""
        if not (path.startswith(self.prefix) and path.endswith(self.suffix)):
            return None
        name = path[len(self.prefix) : len(path) - len(self.suffix)]
        return name if "/" not in name and self.pattern.fullmatch(name) else None


class NamedPosts(tuple[NamedPost, ...]):
    """The named POST routes, and what :meth:`match` found for the paths seen lately.

    A request to one is matched by the app's entry, then by the layer that serves it: the
    second match (and every later request to the same path) is a dict lookup. At most
    ``SEEN_PATHS`` paths are kept (names are the clients'); past that the memory starts again.
    """

    SEEN_PATHS = 1024
    _seen: dict[str, tuple[NamedPost, str] | None]

    def __new__(cls, posts: Iterable[NamedPost] = ()) -> "NamedPosts":
        """`posts`, none of their paths seen yet."""
        self = super().__new__(cls, posts)
        self._seen = {}
        return self

    def match(self, path: str) -> tuple[NamedPost, str] | None:
        """The named POST `path` is, and its name (:func:`match_named`)."""
        seen = self._seen
        if path in seen:
            return seen[path]
        if len(seen) >= self.SEEN_PATHS:
            seen.clear()
        found = seen[path] = match_named(self, path)
        return found


def named_posts(routes: Sequence[Any]) -> NamedPosts:
    """The POST routes among `routes` whose endpoint carries a :class:`DirectEntry`."""
    return NamedPosts(
        NamedPost(route, route.endpoint.direct)  # type: ignore[attr-defined]  # checked below
        for route in routes
        if isinstance(route, APIRoute)
        and "POST" in (route.methods or ())
        and isinstance(getattr(route.endpoint, "direct", None), DirectEntry)
        and route.path.count("{") == 1
        and "{name}" in route.path
    )


def match_named(posts: Sequence[NamedPost], path: str) -> tuple[NamedPost, str] | None:
    """The named POST `path` is, and its name."""
    for post in posts:
        name = post.name(path)
        if name is not None:
            return post, name
    return None


class ScoringDispatch:
    """Route ``POST`` requests for `routes` (path -> route) and `named` directly to their endpoints."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[str, APIRoute],
        handlers: Mapping[Any, Handler],
        named: Sequence[NamedPost] = (),
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.named = named if isinstance(named, NamedPosts) else NamedPosts(named)
        self.handlers = problem_handlers(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Score a known POST here; pass anything else on."""
        route: APIRoute | None = None
        endpoint: Endpoint | None = None
        params: dict[str, str] = {}
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            route = self.routes.get(scope["path"])
            if route is not None:
                endpoint = route.endpoint
            elif self.named and (found := self.named.match(scope["path"])) is not None:
                route, endpoint, params = found[0].route, found[0].endpoint, {"name": found[1]}
        if route is None or endpoint is None:
            await self.app(scope, receive, send)
            return
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, params
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as error:
            handler = handler_for(self.handlers, error)
            if handler is None:
                raise
            answer = handler(request, error)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)


def problem_handlers(handlers: Mapping[Any, Handler]) -> dict[Any, Handler]:
    """The app's exception handlers but the 500 (`Exception`), which the exchange layer answers."""
    return {kind: handler for kind, handler in handlers.items() if kind not in (Exception, 500)}


def handler_for(handlers: Mapping[Any, Handler], error: Exception) -> Handler | None:
    """The exception handler for `error`: its class's, or its nearest base class's."""
    for kind in type(error).__mro__:
        if kind in handlers:
            return handlers[kind]
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
    named_posts: NamedPosts = NamedPosts()
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
        NUMPY_ERRSTATE.set(NUMPY_ERRSTATE.get())  # NumPy's reads of it found and cached (numpy_state)
        entry = self._scoring_entry
        if (
            entry is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and (scope["path"] in self.scoring_paths or self.named_posts.match(scope["path"]))
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
