"""Answers written as bytes: a response with its headers prebuilt, and JSON documents as plain dicts.

A 32×10 request is answered in ~100 µs, so the per-request steps of writing its answer count:
constructing and validating a Pydantic result model (~19 µs for cross-entropy's result and
convention) and serialising it (~9 µs) cost more than the scoring. The scoring routes therefore
build their answer as a plain ``dict`` in the field order of their result model (which still
documents it in the OpenAPI document and still reads it in the Python client) and print it with
orjson (~3 µs); floats that may be infinite or NaN go through :func:`json_float`, which writes
them as the result models do. Starlette's ``Response`` assembles its headers on every call;
:class:`BytesResponse` takes them prebuilt.
"""

import math
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

#: A JSON answer before it is printed: plain dicts, lists, str, int, float, bool and None.
Document = dict[str, Any]

JSON = b"application/json"


def json_float(value: float) -> float | str:
    """`value` as the result models write it: finite as itself, else "Infinity", "-Infinity" or "NaN".

    Examples
    --------
    >>> [json_float(x) for x in (0.5, math.inf, -math.inf, math.nan)]
    [0.5, 'Infinity', '-Infinity', 'NaN']
    """
    value = float(value)
    if math.isfinite(value):
        return value
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def document_of(result: BaseModel | Document) -> Document:
    """The JSON document of a result: a plain dict as it is, a model as its JSON would read back."""
    if isinstance(result, dict):
        return result
    loaded: Document = orjson.loads(result.model_dump_json())
    return loaded


def json_bytes(result: BaseModel | Document) -> bytes:
    """The JSON text of a result, a plain dict printed by orjson or a model by its own serialiser."""
    if isinstance(result, dict):
        return orjson.dumps(result)
    return result.model_dump_json().encode()


class BytesResponse(Response):
    """A finished body and its raw header list, sent as two ASGI messages.

    Starlette's ``Response`` builds its ``content-length`` and ``content-type`` headers from a
    media type on every call; here the list is built directly (the same headers, in the same
    order). It is still a ``Response``: FastAPI's routes and exception handlers take it as one.
    """

    def __init__(
        self,
        body: bytes,
        media_type: bytes = JSON,
        headers: list[tuple[bytes, bytes]] | None = None,
        status_code: int = 200,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        self.media_type = media_type.decode()
        self.raw_headers = [(b"content-length", str(len(body)).encode()), (b"content-type", media_type)]
        if headers:
            self.raw_headers.extend(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the start (status and headers) and the body."""
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})
