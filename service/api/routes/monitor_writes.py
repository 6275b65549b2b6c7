"""The glue every monitor write route shares: its body, its ``Idempotency-Key`` and the worker pool.

A write route reads the body as it streams in (checked for size and type), checks the header's
key, then runs its work in the scoring pool: parsing, scoring and the store's transaction are
CPU or blocking work. A small body (at most ``INLINE_BYTES``, as the scoring routes) may be
written right on the event loop when the store can commit without blocking it (SQLite with
``synchronous=NORMAL``, its write lock free: :func:`inline_store`); the thread hop cost more
than such a write. The key's fingerprint is a digest of the route's tag, the content type
(where the route takes several formats) and the body's bytes as they arrived: taken before the
body is parsed, since parsing a binary body may move its tensors in place (to align them).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request
from pydantic import BaseModel
from starlette.datastructures import State
from starlette.responses import Response
from starlette.types import Scope

from service.api.deps import INLINE_BYTES, RawBody, parsed_body, raw_body, taken_body
from service.api.formats.answers import Document, json_bytes
from service.api.formats.inputs import Body
from service.monitors.idempotency import check_key, fingerprint
from service.store import IdempotencyKey, MonitorStore


def answer_bytes(result: BaseModel | Document) -> bytes:
    """The JSON body `json_response` sends for `result` (stored with an idempotency key)."""
    return json_bytes(result)


@dataclass(slots=True)
class MonitorWrite:
    """One write request: its raw body, its key's header, and its key's digest (None without a header).

    `app` is the app's state (settings, the store's holder, the config cache, the counters),
    looked up once. Not frozen: one is made per write, and a frozen dataclass's ``__init__``
    costs three times as many steps.
    """

    request: Request
    raw: RawBody
    header: str | None
    digest: bytes | None
    app: State

    def body(self, fields: dict[str, Any] | None = None) -> Body:
        """The body parsed in any format the scoring routes take (`fields`: its JSON object, if parsed)."""
        return parsed_body(self.request, self.raw, self.app.settings, fields=fields)

    def store(self) -> MonitorStore:
        """The monitor store (opened on first use)."""
        store: MonitorStore = self.app.monitors.get()
        return store

    def key(self, result: Callable[[Any], BaseModel | Document]) -> IdempotencyKey | None:
        """The store's key (None without a header); `result` makes the answer of the write's result."""
        if self.header is None:
            return None
        assert self.digest is not None
        return IdempotencyKey(self.header, self.digest, lambda value: answer_bytes(result(value)))


async def read_write(
    request: Request, idempotency_key: str | None, tag: str, *, media: bool = True
) -> MonitorWrite:
    """Read the body and check the key of a write request.

    The key's fingerprint covers `tag`, the content type (unless `media` is False: a JSON-only
    route) and the body's bytes, taken now, before anything parses the body.
    """
    state = request.app.state
    raw = taken_body(request) or await raw_body(request, state.settings)
    header = check_key(idempotency_key)
    digest = None
    if header is not None:
        content_type = first_header(request.scope, b"content-type") or ""
        digest = fingerprint((tag, content_type, raw.data) if media else (tag, raw.data))
    return MonitorWrite(request, raw, header, digest, state)


def first_header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower case), as ``request.headers.get`` gives it, in one scan."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def in_pool(request: Request, work: Callable[[], Response]) -> Awaitable[Response]:
    """Run `work` in the scoring pool (at most ``XENT_SCORING_THREADS`` at once)."""
    return anyio.to_thread.run_sync(work, limiter=request.app.state.scoring_limiter)


def inline_store(write: MonitorWrite) -> MonitorStore | None:
    """The store, if a small write may run on the event loop: open, and writing without blocking."""
    store: MonitorStore | None = write.app.monitors.current
    if len(write.raw.data) > INLINE_BYTES or store is None or not store.inline_writes:
        return None
    return store


def loop_bytes(scope: Scope) -> int:
    """The largest body a write to `scope`'s app may make on the event loop now (as :func:`inline_store`).

    Read by the limits layer, so that such a write runs without a task of its own (as the
    scoring routes' small bodies): the deadline is a timer on the request's own task.
    """
    app = scope.get("app")
    store: MonitorStore | None = None if app is None else app.state.monitors.current
    return INLINE_BYTES if store is not None and store.inline_writes else 0


async def run_write(
    request: Request,
    idempotency_key: str | None,
    tag: str,
    work: Callable[[MonitorWrite], Response],
    *,
    media: bool = True,
) -> Response:
    """Read the body, check the key, then run `work` in the scoring pool and answer what it returns.

    The fingerprint covers `tag`, the content type (unless `media` is False: a JSON-only route)
    and the body's bytes.
    """
    write = await read_write(request, idempotency_key, tag, media=media)
    return await in_pool(request, lambda: work(write))
