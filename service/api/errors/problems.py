"""RFC 9457 ``application/problem+json`` responses for every error, in one place."""

import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import numpy as np
import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from service.core import InputError
from service.core.errors import MissingDependency
from service.store import KeyReused, MonitorConflict, MonitorNotFound, Replayed, StoreLimit, StoreUnavailable

from .options import describe

PROBLEM_JSON = "application/problem+json"
_INDEX = re.compile(r"\[(\d+)\]")
OIP_PREFIX = "/v2"
#: RFC 9110 reason phrases where Python's `http.HTTPStatus` still has the older ones.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


class ProblemError(Exception):
    """An HTTP-level problem raised by the API layer (malformed body, too large, ...)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = dict(headers or {})


def problem_response(
    status: int,
    detail: str,
    *,
    errors: Sequence[Mapping[str, str]] = (),
    headers: Mapping[str, str] | None = None,
    request: Request | None = None,
    path: str | None = None,
) -> Response:
    """A problem+json response with ``type: about:blank`` and the status phrase as title.

    Under /v2 (the Open Inference Protocol) it also carries the protocol's ``error`` member, the
    message Triton's and KServe's clients raise: the request's path is `request`'s, else `path`
    (middleware answering before a route, from the ASGI scope).
    """
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = list(errors)
    where = request.url.path if request is not None else path or ""
    if where == OIP_PREFIX or where.startswith(OIP_PREFIX + "/"):
        body["error"] = detail
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _pointer(request: Request, error: InputError) -> str:
    """JSON pointer to the offending element of the request body.

    Follows the field into an inference request's ``inputs[i]`` and into a tensor
    object's flat ``data`` when that is how the array was sent. A path with list indices
    (``responses[0].choices[1].logprobs``) becomes ``#/responses/0/choices/1/logprobs``.
    """
    head, _, rest = error.field.partition(".")
    head, bracket, head_rest = head.partition("[")
    rest = (f"[{head_rest}.{rest}" if rest else f"[{head_rest}") if bracket else rest
    prefixes: dict[str, str] = getattr(request.state, "field_pointers", {})
    parts = _INDEX.sub(r".\1", rest).split(".")
    base = prefixes.get(head, f"#/{head}") + "".join(f"/{part}" for part in parts if part)
    shapes: dict[str, tuple[int, ...]] = getattr(request.state, "tensor_shapes", {})
    shape = shapes.get(error.field)
    if shape is not None and error.index and len(error.index) <= len(shape):
        row_start = error.index + (0,) * (len(shape) - len(error.index))
        return f"{base}/data/{int(np.ravel_multi_index(row_start, shape))}"
    return base + "".join(f"/{i}" for i in error.index)


async def input_error_handler(request: Request, exc: Exception) -> Response:
    """422 for values the core rejected, pointing at the field and first bad index."""
    assert isinstance(exc, InputError)
    return problem_response(
        422,
        str(exc),
        errors=[{"pointer": _pointer(request, exc), "detail": f"`{exc.location}` {exc.reason}"}],
        request=request,
    )


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """422 for options that failed their schema (unknown field, wrong type, out of range)."""
    assert isinstance(exc, ValidationError | RequestValidationError)
    body = getattr(request.state, "body", None)
    pointers: dict[str, str] = getattr(request.state, "field_pointers", {})
    errors = describe(exc.errors(), getattr(body, "fields", None), pointers)
    for error in errors:
        error.pop("field")
    detail = "; ".join(error["detail"] for error in errors)
    return problem_response(422, detail, errors=errors, request=request)


async def problem_error_handler(request: Request, exc: Exception) -> Response:
    """The status the API layer chose (400 malformed JSON, 413, 415, ...)."""
    assert isinstance(exc, ProblemError)
    errors = [{"pointer": f"#/{exc.field}", "detail": exc.detail}] if exc.field else []
    return problem_response(exc.status, exc.detail, errors=errors, headers=exc.headers, request=request)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (404, 405, 413 from the server) as problem+json."""
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    path = request.url.path
    if exc.status_code == 404 and path.endswith("/") and path.rstrip("/") in _routes(request):
        detail = f"no route {path}; the route is {path.rstrip('/')}, without the trailing slash"
    return problem_response(exc.status_code, detail, headers=exc.headers, request=request)


def _routes(request: Request) -> set[str]:
    schema = request.app.openapi()  # built at start-up
    return {request.scope.get("root_path", "") + path for path in schema.get("paths", {})} | {
        "/docs",
        "/redoc",
    }


async def recursion_error_handler(request: Request, exc: Exception) -> Response:
    """400 for input nested deeper than some step can walk (orjson alone accepts 1,023 levels)."""
    return problem_response(400, "request body is nested too deeply", request=request)


async def missing_dependency_handler(request: Request, exc: Exception) -> Response:
    """501 when a method needs an optional package this installation lacks."""
    assert isinstance(exc, MissingDependency)
    return problem_response(501, str(exc), request=request)


async def store_unavailable_handler(request: Request, exc: Exception) -> Response:
    """503 + Retry-After when the monitor store is locked, full or cannot be opened (nothing written)."""
    assert isinstance(exc, StoreUnavailable)
    settings = getattr(request.app.state, "settings", None)
    retry_after = str(getattr(settings, "retry_after_s", 1))
    scope_state = request.scope.setdefault("state", {})
    scope_state["error_type"] = "store_unavailable"
    return problem_response(
        503, f"{exc}; nothing was written, retry", headers={"Retry-After": retry_after}, request=request
    )


#: Caps that a value of the request exceeds by itself (422); the others depend on what the store
#: holds already (409).
_VALUE_LIMITS = {"max_reservoir"}


async def store_limit_handler(request: Request, exc: Exception) -> Response:
    """409 (the store is full for this monitor) or 422 (a value over its cap), naming field and setting."""
    assert isinstance(exc, StoreLimit)
    status = 422 if exc.limit in _VALUE_LIMITS else 409
    detail = f"{exc} (setting XENT_{exc.limit.upper()}); nothing was written"
    errors = [{"pointer": f"#/{exc.field}", "detail": exc.reason}]
    return problem_response(status, detail, errors=errors, request=request)


async def monitor_not_found_handler(request: Request, exc: Exception) -> Response:
    """404 for a monitor name that does not exist."""
    assert isinstance(exc, MonitorNotFound)
    return problem_response(
        404,
        f"{exc}; create it with PUT /v1/monitors/{exc.name}",
        errors=[{"pointer": "#/name", "detail": str(exc)}],
        request=request,
    )


async def monitor_conflict_handler(request: Request, exc: Exception) -> Response:
    """409 for a change of a monitor field that cannot change."""
    assert isinstance(exc, MonitorConflict)
    errors = [{"pointer": f"#/{exc.field}", "detail": exc.reason}]
    return problem_response(409, str(exc), errors=errors, request=request)


async def replayed_handler(request: Request, exc: Exception) -> Response:
    """A retry under a stored `Idempotency-Key`: the first attempt's answer, nothing written again."""
    assert isinstance(exc, Replayed)
    return Response(exc.answer, media_type="application/json", headers={"Idempotent-Replayed": "true"})


async def key_reused_handler(request: Request, exc: Exception) -> Response:
    """422 for an `Idempotency-Key` sent before with a different request."""
    assert isinstance(exc, KeyReused)
    reason = "was sent before with a different request (route, body or segment); use a new key"
    return problem_response(
        422,
        f"`Idempotency-Key` {reason}; nothing was written",
        errors=[{"pointer": "#/Idempotency-Key", "detail": reason}],
    )


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    """A bug: report 500 as problem+json without leaking internals."""
    return problem_response(500, "internal error; the request was not scored", request=request)


PROBLEM_HANDLERS = {
    InputError: input_error_handler,
    ValidationError: validation_error_handler,
    RequestValidationError: validation_error_handler,
    ProblemError: problem_error_handler,
    HTTPException: http_exception_handler,
    RecursionError: recursion_error_handler,
    MissingDependency: missing_dependency_handler,
    StoreUnavailable: store_unavailable_handler,
    StoreLimit: store_limit_handler,
    MonitorNotFound: monitor_not_found_handler,
    MonitorConflict: monitor_conflict_handler,
    Replayed: replayed_handler,
    KeyReused: key_reused_handler,
    Exception: unhandled_error_handler,
}
