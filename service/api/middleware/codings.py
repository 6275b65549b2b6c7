"""Content codings: compressed request bodies decoded as they stream, large responses gzipped.

Requests. A body sent with ``Content-Encoding: gzip`` (or ``x-gzip``; ``zstd`` when the
``zstd`` extra is installed) is decoded chunk by chunk as it arrives: the app reads the
decoded bytes in pieces of at most :data:`CHUNK` bytes, and the decoded size counts against
``XENT_MAX_BODY_BYTES``. A body that decodes past the limit (a "zip bomb") is refused 413 as
soon as it does, so no more than the limit plus one chunk is ever held. Data that is not
valid in its coding, or ends before its coding does, is a 400; a coding Xent does not decode
is a 415 naming it, with ``Accept-Encoding`` listing those it does.

Responses. A client that sends ``Accept-Encoding`` with ``gzip`` gets a response of at
least :data:`MIN_GZIP_BYTES` gzipped, when its media type is text-like (JSON, problem+json,
text, SVG); binary tensors and npz are sent as they are (raw floats barely compress).
Bodies over :data:`THREAD_BYTES` are compressed in a worker thread, off the event loop.
"""

import asyncio
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Message, Receive, Send

from ..errors.problems import ProblemError, problem_response

#: Largest piece of decoded body handed to the app at once.
CHUNK = 64 * 1024
#: Smallest response body worth gzipping: below it the header and a round trip cost more.
MIN_GZIP_BYTES = 1024
#: zlib level of the responses: 1 is ~6× faster than the default 6 and loses a few % of ratio
#: on JSON numbers (docs/compression.md, Responses).
GZIP_LEVEL = 1
#: Responses at least this large are compressed in a worker thread.
THREAD_BYTES = 256 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_TEXT_LIKE = (b"application/json", b"application/problem+json", b"text/", b"image/svg+xml")


def _zstd() -> Any:
    """The zstd module: the standard library's (Python ≥ 3.14) or its backport; None if neither."""
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from backports import zstd  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return None
    return zstd


_ZSTD = _zstd()
#: Request codings decoded, and a factory of a fresh decoder for each.
DECODERS: dict[str, Callable[[], Any]] = {
    "gzip": lambda: zlib.decompressobj(_GZIP_WBITS),
    "x-gzip": lambda: zlib.decompressobj(_GZIP_WBITS),
}
if _ZSTD is not None:
    DECODERS["zstd"] = lambda: _ZSTD.ZstdDecompressor()
_DECODE_ERRORS: tuple[type[Exception], ...] = (zlib.error,) + (
    (_ZSTD.ZstdError,) if _ZSTD is not None else ()
)


def coding_of(value: bytes) -> str:
    """The coding named by a ``Content-Encoding`` value, lower-cased ("identity" when empty)."""
    return value.decode("latin-1").strip().lower() or "identity"


def unsupported_coding(coding: str, path: str | None = None) -> Response:
    """The 415 for a request body in `coding` (sent to `path`)."""
    supported = ", ".join(sorted(DECODERS))
    return problem_response(
        415,
        f"Content-Encoding {coding!r} is not supported; send the body as it is or in one of {supported}",
        headers={"Accept-Encoding": supported},
        path=path,
    )


class DecodedReceive:
    """A ``receive`` that hands the app the decoded body, at most `limit` bytes of it, or raises."""

    def __init__(self, receive: Receive, coding: str, limit: int) -> None:
        self.receive = receive
        self.coding = coding
        self.limit = limit
        self.decoder = DECODERS[coding]()
        self.pending: Iterator[bytes] | None = None
        self.more = True
        self.decoded = 0
        self.pieces = 0

    async def __call__(self) -> Message:
        """The next piece of decoded body (``more_body`` until the coded body is done)."""
        while True:
            if self.pending is not None:
                try:
                    piece = next(self.pending, None)
                except _DECODE_ERRORS as error:
                    raise ProblemError(
                        400, f"request body is not valid {self.coding} data: {error}"
                    ) from None
                if piece is not None:
                    return await self._hand(piece)
                self.pending = None
            if not self.more:
                if not self.decoder.eof:
                    raise ProblemError(400, f"request body ends before its {self.coding} data does")
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await self.receive()
            if message["type"] != "http.request":
                return message  # http.disconnect
            self.more = message.get("more_body", False)
            self.pending = self._decode(message.get("body", b""))

    async def _hand(self, piece: bytes) -> Message:
        self.decoded += len(piece)
        if self.decoded > self.limit:
            raise ProblemError(
                413, f"request body exceeds the limit of {self.limit} bytes once {self.coding}-decoded"
            )
        self.pieces += 1
        if self.pieces % 16 == 0:  # ~1 MB decoded: let the event loop answer others
            await asyncio.sleep(0)
        return {"type": "http.request", "body": piece, "more_body": True}

    def _decode(self, data: bytes) -> Iterator[bytes]:
        """`data` decoded, :data:`CHUNK` bytes at a time; concatenated members (frames) continue."""
        while True:
            if self.decoder.eof:
                data = self.decoder.unused_data + data
                if not data:
                    return
                self.decoder = DECODERS[self.coding]()
            piece = self.decoder.decompress(data, CHUNK)
            data = getattr(self.decoder, "unconsumed_tail", b"")  # zlib keeps it out; zstd within
            if piece:
                yield piece
            if not self.decoder.eof and len(piece) < CHUNK and not data:
                return  # input used up and no output held back: wait for more


def accepts_gzip(value: bytes) -> bool:
    """Whether an ``Accept-Encoding`` value accepts gzip: by name, else by ``*``, with a non-zero q."""
    weights: dict[bytes, bool] = {}
    for item in value.lower().split(b","):
        name, _, params = item.partition(b";")
        q = params.strip()
        weights[name.strip()] = not (q.startswith(b"q=") and not q[2:].strip().rstrip(b"0.").rstrip(b"0"))
    return weights.get(b"gzip", weights.get(b"x-gzip", weights.get(b"*", False)))


class GzipSend:
    """A ``send`` that gzips a text-like response of at least :data:`MIN_GZIP_BYTES` on its way out."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.stream: Any = None  # a zlib compressor once a streamed response is being gzipped

    async def __call__(self, message: Message) -> None:
        """Hold the response start until the first body piece tells whether to compress."""
        kind = message["type"]
        if kind == "http.response.start":
            if _compressible(message.get("headers", [])):
                self.start = message
                return
        elif kind == "http.response.body" and self.start is not None:
            start, self.start = self.start, None
            await self._first(start, message)
            return
        elif kind == "http.response.body" and self.stream is not None:
            body = self.stream.compress(message.get("body", b""))
            if not message.get("more_body", False):
                body += self.stream.flush()
                self.stream = None
            message = {**message, "body": body}
        await self.send(message)

    async def _first(self, start: Message, message: Message) -> None:
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if not more and len(body) < MIN_GZIP_BYTES:
            await self.send(start)
            await self.send(message)
            return
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers += [(b"content-encoding", b"gzip"), (b"vary", b"Accept-Encoding")]
        if more:
            self.stream = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
            data = self.stream.compress(body)
        elif len(body) >= THREAD_BYTES:
            data = await anyio.to_thread.run_sync(_gzip, body)
        else:
            data = _gzip(body)
        if not more:
            headers.append((b"content-length", str(len(data)).encode()))
        await self.send({**start, "headers": headers})
        await self.send({"type": "http.response.body", "body": data, "more_body": more})


def _gzip(body: bytes) -> bytes:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    return compressor.compress(body) + compressor.flush()


def _compressible(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a response with `headers` is text-like and not already coded."""
    text = False
    for name, value in headers:
        key = name.lower()
        if key == b"content-encoding":
            return False
        if key == b"content-type":
            text = value.lower().startswith(_TEXT_LIKE)
    return text
