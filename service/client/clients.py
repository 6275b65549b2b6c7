"""`XentClient` and `AsyncXentClient`: one method per endpoint, NumPy arrays in, typed results out.

Both share everything but the sending loop: the endpoint table, body encoding,
the retry decisions and the mapping of error responses to :class:`XentAPIError`.
Adding an endpoint takes an :class:`Endpoint` and a short method on each class.
"""

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar

import httpx
import numpy as np
from pydantic import BaseModel

from service import __version__
from service.api.schemas import CrossEntropyResult, DivergenceResult
from service.api.schemas.calibration import CalibrationResult
from service.api.schemas.recalibration import ApplyResult, RecalibrateResult, TemperatureResult

from .encoding import HEADER_LENGTH, Encoded, decode_response, encode_binary, encode_json, n_elements
from .errors import XentAPIError, XentConnectionError, XentTimeoutError, problem_of
from .retry import RETRY_ERRORS, Retry

R = TypeVar("R", bound=BaseModel)
Array = Any  # anything numpy.asarray accepts: ndarray, nested lists, torch CPU tensors ...
Payload = Literal["auto", "json", "binary"]
#: With payload="auto", requests holding at least this many array elements go out binary.
BINARY_THRESHOLD = 65_536


@dataclass(frozen=True)
class Endpoint(Generic[R]):
    """A scoring route: its path and the model its JSON answer is parsed into."""

    path: str
    result: type[R]


CROSS_ENTROPY = Endpoint("/v1/cross-entropy", CrossEntropyResult)
DIVERGENCE = Endpoint("/v1/divergence", DivergenceResult)
CALIBRATION = Endpoint("/v1/calibration", CalibrationResult)
RELIABILITY_DIAGRAM = "/v1/reliability-diagram"
TEMPERATURE = Endpoint("/v1/temperature", TemperatureResult)
RECALIBRATE = Endpoint("/v1/recalibrate", RecalibrateResult)
APPLY = Endpoint("/v1/apply", ApplyResult)


def _fields(options: Mapping[str, Any], **arrays: Array | None) -> dict[str, Any]:
    """A request's fields: arrays as ndarrays (sent as tensors), then the scalar options.

    Options that are result models (e.g. the ``parameters`` a fit returned) are sent as their JSON.
    """
    fields: dict[str, Any] = {name: np.asarray(value) for name, value in arrays.items() if value is not None}
    fields.update({name: _option(value) for name, value in options.items()})
    return fields


def _option(value: Any) -> Any:
    """An option as JSON: result models (a fit's ``parameters``) dumped, arrays (``edges``) as lists.

    Non-finite numbers anywhere in it become the strings the server writes and reads
    (``"Infinity"``, ``"-Infinity"``, ``"NaN"``): JSON has no literal for them, and orjson
    would send ``null`` instead, so a fit at T = ∞ could not be applied (issue #20).
    """
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python")
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    return _json_numbers(value)


def _json_numbers(value: Any) -> Any:
    """`value` with every non-finite float, nested in dicts, lists and tuples too, as its JSON string."""
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isfinite(number):
            return number if isinstance(value, np.floating) else value
        return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
    if isinstance(value, dict):
        return {name: _json_numbers(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_numbers(item) for item in value]
    if isinstance(value, np.ndarray):
        return _json_numbers(value.tolist())
    return value


def _weights(class_weights: Array | None) -> list[float] | None:
    return None if class_weights is None else np.asarray(class_weights, dtype=np.float64).tolist()


def _decoded(response: httpx.Response) -> Any:
    """The decoded JSON answer; binary outputs (``binary_data_output``) as ndarrays."""
    return decode_response(response.content, response.headers.get(HEADER_LENGTH))


def _parsed(endpoint: Endpoint[R], response: httpx.Response) -> R:
    """The answer as the endpoint's result model (binary outputs converted to lists)."""
    header_length = response.headers.get(HEADER_LENGTH)
    if header_length is None:
        return endpoint.result.model_validate_json(response.content)
    return endpoint.result.model_validate(_listed(decode_response(response.content, header_length)))


def _listed(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with its ndarrays, nested ones too, as lists for the result model."""
    return {
        name: value.tolist()
        if isinstance(value, np.ndarray)
        else _listed(value)
        if isinstance(value, dict)
        else value
        for name, value in body.items()
    }


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


class XentClient(_Base):
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

    def cross_entropy(
        self,
        *,
        logits: Array | None = None,
        probs: Array | None = None,
        labels: Array | None = None,
        targets: Array | None = None,
        class_weights: Array | None = None,
        **options: Any,
    ) -> CrossEntropyResult:
        """``POST /v1/cross-entropy``: one of `logits`/`probs`, one of `labels`/`targets`.

        `options` are the endpoint's scalar fields (``base=2``, ``eps=0``,
        ``label_smoothing=0.1``, ``reduction="sum"``, ``per_sample=True``, ...).
        """
        fields = _fields(options, logits=logits, probs=probs, labels=labels, targets=targets)
        return self._post(CROSS_ENTROPY, {**fields, "class_weights": _weights(class_weights)})

    def divergence(
        self,
        *,
        p_probs: Array | None = None,
        p_logits: Array | None = None,
        q_probs: Array | None = None,
        q_logits: Array | None = None,
        **options: Any,
    ) -> DivergenceResult:
        """``POST /v1/divergence``: KL both ways, JS, entropies between p and q (one field of each)."""
        fields = _fields(options, p_probs=p_probs, p_logits=p_logits, q_probs=q_probs, q_logits=q_logits)
        return self._post(DIVERGENCE, fields)

    def calibration(
        self,
        *,
        logits: Array | None = None,
        probs: Array | None = None,
        labels: Array | None = None,
        **options: Any,
    ) -> CalibrationResult:
        """``POST /v1/calibration``: ECE and its variants, Brier, tests, reliability bins.

        `options`: ``preset="torchmetrics"``, ``n_bins=15``, ``binning="quantile"``,
        ``target="classwise"``, ``metrics=["ece", "smooth_ece"]``, ``bootstrap={...}``, ...
        """
        return self._post(CALIBRATION, _fields(options, logits=logits, probs=probs, labels=labels))

    def reliability_diagram(
        self,
        *,
        logits: Array | None = None,
        probs: Array | None = None,
        labels: Array | None = None,
        **options: Any,
    ) -> str:
        """``POST /v1/reliability-diagram``: the SVG document (options as :meth:`calibration`)."""
        fields = _fields(options, logits=logits, probs=probs, labels=labels)
        return self._send(**self._request_args(RELIABILITY_DIAGRAM, fields, "POST")).text

    def temperature(
        self,
        *,
        logits: Array | None = None,
        probs: Array | None = None,
        labels: Array | None = None,
        targets: Array | None = None,
        **options: Any,
    ) -> TemperatureResult:
        """``POST /v1/temperature``: the T minimising the NLL of softmax(logits / T), exactly."""
        fields = _fields(options, logits=logits, probs=probs, labels=labels, targets=targets)
        return self._post(TEMPERATURE, fields)

    def recalibrate(
        self,
        method: str,
        *,
        logits: Array | None = None,
        probs: Array | None = None,
        labels: Array | None = None,
        targets: Array | None = None,
        **options: Any,
    ) -> RecalibrateResult:
        """``POST /v1/recalibrate``: fit `method` (vector, matrix, platt, beta, isotonic, histogram, ...)."""
        fields = _fields(
            {"method": method, **options}, logits=logits, probs=probs, labels=labels, targets=targets
        )
        return self._post(RECALIBRATE, fields)

    def apply(
        self,
        parameters: Any = None,
        *,
        temperature: float | None = None,
        logits: Array | None = None,
        probs: Array | None = None,
        labels: Array | None = None,
        targets: Array | None = None,
        **options: Any,
    ) -> ApplyResult:
        """``POST /v1/apply``: recalibrate predictions with a fit's `parameters` (or a bare `temperature`).

        `parameters` is the ``parameters`` of a :meth:`temperature` or :meth:`recalibrate`
        result, as the model or its JSON. Send `labels` or `targets` to have the output scored.
        """
        options = {"parameters": parameters, "temperature": temperature, **options}
        fields = _fields(options, logits=logits, probs=probs, labels=labels, targets=targets)
        return self._post(APPLY, fields)

    def _post(self, endpoint: Endpoint[R], fields: Mapping[str, Any]) -> R:
        return _parsed(endpoint, self._send(**self._request_args(endpoint.path, fields, "POST")))

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


class AsyncXentClient(_Base):
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

    async def cross_entropy(
        self,
        *,
        logits: Array | None = None,
        probs: Array | None = None,
        labels: Array | None = None,
        targets: Array | None = None,
        class_weights: Array | None = None,
        **options: Any,
    ) -> CrossEntropyResult:
        """``POST /v1/cross-entropy`` (see :meth:`XentClient.cross_entropy`)."""
        fields = _fields(options, logits=logits, probs=probs, labels=labels, targets=targets)
        return await self._post(CROSS_ENTROPY, {**fields, "class_weights": _weights(class_weights)})

    async def divergence(
        self,
        *,
        p_probs: Array | None = None,
        p_logits: Array | None = None,
        q_probs: Array | None = None,
        q_logits: Array | None = None,
        **options: Any,
    ) -> DivergenceResult:
        """``POST /v1/divergence`` (see :meth:`XentClient.divergence`)."""
        fields = _fields(options, p_probs=p_probs, p_logits=p_logits, q_probs=q_probs, q_logits=q_logits)
        return await self._post(DIVERGENCE, fields)

    async def calibration(
        self,
        *,
        logits: Array | None = None,
        probs: Array | None = None,
        labels: Array | None = None,
        **options: Any,
    ) -> CalibrationResult:
        """``POST /v1/calibration``: ECE and its variants, Brier, tests, reliability bins.

        `options`: ``preset="torchmetrics"``, ``n_bins=15``, ``binning="quantile"``,
        ``target="classwise"``, ``metrics=["ece", "smooth_ece"]``, ``bootstrap={...}``, ...
        """
        return await self._post(CALIBRATION, _fields(options, logits=logits, probs=probs, labels=labels))

    async def reliability_diagram(
        self,
        *,
        logits: Array | None = None,
        probs: Array | None = None,
        labels: Array | None = None,
        **options: Any,
    ) -> str:
        """``POST /v1/reliability-diagram``: the SVG document (options as :meth:`calibration`)."""
        fields = _fields(options, logits=logits, probs=probs, labels=labels)
        response = await self._send(**self._request_args(RELIABILITY_DIAGRAM, fields, "POST"))
        return response.text

    async def temperature(
        self,
        *,
        logits: Array | None = None,
        probs: Array | None = None,
        labels: Array | None = None,
        targets: Array | None = None,
        **options: Any,
    ) -> TemperatureResult:
        """``POST /v1/temperature``: the T minimising the NLL of softmax(logits / T), exactly."""
        fields = _fields(options, logits=logits, probs=probs, labels=labels, targets=targets)
        return await self._post(TEMPERATURE, fields)

    async def recalibrate(
        self,
        method: str,
        *,
        logits: Array | None = None,
        probs: Array | None = None,
        labels: Array | None = None,
        targets: Array | None = None,
        **options: Any,
    ) -> RecalibrateResult:
        """``POST /v1/recalibrate``: fit `method` (vector, matrix, platt, beta, isotonic, histogram, ...)."""
        fields = _fields(
            {"method": method, **options}, logits=logits, probs=probs, labels=labels, targets=targets
        )
        return await self._post(RECALIBRATE, fields)

    async def apply(
        self,
        parameters: Any = None,
        *,
        temperature: float | None = None,
        logits: Array | None = None,
        probs: Array | None = None,
        labels: Array | None = None,
        targets: Array | None = None,
        **options: Any,
    ) -> ApplyResult:
        """``POST /v1/apply``: recalibrate predictions with a fit's `parameters` (or a bare `temperature`).

        `parameters` is the ``parameters`` of a :meth:`temperature` or :meth:`recalibrate`
        result, as the model or its JSON. Send `labels` or `targets` to have the output scored.
        """
        options = {"parameters": parameters, "temperature": temperature, **options}
        fields = _fields(options, logits=logits, probs=probs, labels=labels, targets=targets)
        return await self._post(APPLY, fields)

    async def _post(self, endpoint: Endpoint[R], fields: Mapping[str, Any]) -> R:
        return _parsed(endpoint, await self._send(**self._request_args(endpoint.path, fields, "POST")))

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
