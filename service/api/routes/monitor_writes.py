"""The glue every monitor write route shares: its body, its ``Idempotency-Key`` and the worker pool.

A write route reads the body as it streams in (checked for size and type), checks the header's
key, then runs its work in the scoring pool: parsing, scoring and the store's transaction are
CPU or blocking work. The key's fingerprint is a digest of the route's tag, the content type
(where the route takes several formats) and the body's bytes, taken before the body is parsed.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request
from pydantic import BaseModel
from starlette.responses import Response

from service.api.deps import RawBody, parsed_body, raw_body
from service.api.formats.inputs import Body
from service.monitors.idempotency import check_key, fingerprint
from service.store import IdempotencyKey, MonitorStore


def answer_bytes(result: BaseModel) -> bytes:
    """The JSON body `json_response` sends for `result` (stored with an idempotency key)."""
    return result.model_dump_json().encode()


@dataclass(frozen=True)
class MonitorWrite:
    """One write request, in the worker thread: its raw body, and its key's header and digest."""

    request: Request
    raw: RawBody
    header: str | None
    digest: bytes

    def body(self) -> Body:
        """The body parsed in any format the scoring routes take."""
        return parsed_body(self.request, self.raw, self.request.app.state.settings)

    def store(self) -> MonitorStore:
        """The monitor store (opened on first use)."""
        store: MonitorStore = self.request.app.state.monitors.get()
        return store

    def key(self, result: Callable[[Any], BaseModel]) -> IdempotencyKey | None:
        """The store's key (None without a header); `result` makes the answer of the write's result."""
        if self.header is None:
            return None
        return IdempotencyKey(self.header, self.digest, lambda value: answer_bytes(result(value)))


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
    raw = await raw_body(request, request.app.state.settings)
    header = check_key(idempotency_key)
    content_type = request.headers.get("content-type") or ""

    def run() -> Response:
        parts = [tag, content_type, raw.data] if media else [tag, raw.data]
        digest = b"" if header is None else fingerprint(parts)
        return work(MonitorWrite(request, raw, header, digest))

    return await anyio.to_thread.run_sync(run, limiter=request.app.state.scoring_limiter)
