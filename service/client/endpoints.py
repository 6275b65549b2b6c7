"""The endpoints of the Python clients, each declared once for both transports.

An endpoint is a typed request builder (its signature is the method's: keyword arrays and
options in, a :class:`Call` out) wrapped in :class:`Endpoint`, a descriptor that both
:class:`~service.client.XentClient` and :class:`~service.client.AsyncXentClient` inherit
from :class:`Endpoints`. Read on a sync client it is a method returning the result; on an
async client, the same method returning an awaitable of it: mypy sees both signatures
(``ParamSpec``), and only the sending loop differs between the two transports.
"""

import functools
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar, overload

import httpx
import numpy as np
from pydantic import BaseModel

from service.api.schemas import CrossEntropyResult, DivergenceResult
from service.api.schemas.calibration import CalibrationResult
from service.api.schemas.recalibration import ApplyResult, RecalibrateResult, TemperatureResult

from .encoding import HEADER_LENGTH, decode_response

if TYPE_CHECKING:
    from .clients import AsyncXentClient, XentClient

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)
Array = Any  # anything numpy.asarray accepts: ndarray, nested lists, torch CPU tensors ...


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to make: the route, the fields to encode, and how to read the answer."""

    path: str
    fields: Mapping[str, Any]
    read: Callable[[httpx.Response], T]


class Endpoint(Generic[P, T]):
    """A client method made from a request builder: sync or async by the client it is read on."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build

    @overload
    def __get__(self, client: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, client: "XentClient", owner: type | None = None) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: "AsyncXentClient", owner: type | None = None) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, client: Any, owner: type | None = None) -> Any:
        if client is None:
            return self
        build = self.build

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return client._call(build(*args, **kwargs))  # the result, or an awaitable of it (async)

        return method


def result(model: type[R]) -> Callable[[httpx.Response], R]:
    """A reader of answers into `model` (binary outputs converted to lists)."""

    def read(response: httpx.Response) -> R:
        header_length = response.headers.get(HEADER_LENGTH)
        if header_length is None:
            return model.model_validate_json(response.content)
        return model.model_validate(_listed(decode_response(response.content, header_length)))

    return read


def _text(response: httpx.Response) -> str:
    return response.text


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


def fields_of(options: Mapping[str, Any], **arrays: Array | None) -> dict[str, Any]:
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


def cross_entropy(
    *,
    logits: Array | None = None,
    probs: Array | None = None,
    labels: Array | None = None,
    targets: Array | None = None,
    class_weights: Array | None = None,
    **options: Any,
) -> Call[CrossEntropyResult]:
    """``POST /v1/cross-entropy``: one of `logits`/`probs`, one of `labels`/`targets`.

    `options` are the endpoint's scalar fields (``base=2``, ``eps=0``,
    ``label_smoothing=0.1``, ``reduction="sum"``, ``per_sample=True``, ...).
    """
    fields = fields_of(options, logits=logits, probs=probs, labels=labels, targets=targets)
    body = {**fields, "class_weights": _weights(class_weights)}
    return Call("/v1/cross-entropy", body, result(CrossEntropyResult))


def divergence(
    *,
    p_probs: Array | None = None,
    p_logits: Array | None = None,
    q_probs: Array | None = None,
    q_logits: Array | None = None,
    **options: Any,
) -> Call[DivergenceResult]:
    """``POST /v1/divergence``: KL both ways, JS, entropies between p and q (one field of each)."""
    fields = fields_of(options, p_probs=p_probs, p_logits=p_logits, q_probs=q_probs, q_logits=q_logits)
    return Call("/v1/divergence", fields, result(DivergenceResult))


def calibration(
    *, logits: Array | None = None, probs: Array | None = None, labels: Array | None = None, **options: Any
) -> Call[CalibrationResult]:
    """``POST /v1/calibration``: ECE and its variants, Brier, tests, reliability bins.

    `options`: ``preset="torchmetrics"``, ``n_bins=15``, ``binning="quantile"``,
    ``target="classwise"``, ``metrics=["ece", "smooth_ece"]``, ``bootstrap={...}``, ...
    """
    fields = fields_of(options, logits=logits, probs=probs, labels=labels)
    return Call("/v1/calibration", fields, result(CalibrationResult))


def reliability_diagram(
    *, logits: Array | None = None, probs: Array | None = None, labels: Array | None = None, **options: Any
) -> Call[str]:
    """``POST /v1/reliability-diagram``: the SVG document (options as :meth:`calibration`)."""
    return Call(
        "/v1/reliability-diagram", fields_of(options, logits=logits, probs=probs, labels=labels), _text
    )


def temperature(
    *,
    logits: Array | None = None,
    probs: Array | None = None,
    labels: Array | None = None,
    targets: Array | None = None,
    **options: Any,
) -> Call[TemperatureResult]:
    """``POST /v1/temperature``: the T minimising the NLL of softmax(logits / T), exactly."""
    fields = fields_of(options, logits=logits, probs=probs, labels=labels, targets=targets)
    return Call("/v1/temperature", fields, result(TemperatureResult))


def recalibrate(
    method: str,
    *,
    logits: Array | None = None,
    probs: Array | None = None,
    labels: Array | None = None,
    targets: Array | None = None,
    **options: Any,
) -> Call[RecalibrateResult]:
    """``POST /v1/recalibrate``: fit `method` (vector, matrix, platt, beta, isotonic, histogram, ...)."""
    fields = fields_of(
        {"method": method, **options}, logits=logits, probs=probs, labels=labels, targets=targets
    )
    return Call("/v1/recalibrate", fields, result(RecalibrateResult))


def apply(
    parameters: Any = None,
    *,
    temperature: float | None = None,
    logits: Array | None = None,
    probs: Array | None = None,
    labels: Array | None = None,
    targets: Array | None = None,
    **options: Any,
) -> Call[ApplyResult]:
    """``POST /v1/apply``: recalibrate predictions with a fit's `parameters` (or a bare `temperature`).

    `parameters` is the ``parameters`` of a :meth:`temperature` or :meth:`recalibrate`
    result, as the model or its JSON. Send `labels` or `targets` to have the output scored.
    """
    options = {"parameters": parameters, "temperature": temperature, **options}
    fields = fields_of(options, logits=logits, probs=probs, labels=labels, targets=targets)
    return Call("/v1/apply", fields, result(ApplyResult))


class Endpoints:
    """Every endpoint, once: the methods of both clients (each client supplies ``_call``)."""

    cross_entropy = Endpoint(cross_entropy)
    divergence = Endpoint(divergence)
    calibration = Endpoint(calibration)
    reliability_diagram = Endpoint(reliability_diagram)
    temperature = Endpoint(temperature)
    recalibrate = Endpoint(recalibrate)
    apply = Endpoint(apply)
