"""FastAPI dependencies: settings and the once-parsed request body."""

from typing import Annotated

from fastapi import Depends, Request

from service.settings import Settings

from .binary import HEADER_LENGTH, attach_binary, read_npz, split_header
from .envelope import is_inference_request, unwrap
from .inputs import Body
from .payload import ArrayReader, body_format, has_boolean_elements, parse_json_object, read_body


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def raw_body(request: Request, settings: SettingsDep) -> bytes:
    """The request body as bytes, checked for content type and size while it streams in."""
    body_format(request)
    body = await read_body(request, settings.max_body_bytes)
    request.state.bytes_in = len(body)  # reported by the metrics and the access log
    return body


RawBodyDep = Annotated[bytes, Depends(raw_body)]


def parsed_body(request: Request, body: RawBodyDep, settings: SettingsDep) -> Body:
    """Parse JSON, an OIP inference request (JSON or binary extension) or npz.

    Runs in the threadpool: this is CPU work. The metrics and the access log read the
    rows of the returned body (``request.state.body``) once the response is sent.
    """
    parsed = _parse(request, body, settings)
    request.state.body = parsed
    return parsed


def _parse(request: Request, body: bytes, settings: Settings) -> Body:
    kind = body_format(request)
    if kind == "npz":
        reader = ArrayReader(settings.max_elements, may_hold_booleans=False)
        request.state.tensor_shapes = reader.tensor_shapes
        return Body(read_npz(body, reader), reader)
    if kind == "binary":
        fields, offset = split_header(body, request.headers.get(HEADER_LENGTH))
    else:
        fields, offset = parse_json_object(body), len(body)
    reader = ArrayReader(settings.max_elements, has_boolean_elements(memoryview(body)[:offset]))
    request.state.tensor_shapes = reader.tensor_shapes  # error pointers follow tensors and envelopes
    if kind == "binary" or is_inference_request(fields):
        envelope = unwrap(fields)
        request.state.field_pointers = envelope.pointers
        if kind == "binary":
            attach_binary(envelope, body, offset, reader)
        fields = envelope.fields
    return Body(fields, reader)


BodyDep = Annotated[Body, Depends(parsed_body)]
