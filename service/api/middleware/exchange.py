"""The one ASGI layer around the routes: request id, auth, limits, codings, timing, metrics, access log.

Every HTTP request passes this layer once. In one pass over the request headers it reads the
request id, the declared body length, the content and accepted codings and the API key; then

1. the request id goes into ``scope["state"]["request_id"]`` and onto the response
   (``X-Request-ID``), the 500 answered here included (:mod:`.request_ids`);
2. CORS, when configured, wraps everything below (preflights never need a key);
3. a protected path without a valid key is answered 401, without the key's scope (or
   monitor) 403 (:class:`.auth.APIKeys`);
4. a body in a coding Xent does not decode is answered 415 naming it; a gzip (or zstd)
   body is decoded as it streams, bounded by the body limit (:mod:`.codings`);
5. ``/v1/`` requests go through the limits: drain, concurrency cap, deadline
   (:class:`.limits.LimitsMiddleware`, which this layer extends);
6. a response over ~1 KB to a client that accepts gzip is gzipped (:mod:`.codings`);
7. once the response is sent, the :class:`Exchange` (route, status, duration, rows, bytes)
   goes to the observers: the metrics, and the access log unless the path is a probe.

An exception that escapes the app before its response has started is answered here: a
problem+json 500 carrying ``X-Request-ID``, one access-log line and one ``internal`` error,
and the traceback on the ``xent.error`` logger. It is not re-raised (uvicorn would only log
it a second time).
"""

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.settings import Settings

from ..errors.problems import problem_response
from .auth import APIKeys
from .codings import DECODERS, DecodedReceive, GzipSend, accepts_gzip, coding_of, unsupported_coding
from .dispatch import NamedPost
from .limits import PREFIX, Gate, LimitsMiddleware
from .metrics import ERROR_LOGGER, ERROR_TYPES, UNMATCHED
from .request_ids import REQUEST_ID_HEADER, SANE_ID, new_id

Observer = Callable[["Exchange", Scope], None]


class Exchange:
    """What one request did, gathered as it passes through the layer."""

    __slots__ = (
        "method",
        "path",
        "route",
        "status",
        "started",
        "duration",
        "bytes_in",
        "bytes_out",
        "rows",
        "error",
    )

    def __init__(self, method: str, path: str) -> None:
        self.method = method
        self.path = path
        self.route = UNMATCHED
        self.status = 500
        self.started = time.perf_counter()
        self.duration = 0.0
        self.bytes_in = 0
        self.bytes_out = 0
        self.rows = 0
        self.error: str | None = None


def internal_error(scope: Scope, exchange: Exchange, identifier: str) -> Response:
    """The problem+json 500 for an error that escaped the app, logged with its traceback on ``xent.error``."""
    scope["state"]["error_type"] = "internal"
    ERROR_LOGGER.exception(
        "Unhandled error in %s %s (request %s): answered 500", exchange.method, exchange.path, identifier
    )
    return problem_response(500, "internal error; the request was not scored", path=scope["path"])


class ExchangeMiddleware(LimitsMiddleware):
    """Xent's only middleware: see the module docstring for what it does, in that order.

    `known_paths` are labelled as themselves when no route set ``scope["route"]`` (the
    documented paths, answered 405 for another method); `served_paths` too (the pages and
    documents FastAPI serves: ``/docs``, ``/openapi.json``, ...). Anything else is
    ``unmatched``. `on_build` is called with the new layer (the app keeps it as the entry of
    its scoring requests, :class:`service.api.middleware.dispatch.ScoringApp`).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        gate: Gate,
        inline_bytes: dict[str, int],
        observers: list[Observer],
        inline_named: Sequence[NamedPost] = (),
        known_paths: frozenset[str],
        served_paths: frozenset[str] = frozenset(),
        keys: APIKeys | None = None,
        cors: Mapping[str, Any] | None = None,
        on_build: Callable[["ExchangeMiddleware"], None] | None = None,
    ) -> None:
        super().__init__(
            app, settings=settings, gate=gate, inline_bytes=inline_bytes, inline_named=inline_named
        )
        self.observers = observers
        self.known_paths = known_paths
        self.labelled_paths = known_paths | served_paths
        self.keys = keys
        self.max_body_bytes = settings.max_body_bytes
        self.inner: ASGIApp = self._guard if cors is None else CORSMiddleware(self._guard, **cors)
        if on_build is not None:
            on_build(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through, noting what it did, then notify the observers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        identifier = length = coding = None
        gzip_ok = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == REQUEST_ID_HEADER:
                if SANE_ID.fullmatch(value):
                    identifier = value.decode()
            elif name == b"content-encoding":
                coding = value
            elif name == b"accept-encoding":
                gzip_ok = accepts_gzip(value)
        if identifier is None:
            identifier = new_id()
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = identifier
        state["declared_length"] = length
        if coding is not None:
            state["content_coding"] = coding
        exchange = Exchange(scope["method"], scope["path"])
        echoed = (REQUEST_ID_HEADER, identifier.encode())
        started = False

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                exchange.status = message["status"]
                headers = message.get("headers", [])
                if any(key.lower() == REQUEST_ID_HEADER for key, _ in headers):
                    headers = [(k, v) for k, v in headers if k.lower() != REQUEST_ID_HEADER]
                message["headers"] = [*headers, echoed]
            elif message["type"] == "http.response.body":
                exchange.bytes_out += len(message.get("body", b""))
            await send(message)

        try:
            await self.inner(scope, receive, GzipSend(watching_send) if gzip_ok else watching_send)
        except Exception:
            if started:  # too late for a 500: let the server drop the connection
                exchange.status = 500
                raise
            await internal_error(scope, exchange, identifier)(scope, receive, watching_send)
        except BaseException:
            exchange.status = 500
            raise
        finally:
            self.observe(exchange, scope)

    def observe(self, exchange: Exchange, scope: Scope) -> None:
        """Close `exchange` once the response is sent (or the app raised), then hand it to the observers.

        The observers: the request metrics, the access log.
        """
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            exchange.route = path
        elif exchange.path in self.labelled_paths:
            exchange.route = exchange.path
        state: dict[str, Any] = scope["state"]
        exchange.bytes_in = int(state.get("bytes_in", 0))
        rows = state.get("rows")  # a monitor's plain write's (routes/monitor_plain_write.py), else its body's
        exchange.rows = int(getattr(state.get("body"), "rows", 0) if rows is None else rows)
        status = exchange.status
        if status >= 400:
            exchange.error = state.get("error_type") or ERROR_TYPES.get(status, f"http_{status}")
        self.finish(exchange, scope)

    def finish(self, exchange: Exchange, scope: Scope) -> None:
        """Hand `exchange` to the observers, its duration taken now; its route, rows and bytes in already set.

        :meth:`observe` sets them from the request's scope; the direct layer sets them itself
        for a plain request's answer.
        """
        exchange.duration = time.perf_counter() - exchange.started
        for observer in self.observers:
            observer(exchange, scope)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Auth, then content codings, then (for /v1/) the limits; then the app."""
        path: str = scope["path"]
        state = scope["state"]
        if self.keys is not None and self.keys.protects(path):
            refusal = self.keys.admit(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        length = state["declared_length"]
        coding = state.get("content_coding")
        if coding is not None and (name := coding_of(coding)) != "identity":
            if name not in DECODERS:
                await unsupported_coding(name, scope["path"])(scope, receive, send)
                return
            receive = DecodedReceive(receive, name, self.max_body_bytes)
            scope["headers"] = [
                (k, v) for k, v in scope["headers"] if k not in (b"content-length", b"content-encoding")
            ]
            length = state["declared_length"] = None  # decoded, the body is of unknown length
        if path.startswith(PREFIX):
            await self.limit(scope, receive, send, length)
        else:
            await self.app(scope, receive, send)
