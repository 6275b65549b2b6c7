"""Structured access logs: one JSON line per request, never the payload.

A line holds the request id, method, path, route template, status,
duration, rows and body bytes, and the error kind; never headers (so never an API key),
query strings or bodies.
"""

import logging
import time

import orjson
from starlette.types import Scope

from .metrics import Exchange

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
    LOGGER.info(orjson.dumps(line).decode())
