"""FastAPI dependencies: settings and the once-parsed request body."""

from typing import Annotated

from fastapi import Depends, Request

from service.settings import Settings

from .inputs import Body
from .payload import ArrayReader, check_json_content_type, parse_json_object, read_body


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def raw_body(request: Request, settings: SettingsDep) -> bytes:
    """The request body as bytes, checked for content type and size while it streams in."""
    check_json_content_type(request)
    body = await read_body(request, settings.max_body_bytes)
    request.state.bytes_in = len(body)
    return body


RawBodyDep = Annotated[bytes, Depends(raw_body)]


def json_body(request: Request, body: RawBodyDep, settings: SettingsDep) -> Body:
    """Parse the body with orjson (in the threadpool: this is CPU work)."""
    reader = ArrayReader.for_body(body, settings.max_elements)
    request.state.tensor_shapes = reader.tensor_shapes
    parsed = Body(parse_json_object(body), reader)
    request.state.body = parsed  # its `rows` are read by the metrics and the access log
    return parsed


BodyDep = Annotated[Body, Depends(json_body)]
