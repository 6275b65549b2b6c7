"""Exceptions raised by the Xent clients."""

from http import HTTPStatus
from typing import Any

import httpx
import orjson

from service.api.schemas.common import ProblemDetails


class XentError(Exception):
    """Base class of every error the Xent clients raise."""


class XentConnectionError(XentError):
    """The server could not be reached (or kept failing) after every retry."""


class XentAPIError(XentError):
    """The server answered with an error status; `problem` holds its RFC 9457 details.

    Attributes
    ----------
    problem : ProblemDetails
        ``type``, ``title``, ``status``, ``detail`` and ``errors`` (JSON pointers into the
        request body, e.g. ``#/labels/3``) as the server sent them.
    response : httpx.Response
        The raw response, for its headers (``Retry-After``, ``X-Request-ID``, ...).
    """

    def __init__(self, problem: ProblemDetails, response: httpx.Response) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail}")
        self.problem = problem
        self.response = response

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self.problem.status

    @property
    def detail(self) -> str:
        """What is wrong, naming the field."""
        return self.problem.detail

    @property
    def pointer(self) -> str | None:
        """JSON pointer of the first offending field (``#/labels/3``), if the server named one."""
        errors = self.problem.errors or []
        return errors[0].get("pointer") if errors else None


def problem_of(response: httpx.Response) -> ProblemDetails:
    """The problem details of an error `response`, or a stand-in when it sent something else."""
    try:
        body: Any = orjson.loads(response.content)
        return ProblemDetails.model_validate(body)
    except (orjson.JSONDecodeError, ValueError):
        status = response.status_code
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
        text = response.text.strip()[:500] or title
        return ProblemDetails(title=title, status=status, detail=text)


class XentTimeoutError(XentConnectionError):
    """The server did not answer within the client's timeout."""
