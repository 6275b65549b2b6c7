"""The request body of the scoring routes, read and parsed once.

:func:`scoring` turns ``score(body) -> Response`` into an endpoint.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NamedTuple

import anyio
from fastapi import Depends, Request
from starlette.responses import Response

from service.settings import Settings
from service.store import MonitorStore

from .formats.arrays import ArrayReader
from .formats.binary import attach_binary, declared_header_length, split_header
from .formats.body import body_headers, media_format, read_body
from .formats.envelope import is_inference_request, unwrap
from .formats.inputs import Body
from .formats.npz import read_npz
from .formats.payload import has_boolean_elements, parse_json_object


class RawBody(NamedTuple):
    """A request body as read: bytes, format and (binary extension) the JSON header's length."""

    data: bytearray | memoryview
    kind: str
    header_length: int = 0


#: The ``scope["state"]`` key of a JSON body the direct layer read whole, within the body limit
#: (a monitor's small write, :meth:`~service.api.middleware.direct.DirectScoring._write`): the
#: route takes it as :func:`raw_body` would have read it (:func:`taken_body`).
DIRECT_BODY = "direct_body"


def taken_body(request: Request) -> RawBody | None:
    """The body the direct layer read whole (:data:`DIRECT_BODY`), as :func:`raw_body` gives it; else None."""
    state = request.scope.get("state")
    if state is None or (data := state.pop(DIRECT_BODY, None)) is None:
        return None
    state["bytes_in"] = len(data)  # reported by the metrics and the access log
    return RawBody(data, "json")


async def raw_body(request: Request, settings: Settings) -> RawBody:
    """The request body and its format, checked for content type and size as it streams in."""
    headers = body_headers(request)
    kind = media_format(headers.content_type)
    declared = headers.header_length
    # Checked whenever sent (a malformed header is a 400 with any body); used by binary bodies only.
    header_length = declared_header_length(declared) if kind == "binary" or declared is not None else 0
    body = await read_body(
        request, settings.max_body_bytes, kind=kind, align_at=header_length, headers=headers
    )
    request.state.bytes_in = len(body)  # reported by the metrics and the access log
    return RawBody(body, kind, header_length)


def parsed_body(
    request: Request,
    raw: RawBody,
    settings: Settings,
    roles: frozenset[str] | None = None,
    fields: dict[str, Any] | None = None,
) -> Body:
    """Parse JSON, an OIP inference request (JSON or binary extension) or npz.

    `roles`, when given, are the array fields an inference request's inputs may fill; `fields`,
    a JSON body's object when it was parsed already (:class:`Plain`).

    CPU work: runs where the route's score runs (see :func:`scoring`). The metrics and the access log read the
    rows of the returned body (``request.state.body``) once the response is sent.
    """
    parsed = _parse(request, raw, settings, roles, fields)
    request.state.body = parsed
    return parsed


def _parse(
    request: Request,
    raw: RawBody,
    settings: Settings,
    roles: frozenset[str] | None,
    parsed: dict[str, Any] | None = None,
) -> Body:
    body, kind = raw.data, raw.kind
    if kind == "npz":
        reader = ArrayReader(settings.max_elements, may_hold_booleans=False)
        request.state.tensor_shapes = reader.tensor_shapes
        return Body(read_npz(body, reader), reader)
    text: bytes | bytearray  # the JSON: the whole body, or a binary body's header
    if kind == "binary":
        fields, text = split_header(body, raw.header_length)
    else:
        assert isinstance(body, bytearray)  # JSON is always read into a bytearray
        fields, text = parse_json_object(body) if parsed is None else parsed, body
    reader = ArrayReader(settings.max_elements, has_boolean_elements(text))
    request.state.tensor_shapes = reader.tensor_shapes  # error pointers follow tensors and envelopes
    if kind == "binary" or is_inference_request(fields):
        envelope = unwrap(fields, roles)
        request.state.field_pointers = envelope.pointers
        if kind == "binary":
            attach_binary(envelope, body, raw.header_length, reader)
        fields = envelope.fields
    return Body(fields, reader)


#: Bodies up to this size are parsed and scored on the event loop by the linear-cost routes:
#: a thread hop costs more than scoring 32×10 does (docs/internals.md, Small requests).
INLINE_BYTES = 1 << 16

Score = Callable[[Body], Response]
Read = Callable[[Request, Settings], Awaitable[RawBody]]
Parse = Callable[[Request, RawBody, Settings], Body]


class Plain(NamedTuple):
    """A route's plain request: exactly `fields`, each a JSON list of numbers, and no option.

    It is the common small request (predictions and labels, nothing else), and its answer
    differs from one plain request to the next only in a few numbers: `answer` computes them
    with the core functions the route's general path calls, and fills them into the general
    path's own answer to one plain request, made once, skipping the option model, the field
    lookups and the answer's assembly. ``answer(fields, max_elements)`` gives
    the answer's bytes and its rows, or None whenever the request is not plain after all (an
    array that is not a float list of the expected shape, an input a check refuses, too many
    elements): the general path then serves it, with its exact error. ``tests/api/
    test_plain_requests.py`` checks each route's plain answers equal its general path's, byte
    for byte.
    """

    fields: frozenset[str]
    answer: Callable[[dict[str, Any], int], tuple[bytes, int] | None]


class DirectRoute(NamedTuple):
    """How a scoring route scores a body, for :class:`~service.api.middleware.direct.DirectScoring`.

    :func:`scoring` sets it as ``endpoint.direct_scoring`` on routes that read their body the
    default way; the direct layer serves their small JSON bodies in one pass. With `plain`,
    `parse` also takes the body's JSON object, parsed already.
    """

    score: Score
    parse: Callable[..., Body]
    on_loop: int  # the largest body the route parses and scores on the event loop
    threaded: Callable[[Body], bool] | None  # parsed bodies that go to a worker thread all the same
    plain: Plain | None = None


def scoring(
    *,
    inline_bytes: int = 0,
    roles: tuple[str, ...] | None = None,
    read: Read = raw_body,
    parse: Parse | None = None,
    loop_bytes: int | None = None,
    threaded: Callable[[Body], bool] | None = None,
    plain: Plain | None = None,
) -> Callable[[Score], Callable[[Request], Awaitable[Response]]]:
    """Make an endpoint of ``score(body)``: read the body, then parse and score it.

    `roles` are the route's array fields (the roles an inference request's inputs may take);
    `read` and `parse` replace the default body reader and parser (the /v2 routes use their own).

    Bodies up to `inline_bytes` are parsed and scored right on the event loop (pass 0 for
    routes whose cost is not linear in the input, such as fits and bootstraps); larger ones
    go to a worker thread, parse and score in one hop, at most ``XENT_SCORING_THREADS`` at once
    (a burst of large bodies queues instead of holding every parsed body in memory together).
    The endpoint takes only the request, so FastAPI resolves no dependencies per call; the
    request body is documented by each route's ``openapi_extra``.

    A route whose cost is not linear for every option may still score its small bodies on the
    loop: `loop_bytes` (default `inline_bytes`) bounds the bodies scored there, and `threaded`
    names the parsed bodies that go to a worker thread all the same (calibration's bootstrap).
    Only `inline_bytes` tells the limits to run the request without a task of its own
    (:class:`~service.api.middleware.limits.LimitsMiddleware`); with ``inline_bytes=0`` a small
    body scored on the loop keeps its task and deadline, and saves only the thread hop.

    `plain` is the route's answer to its plain request (:class:`Plain`), given by the direct
    layer to small bodies; it needs the default body reader and parser.
    """
    allowed = None if roles is None else frozenset(roles)
    on_loop = inline_bytes if loop_bytes is None else loop_bytes
    assert plain is None or (parse is None and read is raw_body), "a plain answer needs the default parse"

    def default_parse(
        request: Request, raw: RawBody, settings: Settings, fields: dict[str, Any] | None = None
    ) -> Body:
        return parsed_body(request, raw, settings, allowed, fields)

    parse_body = parse or default_parse

    def wrap(score: Score) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            settings: Settings = request.app.state.settings
            raw = await read(request, settings)
            if len(raw.data) > on_loop:
                return await _in_thread(request, lambda: score(parse_body(request, raw, settings)))
            body = parse_body(request, raw, settings)
            if threaded is not None and threaded(body):
                return await _in_thread(request, lambda: score(body))
            return score(body)

        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(endpoint, name, getattr(score, name))
        endpoint.inline_bytes = inline_bytes  # type: ignore[attr-defined]  # read by LimitsMiddleware
        if read is raw_body and on_loop > 0:
            direct = DirectRoute(score, parse_body, on_loop, threaded, plain)
            endpoint.direct_scoring = direct  # type: ignore[attr-defined]
        return endpoint

    return wrap


async def _in_thread(request: Request, work: Callable[[], Response]) -> Response:
    """`work` in a worker thread, at most ``XENT_SCORING_THREADS`` at once."""
    limiter = getattr(request.app.state, "scoring_limiter", None)
    return await anyio.to_thread.run_sync(work, limiter=limiter)


def get_store(request: Request) -> MonitorStore:
    """The app's monitor store (opened at start-up, or now); `StoreUnavailable` (503) if it cannot be."""
    store: MonitorStore = request.app.state.monitors.get()
    return store


StoreDep = Annotated[MonitorStore, Depends(get_store)]
