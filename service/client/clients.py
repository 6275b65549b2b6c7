"""`XentClient` and `AsyncXentClient`: one method per endpoint, NumPy arrays in, typed results out.

Both share everything but the sending loop: the endpoints (declared once, in
:mod:`.endpoints`), body encoding, the retry decisions and the mapping of error responses to
:class:`XentAPIError`. Adding an endpoint takes one request builder in :mod:`.endpoints`.
"""

import asyncio
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx

from service import __version__

from .encoding import HEADER_LENGTH, Encoded, decode_response, encode_binary, encode_json, n_elements
from .endpoints import Call, Endpoints
from .errors import XentAPIError, XentConnectionError, XentTimeoutError, problem_of
from .retry import RETRY_ERRORS, Retry

T = TypeVar("T")
Payload = Literal["auto", "json", "binary"]
#: With payload="auto", requests holding at least this many array elements go out binary.
BINARY_THRESHOLD = 65_536


def _decoded(response: httpx.Response) -> Any:
    """The decoded JSON answer; binary outputs (``binary_data_output``) as ndarrays."""
    return decode_response(response.content, response.headers.get(HEADER_LENGTH))


class _Base:
    """Settings and decisions shared by the sync and async clients."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout: float | httpx.Timeout,
        retry: Retry | None,
        headers: Mapping[str, str] | None,
        payload: Payload,
    ) -> None:
        if payload not in ("auto", "json", "binary"):
            raise ValueError(f'payload must be "auto", "json" or "binary"; got {payload!r}')
        self.retry = retry if retry is not None else Retry()
        self.payload = payload
        self._options: dict[str, Any] = {
            "base_url": base_url,
            "timeout": timeout,
            "headers": {
                "User-Agent": f"xent-client/{__version__}",
                "Accept": "application/json, application/problem+json",
                **({"Authorization": f"Bearer {api_key}"} if api_key else {}),
                **(headers or {}),
            },
        }

    def _wait(self, attempt: int, outcome: httpx.Response | Exception) -> float | None:
        """Seconds to wait before sending again, or None to stop and report `outcome`."""
        if attempt >= self.retry.retries:
            return None
        if isinstance(outcome, httpx.Response):
            if outcome.status_code not in self.retry.statuses:
                return None
            return self.retry.delay(attempt, outcome)
        return self.retry.delay(attempt) if isinstance(outcome, RETRY_ERRORS) else None

    @staticmethod
    def _outcome(outcome: httpx.Response | Exception) -> httpx.Response:
        """The successful response, or the typed exception for a failure."""
        if isinstance(outcome, httpx.TimeoutException):
            raise XentTimeoutError(f"request timed out: {outcome!r}") from outcome
        if isinstance(outcome, Exception):
            raise XentConnectionError(f"could not reach the Xent server: {outcome!r}") from outcome
        if outcome.is_error:
            raise XentAPIError(problem_of(outcome), outcome)
        return outcome

    def _encode(self, body: Mapping[str, Any]) -> Encoded:
        """JSON for small requests, the binary tensor extension for large ones (see `payload`)."""
        n = n_elements(body)  # a body without arrays has nothing to send binary
        binary = n > 0 and (self.payload == "binary" or (self.payload == "auto" and n >= BINARY_THRESHOLD))
        return encode_binary(body) if binary else encode_json(body)

    def _request_args(self, path: str, body: Mapping[str, Any] | None, method: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {"method": method or ("GET" if body is None else "POST"), "url": path}
        if body is not None:
            encoded = self._encode(body)
            args["content"] = encoded.content
            args["headers"] = encoded.headers
        return args


class XentClient(_Base, Endpoints):
    """Synchronous client of a Xent server.

    Parameters
    ----------
    base_url : str
        Where the server listens, e.g. ``"http://127.0.0.1:8000"``.
    api_key : str, optional
        Sent as ``Authorization: Bearer <key>`` when the server requires keys.
    timeout : float or httpx.Timeout, default=30.0
        Seconds for connecting, sending, waiting and reading (see httpx).
    retry : Retry, optional
        When to send again: by default 3 retries with jittered exponential backoff on
        connection errors and 502/503/504, honouring ``Retry-After``.
    headers : mapping, optional
        Extra headers for every request (``X-Request-ID``, ...).
    transport : httpx.BaseTransport, optional
        A custom httpx transport (e.g. ``httpx.WSGITransport`` or a mock) for tests.
    payload : {"auto", "json", "binary"}, default="auto"
        How arrays travel: "json" as tensor objects, "binary" as the OIP binary tensor
        extension (raw little-endian bytes after a JSON header), "auto" binary from
        :data:`BINARY_THRESHOLD` array elements per request on.

    Examples
    --------
    >>> with XentClient("http://127.0.0.1:8000") as xent:  # doctest: +SKIP
    ...     result = xent.cross_entropy(logits=logits, labels=labels)
    ...     result.loss, result.accuracy
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = 30.0,
        retry: Retry | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        payload: Payload = "auto",
    ) -> None:
        super().__init__(
            base_url, api_key=api_key, timeout=timeout, retry=retry, headers=headers, payload=payload
        )
        self._http = httpx.Client(transport=transport, **self._options)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(self, path: str, body: Mapping[str, Any] | None = None, *, method: str | None = None) -> Any:
        """Call any route and return its decoded JSON (ndarrays in `body` are sent as tensors).

        GET without a body, POST with one, unless `method` says otherwise.
        """
        return _decoded(self._send(**self._request_args(path, body, method)))

    def ready(self) -> bool:
        """Whether the server answers ``/readyz`` with 200 (no retries)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def _call(self, call: Call[T]) -> T:
        return call.read(self._send(**self._request_args(call.path, call.fields, "POST")))

    def _send(self, **args: Any) -> httpx.Response:
        attempt = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = self._http.request(**args)
            except httpx.TransportError as exc:
                outcome = exc
            wait = self._wait(attempt, outcome)
            if wait is None:
                return self._outcome(outcome)
            time.sleep(wait)
            attempt += 1


class AsyncXentClient(_Base, Endpoints):
    """Asynchronous client of a Xent server: :class:`XentClient`'s methods, awaited.

    Examples
    --------
    >>> async with AsyncXentClient("http://127.0.0.1:8000") as xent:  # doctest: +SKIP
    ...     result = await xent.divergence(p_probs=p, q_probs=q)
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = 30.0,
        retry: Retry | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        payload: Payload = "auto",
    ) -> None:
        super().__init__(
            base_url, api_key=api_key, timeout=timeout, retry=retry, headers=headers, payload=payload
        )
        self._http = httpx.AsyncClient(transport=transport, **self._options)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def request(
        self, path: str, body: Mapping[str, Any] | None = None, *, method: str | None = None
    ) -> Any:
        """Call any route and return its decoded JSON (see :meth:`XentClient.request`)."""
        return _decoded(await self._send(**self._request_args(path, body, method)))

    async def ready(self) -> bool:
        """Whether the server answers ``/readyz`` with 200 (no retries)."""
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def _call(self, call: Call[T]) -> T:
        return call.read(await self._send(**self._request_args(call.path, call.fields, "POST")))

    async def _send(self, **args: Any) -> httpx.Response:
        attempt = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = await self._http.request(**args)
            except httpx.TransportError as exc:
                outcome = exc
            wait = self._wait(attempt, outcome)
            if wait is None:
                return self._outcome(outcome)
            await asyncio.sleep(wait)
            attempt += 1
