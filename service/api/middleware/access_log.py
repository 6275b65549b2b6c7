"""Structured access logs: one JSON line per request, never the payload.

A line holds the request id, method, path, route template, status,
duration, rows and body bytes, and the error kind; never headers (so never an API key),
query strings or bodies. Probes (``/healthz``, ``/readyz``, ``/metrics``) are left out unless
``XENT_LOG_PROBES`` is set: polled every few seconds, they would drown the requests.
"""

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.types import Scope

from .exchange import Exchange

LOGGER = logging.getLogger("xent.access")


class AccessLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``xent serve`` gives ``xent.access``: each line written as it is, nothing added.

    While it is the access logger's only handler (nothing filters, nothing propagates), :func:`log_exchange`
    writes the line to it directly: no ``LogRecord`` (~9 µs), no formatting and filtering
    (~7 µs), the same line on the same stream. The lines of one turn of the event loop are
    written together at its end, one ``write`` and one flush for all the requests that turn
    finished (a system call each, and a wake-up of whatever reads the pipe); a ``kill -9`` loses
    at most that turn's lines. Any other set-up (a handler of the user's, pytest's caplog) gets
    a record through ``logging`` as usual.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        #: The lines of this turn of the event loop, not written yet.
        self.held: list[str] = []

    def write_line(self, text: str) -> None:
        """Write one line with the others of this turn of the event loop, at its end (off it: at once)."""
        held = self.held
        if not held:
            try:
                asyncio.get_running_loop().call_soon(self.write_held)
            except RuntimeError:  # no event loop in this thread: as `emit` writes it
                self._write(text + self.terminator)
                return
        held.append(text)

    def write_held(self) -> None:
        """Write the lines held, one after another, and flush."""
        held, self.held = self.held, []
        if held:
            self._write(self.terminator.join(held) + self.terminator)

    def _write(self, text: str) -> None:
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write(text)
                self.flush()
            except Exception:  # a closed or full stream: reported as `emit` reports it
                self.handleError(_record(text))

    def close(self) -> None:
        """Write what is held, then close as a stream handler does."""
        self.write_held()
        super().close()

    def format(self, record: logging.LogRecord) -> str:
        """The line itself, whatever formatter is set: both ways of writing give the same bytes."""
        return record.getMessage()


def _direct_handler() -> AccessLineHandler | None:
    """The access logger's one handler when :func:`log_exchange` may write to it directly."""
    handlers = LOGGER.handlers
    if len(handlers) == 1 and not LOGGER.filters and not LOGGER.propagate:
        handler = handlers[0]
        if type(handler) is AccessLineHandler and not handler.filters and handler.level <= logging.INFO:
            return handler
    return None


class _Clock:
    """The log's UTC timestamp to the second, formatted once per second (``strftime`` is ~1.8 µs)."""

    second = -1
    text = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + "Z"
            cls.second = second
        return cls.text


def log_exchange(exchange: Exchange, scope: Scope) -> None:
    """Write the access-log line of a finished request at INFO on ``xent.access``."""
    if not LOGGER.isEnabledFor(logging.INFO):
        return
    state = scope.get("state") or {}
    line = {
        "ts": _Clock.now(),
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
    text = orjson.dumps(line).decode()
    handler = _direct_handler()
    if handler is not None:
        handler.write_line(text)
        return
    LOGGER.handle(_record(text))


_LINE = log_exchange.__code__.co_firstlineno


def _record(text: str) -> logging.LogRecord:
    """The access logger's record of `text`, made as ``LOGGER.info`` in :func:`log_exchange` would.

    ``LOGGER.info`` would look up its caller on the stack (a third of the record's cost, ~4 µs):
    the caller is always :func:`log_exchange`, so the record names it.
    """
    return LOGGER.makeRecord(LOGGER.name, logging.INFO, __file__, _LINE, text, (), None, "log_exchange")


#: Paths polled by orchestrators and scrapers, left out of the access log by default.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def log_exchange_but_probes(exchange: Exchange, scope: Scope) -> None:
    """:func:`log_exchange`, except for a probe answered 2xx (a failing probe is still logged)."""
    if exchange.path in PROBE_PATHS and exchange.status < 400:
        return
    log_exchange(exchange, scope)
