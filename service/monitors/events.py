"""KServe's inference logger as a monitor source: its CloudEvents, read into a batch of predictions.

KServe's logger (``pkg/logger/worker.go`` and ``handler.go`` in github.com/kserve/kserve) posts each
inference request and response as a CloudEvent 1.0 in *binary* mode: ``ce-id`` (the request's
``Ce-Id`` header, else a fresh UUID; the request and its response share it), ``ce-type``
``org.kubeflow.serving.inference.request`` or ``.response``, ``ce-source``, ``ce-specversion: 1.0``,
``ce-time`` (when the logger saw the request / response), the extensions ``ce-inferenceservicename``,
``ce-namespace``, ``ce-component``, ``ce-endpoint``, ``ce-metadata``, ``ce-recordedtime``, and the
body as ``Content-Type`` (the inference request's content type, JSON). Structured mode
(``application/cloudevents+json``: attributes and ``data`` in one JSON object) is read too.

A monitor needs only the response: the predictions. A request event is checked (its attributes, and
in structured mode a `data` that is a JSON object, as a response's is) and acknowledged,
never stored; labels arrive later by id (``ce-id`` for a one-row response, ``<ce-id>:<row>`` for
row ``row`` of a larger one), so no request/response pairing state is kept.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from service.core import Distribution, InputError, check_logits, check_probabilities
from service.store import MonitorConfig

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
TYPES = (REQUEST, RESPONSE)
REQUIRED = ("id", "type", "source", "specversion")
#: Extensions KServe's logger sets (CloudEvents lower-cases them).
KSERVE_EXTENSIONS = ("inferenceservicename", "namespace", "component", "endpoint")
#: OIP datatypes a prediction tensor may have, and the NumPy dtype its JSON data is read as.
DATATYPES = {
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "INT8": np.float64,
    "INT16": np.float64,
    "INT32": np.float64,
    "INT64": np.float64,
    "UINT8": np.float64,
    "UINT16": np.float64,
    "UINT32": np.float64,
    "UINT64": np.float64,
}
#: Row-sum tolerance of V1 probabilities (JSON numbers, usually printed from float32 models).
V1_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Event:
    """A CloudEvent's attributes (``extensions`` included) and its data, parsed as JSON."""

    id: str
    type: str
    time: float | None
    extensions: dict[str, str]
    data: Any


def _header_field(attribute: str, structured: bool) -> str:
    return attribute if structured else f"ce-{attribute}"


def _parse_time(value: object, field: str) -> float:
    if not isinstance(value, str):
        raise InputError(field, f"must be an RFC 3339 time; got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(field, f"must be an RFC 3339 time; got {value!r}") from None
    if parsed.tzinfo is None:
        raise InputError(field, f"must carry a time zone (RFC 3339); got {value!r}")
    return parsed.timestamp()


def read_event(headers: Mapping[str, str], body: Any, media: str) -> Event:
    """The event of a binary-mode (``ce-*`` headers) or structured-mode request.

    `headers` lower-cased; `body` the request's JSON, already parsed (the HTTP layer reads it,
    duplicate keys and all; None for an empty body); `media` the Content-Type without parameters.
    """
    structured = media == "application/cloudevents+json"
    envelope: Any = None
    if structured:
        envelope = body
        if not isinstance(envelope, dict):
            raise InputError("body", "must be a JSON object (a structured CloudEvent)")
        if "data" in envelope and "data_base64" in envelope:
            raise InputError("data_base64", "must not be sent with `data` (CloudEvents: one or the other)")
        # attribute names are lower-case (CloudEvents 1.0): a member `ID` is an extension, not the id
        attributes = {k: v for k, v in envelope.items() if k not in ("data", "data_base64")}
    else:
        attributes = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
    for name in REQUIRED:
        value = attributes.get(name)
        if not isinstance(value, str) or not value:
            where = "attribute" if structured else "header"
            raise InputError(_header_field(name, structured), f"is a required CloudEvents {where}")
    if attributes["specversion"] != "1.0":
        raise InputError(
            _header_field("specversion", structured), f'must be "1.0"; got {attributes["specversion"]!r}'
        )
    if attributes["type"] not in TYPES:
        raise InputError(
            _header_field("type", structured), f"must be one of {list(TYPES)}; got {attributes['type']!r}"
        )
    time = attributes.get("time")
    when = None if time is None else _parse_time(time, _header_field("time", structured))
    extensions = {k: str(v) for k, v in attributes.items() if k in KSERVE_EXTENSIONS}
    data = _structured_data(envelope) if structured else body
    if structured and not isinstance(data, dict):  # (binary mode: the body, a JSON object, 400 if not)
        field = "data_base64" if "data_base64" in envelope else "data"
        if field == "data" and "data" not in envelope:
            raise InputError("data", "is required: the inference request or response, a JSON object")
        raise InputError(
            field, f"must be a JSON object (the inference request or response); got {_json_kind(data)}"
        )
    return Event(attributes["id"], attributes["type"], when, extensions, data)


def _json_kind(value: Any) -> str:
    """The JSON type of `value`, as a refusal names it."""
    names = {list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")


def _structured_data(envelope: dict[str, Any]) -> Any:
    if "data_base64" in envelope:
        import base64
        import binascii

        try:
            raw = base64.b64decode(envelope["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InputError("data_base64", "must be base64") from None
        return _json(raw, "data_base64")
    data = envelope.get("data")
    if isinstance(data, str):  # JSON sent as a string (datacontenttype application/json)
        return _json(data.encode(), "data")
    return data


def _json(raw: bytes, field: str) -> Any:
    """JSON nested in a structured event's `data` / `data_base64` (a field of the request: 422)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InputError(field, f"must be JSON (an inference request or response): {error}") from None


def predictions(data: Any, config: MonitorConfig) -> tuple[Distribution, str]:
    """The predictions of a V1 (``predictions``) or V2 / OIP (``outputs``) response, and their field.

    V2: the tensor named by the monitor's ``output`` (or the only one); V1: ``predictions``.
    Read as the monitor's ``output_kind`` (default ``probs``).
    """
    if not isinstance(data, dict):
        raise InputError("data", "must be a JSON object with `predictions` (V1) or `outputs` (V2)")
    kind = config.output_kind or "probs"
    if "outputs" in data:
        values, field, dtype = _v2_tensor(data["outputs"], config)
    elif "predictions" in data:
        field, dtype = "predictions", np.float64
        values = _numbers(data["predictions"], field, dtype)
        if config.binary and values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
    else:
        raise InputError("data", "must hold `predictions` (V1) or `outputs` (V2, Open Inference Protocol)")
    want = 1 if config.binary else 2
    if values.ndim != want or values.shape[0] == 0 or (want == 2 and values.shape[1] != config.n_classes):
        shape = "N (one positive-class value per row)" if config.binary else f"N×{config.n_classes}"
        raise InputError(
            field, f"must be {shape} for monitor {config.name!r}; got shape {list(values.shape)}"
        )
    try:
        if kind == "logits":
            return Distribution.from_logits(check_logits(values, field=field), validate=False), field
        tolerance = V1_TOLERANCE if dtype is np.float64 else None
        probs = check_probabilities(values, field=field, tolerance=tolerance)
        return Distribution.from_probs(probs, validate=False), field
    except InputError as error:  # events have no `normalize` option; the monitor says how to read them
        reason = error.reason.replace(" (or send normalize: true)", "")
        reason += f" (read as {kind}, the output_kind of monitor {config.name!r})"
        raise InputError(error.field, reason, index=error.index) from None
    except ValueError as error:
        raise InputError(field, str(error)) from None


def _numbers(value: Any, field: str, dtype: Any) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(field, "must be a rectangular array of numbers") from None
    if isinstance(value, list) and _has_bool(value):
        raise InputError(field, "must hold numbers, not booleans")
    with np.errstate(over="ignore"):  # past a narrow datatype's range: ±inf, refused by the checks
        return array.astype(dtype)


def _has_bool(value: list[Any]) -> bool:
    return any(isinstance(v, bool) or (isinstance(v, list) and _has_bool(v)) for v in value)


def _v2_tensor(outputs: Any, config: MonitorConfig) -> tuple[np.ndarray, str, Any]:
    if not isinstance(outputs, list) or not outputs or not all(isinstance(o, dict) for o in outputs):
        raise InputError("outputs", "must be a non-empty list of tensors")
    names = [o.get("name") for o in outputs]
    if config.output is not None:
        if config.output not in names:
            raise InputError(
                "outputs", f"has no tensor named {config.output!r} (the monitor's `output`); got {names}"
            )
        i = names.index(config.output)
    elif len(outputs) == 1:
        i = 0
    else:
        raise InputError(
            "outputs", f"has {len(outputs)} tensors {names}: set the monitor's `output` to one of them"
        )
    tensor, field = outputs[i], f"outputs[{i}]"
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise InputError(
            f"{field}.datatype", f"must be a numeric datatype {sorted(DATATYPES)}; got {datatype!r}"
        )
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise InputError(f"{field}.shape", f"must be a list of non-negative integers; got {shape!r}")
    flat = _numbers(tensor.get("data"), f"{field}.data", DATATYPES[datatype]).reshape(-1)
    if flat.size != math.prod(shape):
        raise InputError(
            f"{field}.data", f"must hold prod(shape {shape}) = {math.prod(shape)} values; got {flat.size}"
        )
    values: np.ndarray = flat.reshape(shape)
    if config.binary and values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    return values, f"{field}.data", DATATYPES[datatype]


def row_ids(event_id: str, n: int) -> list[str]:
    """``[ce-id]`` for one row, else ``ce-id:0`` … ``ce-id:(n-1)``: the ids labels are posted with."""
    return [event_id] if n == 1 else [f"{event_id}:{i}" for i in range(n)]
