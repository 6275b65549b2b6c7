"""Read a request's body: its bytes under the size limit, and the format its Content-Type names.

Binary and npz bodies of known size go into one aligned NumPy buffer; JSON bodies grow in a
``bytearray`` (:func:`read_body`). Their JSON is parsed by :mod:`.payload`, their arrays decoded
by :mod:`.arrays`.
"""

from typing import NamedTuple

import numpy as np
from fastapi import Request
from starlette.requests import ClientDisconnect

from ..errors.problems import ProblemError

ALIGNMENT = 64  # bytes: tensors in a binary body start on this boundary
#: Accepted request media types and the body format each names.
MEDIA_TYPES = {
    "application/json": "json",
    "application/octet-stream": "binary",
    "application/x-npz": "npz",
}


#: Binary and npz bodies declared at least this large are read into one preallocated NumPy
#: buffer (:func:`read_body`).
PREALLOCATE_BYTES = 1 << 20


class BodyHeaders(NamedTuple):
    """The request headers that say how to read its body (None: not sent)."""

    content_type: str | None
    content_length: str | None
    header_length: str | None  # Inference-Header-Content-Length (the OIP binary extension)


_BODY_HEADERS = {b"content-type": 0, b"content-length": 1, b"inference-header-content-length": 2}


def body_headers(request: Request) -> BodyHeaders:
    """The first Content-Type, Content-Length and Inference-Header-Content-Length, in one pass.

    ASGI servers give header names in lower case; three ``request.headers.get`` calls scan
    the list three times, each call lower-casing its key and raising ``KeyError`` for a
    header not sent.
    """
    found: list[str | None] = [None, None, None]
    for name, value in request.scope["headers"]:
        at = _BODY_HEADERS.get(name)
        if at is not None and found[at] is None:
            found[at] = value.decode("latin-1")
    return BodyHeaders(*found)


async def read_body(
    request: Request,
    max_bytes: int,
    *,
    kind: str = "json",
    align_at: int = 0,
    headers: BodyHeaders | None = None,
) -> bytearray | memoryview:
    """Read the body, refusing (413) as soon as it exceeds `max_bytes`.

    JSON bodies grow chunk by chunk in one ``bytearray``. A binary or npz body with a declared
    Content-Length of at least ``PREALLOCATE_BYTES`` is copied into one ``np.empty`` buffer
    of that size instead, returned as a ``memoryview`` of it: its pages are touched only as
    the bytes arrive (no zero-fill: ``bytearray(46 MB)`` held the event loop ~40 ms), and
    NumPy advises huge pages for it, so a 4.6 MB body costs ~3 page faults rather than
    ~1,200 (~5 ms of a 25 ms request on this VM, docs/internals.md, Transport). The buffer starts so
    that byte `align_at` of the body (where the binary extension's tensors begin) sits on a
    64-byte boundary: the tensors are aligned views, never moved or copied. Tensors decoded
    from either kind of body are read-only views.
    """
    declared = request.headers.get("content-length") if headers is None else headers.content_length
    size = int(declared) if declared is not None and declared.isdigit() else None
    if size is not None and size > max_bytes:
        raise ProblemError(413, f"request body is {declared} bytes; the limit is {max_bytes}")
    if kind != "json" and size is not None and size >= PREALLOCATE_BYTES:
        return await _read_into_buffer(request, size, align_at)
    body = bytearray()
    receive = request.receive  # not request.stream(): an async generator per request (~2 µs) for one chunk
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) + len(chunk) > max_bytes:
            raise ProblemError(413, f"request body exceeds the limit of {max_bytes} bytes")
        body += chunk
    return body


async def _read_into_buffer(request: Request, size: int, align_at: int) -> memoryview:
    """The body, exactly `size` bytes as declared, in a buffer of its own (see :func:`read_body`)."""
    buffer = np.empty(size + ALIGNMENT, np.uint8)
    start = -(buffer.ctypes.data + align_at) % ALIGNMENT
    view = buffer.data[start : start + size]  # a memoryview: keeps the buffer alive
    filled = 0
    async for chunk in request.stream():
        end = filled + len(chunk)
        if end > size:
            raise ProblemError(400, f"request body is longer than its Content-Length of {size} bytes")
        view[filled:end] = chunk
        filled = end
    if filled != size:
        raise ProblemError(400, f"request body has {filled} bytes; its Content-Length says {size}")
    return view


def body_format(request: Request) -> str:
    """``json``, ``binary`` (OIP binary tensor extension) or ``npz``, or raise 415.

    A missing Content-Type is taken as JSON.
    """
    return media_format(request.headers.get("content-type"))


def media_format(content_type: str | None) -> str:
    """:func:`body_format` of a Content-Type header's value (None: not sent)."""
    if content_type is None:
        return "json"
    media = content_type.split(";")[0].strip().lower()
    if media.endswith("+json"):
        return "json"
    if media not in MEDIA_TYPES:
        raise ProblemError(
            415,
            f"Content-Type {media!r} is not supported; send one of {', '.join(MEDIA_TYPES)}",
            headers={"Accept-Post": ", ".join(MEDIA_TYPES)},
        )
    return MEDIA_TYPES[media]
