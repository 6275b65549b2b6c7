"""The body of ``POST /v2/models/{name}/infer``: an Open Inference Protocol inference request.

Read as Triton reads it: an ``Inference-Header-Content-Length`` header means the binary tensor
extension (tritonclient sends no Content-Type, KServe's client ``application/octet-stream``);
without it the body is JSON. A body sent as ``application/json`` is JSON whatever the header says,
as on /v1: the header describes binary bodies only (a malformed one is still a 400).
Then parsed by the machinery of /v1's inference-request bodies (:mod:`.formats.envelope`,
:mod:`.formats.binary`), keeping what only /v2 answers need: the request ``id``, the requested
``outputs`` and ``binary_data_output``.
"""

import reprlib
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request

from service.core import InputError
from service.settings import Settings

from ..deps import Parse, RawBody
from ..errors.problems import ProblemError
from .arrays import ArrayReader
from .binary import HEADER_LENGTH, attach_binary, declared_header_length, split_header
from .body import body_format, read_body
from .envelope import is_inference_request, unwrap
from .inputs import Body
from .payload import has_boolean_elements, parse_json_object


@dataclass
class InferBody(Body):
    """A parsed inference request: Xent's fields, and what the answer must echo or honour."""

    request_id: str | None = None
    outputs: list[dict[str, Any]] | None = None
    binary_output: bool = False


async def read_infer_body(request: Request, settings: Settings) -> RawBody:
    """The body as sent: JSON when labelled so, else the binary extension when the header says so, else JSON.

    Other media types are a 415.
    """
    declared = request.headers.get(HEADER_LENGTH)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    labelled_json = media == "application/json" or media.endswith("+json")
    if declared is not None:
        declared_header_length(declared)  # a malformed header is a 400 with any body, as on /v1
    kind = "binary" if declared is not None and not labelled_json else body_format(request)
    if kind == "npz":
        raise ProblemError(
            415,
            "/v2 takes JSON inference requests or the binary tensor extension; send npz to /v1",
            headers={"Accept-Post": "application/json, application/octet-stream"},
        )
    header_length = declared_header_length(declared) if kind == "binary" else 0
    body = await read_body(request, settings.max_body_bytes, kind=kind, align_at=header_length)
    request.state.bytes_in = len(body)
    return RawBody(body, kind, header_length)


def infer_parser(roles: tuple[str, ...]) -> Parse:
    """A parser of inference requests whose inputs take the given `roles`."""
    allowed = frozenset(roles)

    def parse(request: Request, raw: RawBody, settings: Settings) -> Body:
        parsed = _parse(request, raw, settings, allowed)
        request.state.body = parsed  # rows, for the metrics and the access log
        return parsed

    return parse


def _parse(request: Request, raw: RawBody, settings: Settings, roles: frozenset[str]) -> InferBody:
    body = raw.data
    text: bytes | bytearray
    if raw.kind == "binary":
        fields, text = split_header(body, raw.header_length)
    else:
        assert isinstance(body, bytearray)
        fields, text = parse_json_object(body), body
    if not is_inference_request(fields):
        raise InputError("inputs", "is required: an inference request lists its tensors in `inputs`")
    request_id = fields.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InputError("id", f"must be a string; got {reprlib.repr(request_id)}")
    outputs = _requested_outputs(fields.get("outputs"))
    options = fields.get("parameters") or {}
    if not isinstance(options, dict):
        raise InputError("parameters", "must be an object of options")
    binary_output = options.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InputError("parameters.binary_data_output", f"must be a boolean; got {binary_output!r}")
    options = {k: _option(k, v) for k, v in options.items() if k != "binary_data_output"}
    reader = ArrayReader(settings.max_elements, has_boolean_elements(text))
    request.state.tensor_shapes = reader.tensor_shapes
    envelope = unwrap({"inputs": fields["inputs"], "parameters": options}, roles)
    request.state.field_pointers = envelope.pointers
    if raw.kind == "binary":
        attach_binary(envelope, body, raw.header_length, reader)
    return InferBody(
        envelope.fields, reader, request_id=request_id, outputs=outputs, binary_output=binary_output
    )


def _requested_outputs(outputs: Any) -> list[dict[str, Any]] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise InputError("outputs", "must be a list of requested outputs")
    for i, output in enumerate(outputs):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InputError(f"outputs.{i}", 'must be an object with a string "name"')
    return outputs


#: Options whose string is always text (a class name, a segment tag), even one that starts like JSON.
TEXT_OPTIONS = frozenset({"pos_label", "segment"})


def _option(name: str, value: Any) -> Any:
    """A request parameter as the option it sets; an object or list may come as its JSON text.

    OIP parameters are strings, numbers or booleans only, so an object or list option
    (`parameters` of /apply, `bootstrap`, `metrics`, ...) may be sent as its JSON text.
    """
    if isinstance(value, str) and value[:1] in ("{", "[") and name not in TEXT_OPTIONS:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"parameters.{name}", f"looks like JSON but is not valid JSON: {exc}") from None
    return value
