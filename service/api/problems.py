"""RFC 9457 ``application/problem+json`` responses for every error, in one place."""

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

from .option_errors import describe

PROBLEM_JSON = "application/problem+json"
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
) -> Response:
    """A problem+json response with ``type: about:blank`` and the status phrase as title.

    Under /v2 (the Open Inference Protocol) it also carries the protocol's ``error`` member, the
    message Triton's and KServe's clients raise.
    """
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = list(errors)
    if request is not None and request.url.path.startswith(OIP_PREFIX):
        body["error"] = detail
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _pointer(request: Request, error: InputError) -> str:
    """JSON pointer to the offending element of the request body.

    Follows the field into an inference request's ``inputs[i]`` and into a tensor
    object's flat ``data`` when that is how the array was sent.
    """
    head, _, rest = error.field.partition(".")
    prefixes: dict[str, str] = getattr(request.state, "field_pointers", {})
    base = prefixes.get(head, f"#/{head}") + "".join(f"/{part}" for part in rest.split(".") if part)
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
    return problem_response(400, "request body is nested too deeply")


async def missing_dependency_handler(request: Request, exc: Exception) -> Response:
    """501 when a method needs an optional package this installation lacks."""
    assert isinstance(exc, MissingDependency)
    return problem_response(501, str(exc))


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    """A bug: report 500 as problem+json without leaking internals."""
    return problem_response(500, "internal error; the request was not scored")


PROBLEM_HANDLERS = {
    InputError: input_error_handler,
    ValidationError: validation_error_handler,
    RequestValidationError: validation_error_handler,
    ProblemError: problem_error_handler,
    HTTPException: http_exception_handler,
    RecursionError: recursion_error_handler,
    MissingDependency: missing_dependency_handler,
    Exception: unhandled_error_handler,
}
