"""Prometheus metrics: what they count, the middleware that feeds them, and their exposition.

Series (labels in brackets):

- ``xent_http_requests_total`` [route, method, status]
- ``xent_http_request_duration_seconds`` histogram [route, method, status]: from the first
  byte of the request to the last byte of the response, as the app sees it
- ``xent_scored_rows_total`` and ``xent_scored_bytes_total`` [route]: rows (samples) and
  request-body bytes of the requests that were scored (2xx)
- ``xent_event_loop_lag_seconds`` histogram: how late the event loop woke a 20 ms timer
  (:mod:`service.api.middleware.loop_lag`), i.e. how long it was kept from answering anything
- ``xent_errors_total`` [route, type]: every 4xx/5xx by kind (``malformed_body``,
  ``unauthorized``, ``not_found``, ``method_not_allowed``, ``too_large``,
  ``unsupported_media_type``, ``invalid_input``, ``overloaded``, ``timeout``, ``draining``,
  ``internal``)

An exception that escapes the app before its response has started is answered here, by the
middleware that also gives every request its id: a problem+json 500 carrying
``X-Request-ID``, one access-log line and one ``internal`` error, and the traceback on
the ``xent.error`` logger. It is not re-raised (uvicorn would only log it a second time).

``route`` is the route template, or ``unmatched`` for paths the app does not serve, so
random URLs cannot blow up the label space. With several uvicorn workers,
``python -m service serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before the workers start; each worker then writes its samples there and ``/metrics``
(answered by any one worker) sums them over all workers, dead ones included, so
counters never go backwards when a worker is replaced.
"""

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..problems import problem_response
from .request_ids import REQUEST_ID_HEADER, request_id

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)
ERROR_TYPES = {
    400: "malformed_body",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    500: "internal",
    503: "unavailable",
}
UNMATCHED = "unmatched"
ERROR_LOGGER = logging.getLogger("xent.error")


class Metrics:
    """The service's metric families, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["route", "method", "status"]
        self.requests = Counter(
            "xent_http_requests", "HTTP requests answered.", labels, registry=self.registry
        )
        self.latency = Histogram(
            "xent_http_request_duration_seconds",
            "Time from request to the end of the response.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter(
            "xent_scored_rows",
            "Rows (samples) in requests that were scored.",
            ["route"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "xent_scored_bytes",
            "Request-body bytes of requests that were scored.",
            ["route"],
            registry=self.registry,
        )
        self.errors = Counter(
            "xent_errors", "Error responses by kind.", ["route", "type"], registry=self.registry
        )
        self.loop_lag = Histogram(
            "xent_event_loop_lag_seconds",
            "How late the event loop woke a 20 ms timer: time it spent unable to answer anything.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def observe(self, exchange: "Exchange", scope: Scope) -> None:
        """Record one finished request."""
        labels = (exchange.route, exchange.method, str(exchange.status))
        self._series(self.requests, labels).inc()
        self._series(self.latency, labels).observe(exchange.duration)
        if 200 <= exchange.status < 300:
            if exchange.rows:
                self._series(self.rows, (exchange.route,)).inc(exchange.rows)
            if exchange.bytes_in:
                self._series(self.bytes, (exchange.route,)).inc(exchange.bytes_in)
        elif exchange.error:
            self._series(self.errors, (exchange.route, exchange.error)).inc()

    def _series(self, family: Any, labels: tuple[str, ...]) -> Any:
        """``family.labels(*labels)``, kept for the next request.

        That call takes a lock and builds its key every time (~5 µs; a scored request made
        four). Label sets are bounded: route templates, methods, statuses, error kinds.
        """
        series = self._children.get((family, labels))
        if series is None:
            series = self._children[family, labels] = family.labels(*labels)
        return series

    def exposition(self) -> bytes:
        """The Prometheus text format: of this process, or of all workers in multiprocess mode."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


class Exchange:
    """What one request did, gathered as it passes through the middleware."""

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

    def __init__(self, scope: Scope) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.route = UNMATCHED
        self.status = 500
        self.started = time.perf_counter()
        self.duration = 0.0
        self.bytes_in = 0
        self.bytes_out = 0
        self.rows = 0
        self.error: str | None = None

    def finish(self, scope: Scope, known_paths: frozenset[str]) -> None:
        """Close the record once the response is sent (or the app raised)."""
        self.duration = time.perf_counter() - self.started
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            self.route = path
        elif self.path in known_paths:
            self.route = self.path
        state: dict[str, Any] = scope.get("state") or {}
        self.bytes_in = int(state.get("bytes_in", 0))
        body = state.get("body")
        self.rows = int(getattr(body, "rows", 0))
        if self.status >= 400:
            self.error = state.get("error_type") or ERROR_TYPES.get(self.status, f"http_{self.status}")


class ExchangeMiddleware:
    """Gives each HTTP request its id, times it, and hands the finished :class:`Exchange` to its observers.

    The id (:mod:`service.api.middleware.request_ids`) is echoed as ``X-Request-ID`` on every response,
    the 500 this layer answers included. Outermost of Xent's middleware.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        observers: list[Callable[[Exchange, Scope], None]],
        known_paths: frozenset[str],
    ) -> None:
        self.app = app
        self.observers = observers
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through with its id, noting status and size, then notify the observers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = Exchange(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = identifier = request_id(scope)
        echoed = (REQUEST_ID_HEADER, identifier.encode())
        started = False

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                exchange.status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER]
                message["headers"] = [*headers, echoed]
            elif message["type"] == "http.response.body":
                exchange.bytes_out += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception:
            if started:  # too late for a 500: let the server drop the connection
                exchange.status = 500
                raise
            state["error_type"] = "internal"
            ERROR_LOGGER.exception(
                "Unhandled error in %s %s (request %s): answered 500",
                exchange.method,
                exchange.path,
                identifier,
            )
            response = problem_response(500, "internal error; the request was not scored")
            await response(scope, receive, watching_send)
        except BaseException:
            exchange.status = 500
            raise
        finally:
            exchange.finish(scope, self.known_paths)
            for observer in self.observers:
                observer(exchange, scope)
