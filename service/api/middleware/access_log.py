"""Structured access logs: one JSON line per request, never the payload.

A line holds the request id, method, path, route template, status,
duration, rows and body bytes, and the error kind; never headers (so never an API key),
query strings or bodies. Probes (``/healthz``, ``/readyz``, ``/metrics``) are left out unless
``XENT_LOG_PROBES`` is set: polled every few seconds, they would drown the requests.
"""

import logging
import time

import orjson
from starlette.types import Scope

from .exchange import Exchange

LOGGER = logging.getLogger("xent.access")


def log_exchange(exchange: Exchange, scope: Scope) -> None:
    """Write the access-log line of a finished request at INFO on ``xent.access``."""
    if not LOGGER.isEnabledFor(logging.INFO):
        return
    state = scope.get("state") or {}
    line = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
        "request_id": state.get("request_id"),
        "method": exchange.method,
        "path": exchange.path,
        "route": exchange.route,
        "status": exchange.status,
        "duration_ms": round(exchange.duration * 1000, 3),
        "rows": exchange.rows,
        "bytes_in": exchange.bytes_in,
        "bytes_out": exchange.bytes_out,
        "error": exchange.error,
    }
    # `LOGGER.info` would look up its caller on the stack (a third of the line's cost, ~4 µs):
    # the caller is always this function, so the record is made naming it and handled directly.
    text = orjson.dumps(line).decode()
    LOGGER.handle(
        LOGGER.makeRecord(LOGGER.name, logging.INFO, __file__, _LINE, text, (), None, "log_exchange")
    )


_LINE = log_exchange.__code__.co_firstlineno


#: Paths polled by orchestrators and scrapers, left out of the access log by default.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def log_exchange_but_probes(exchange: Exchange, scope: Scope) -> None:
    """:func:`log_exchange`, except for a probe answered 2xx (a failing probe is still logged)."""
    if exchange.path in PROBE_PATHS and exchange.status < 400:
        return
    log_exchange(exchange, scope)
