"""Request ids and structured access logs: one JSON line per request, never the payload.

``X-Request-ID`` is taken from the request when it is a sane token (1-128 characters
of ``A-Z a-z 0-9 . _ : @ / + = -``), otherwise generated (32 hex digits); either way
it is echoed on the response and written in the log line. A line holds the request
id, method, path, route template, status, duration, rows and body bytes, and the
error kind; never headers (so never an API key), query strings or bodies.
"""

import logging
import re
import time
import uuid

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import Exchange

LOGGER = logging.getLogger("xent.access")
REQUEST_ID_HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")


class RequestIdMiddleware:
    """Accept or make up an ``X-Request-ID``, keep it in ``scope["state"]`` and echo it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Attach the id to the request and to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER]
                message["headers"] = [*headers, (REQUEST_ID_HEADER, encoded)]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _SANE_ID.fullmatch(value):
            return value.decode()
    return uuid.uuid4().hex


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
