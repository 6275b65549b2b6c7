"""All routers of the service, and helpers shared by routes."""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from service import core
from service.api.formats.answers import BytesResponse, Document, document_of, json_bytes
from service.api.formats.outputs import put_output
from service.api.openapi.inference import marker
from service.api.schemas import ProblemDetails
from service.api.schemas.envelope import InferenceRequest
from service.core import dtype_name

#: Models published by reference (request bodies, and the problem document); the app adds them
#: to components/schemas.
REQUEST_MODELS: list[type[BaseModel]] = [ProblemDetails]

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": text,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
    }
    for status, text in {
        400: "Malformed JSON body.",
        401: "API keys are configured and none valid was sent (`WWW-Authenticate: Bearer`).",
        413: "Body or element count over the configured limit.",
        415: "Unsupported Content-Type.",
        422: "A field is missing, unknown, or has the wrong shape or values.",
        503: "Too many requests in flight, compute deadline passed, or shutting down; see `Retry-After`.",
    }.items()
}


def request_body(model: type[BaseModel], roles: tuple[str, ...]) -> dict[str, Any]:
    """``openapi_extra`` publishing `model` as the JSON request body (parsed by orjson, not FastAPI).

    Or an OIP inference request whose inputs fill `roles` (narrowed by
    :mod:`service.api.openapi.inference`).
    """
    for published in (model, InferenceRequest):
        if published not in REQUEST_MODELS:
            REQUEST_MODELS.append(published)
    json_schema = {
        "oneOf": [
            {"$ref": f"#/components/schemas/{model.__name__}"},
            marker(model.__name__, roles),
        ]
    }
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "requestBody": {
            "required": True,
            "description": "JSON fields, or the same as an Open Inference Protocol inference request "
            "(tensors in `inputs` with `parameters.role`, options in `parameters`). "
            "`application/octet-stream`: the OIP binary tensor extension (a JSON inference-request "
            "header of `Inference-Header-Content-Length` bytes, then each input's raw little-endian "
            "bytes, sized by `parameters.binary_data_size`). `application/x-npz`: an `np.savez` archive "
            "with one array per field and an optional `parameters` string holding the options as JSON.",
            "content": {
                "application/json": {"schema": json_schema},
                "application/octet-stream": binary,
                "application/x-npz": binary,
            },
        }
    }


def json_response(result: BaseModel | Document) -> Response:
    """`result` as JSON: a model serialised in Rust, a plain dict by orjson (:mod:`..formats.answers`).

    Non-finite floats are "Infinity"/"-Infinity"/"NaN" (a dict carries them so, :func:`json_float`).
    """
    return BytesResponse(json_bytes(result))


#: The 200 response of routes that can answer with the OIP binary tensor extension.
BINARY_OUTPUT_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The result as JSON; with `binary_data_output: true`, an "
        "`application/octet-stream` body instead: the JSON result (per-sample arrays moved to an OIP "
        "`outputs` list with `parameters.binary_data_size`) of `Inference-Header-Content-Length` bytes, "
        "then each output's raw little-endian bytes in order.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_OIP_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32"}


def respond(result: BaseModel | Document, arrays: dict[str, np.ndarray], *, binary: bool) -> Response:
    """`result` with its per-sample `arrays`: inline JSON lists, or binary tensors after a JSON header.

    A dotted name (``per_sample.kl_pq``) puts its array in a nested object of the JSON answer,
    and names the binary output the same way.
    """
    if not arrays:
        return json_response(result)
    if not binary:
        return _json_with_arrays(result, arrays)
    header = document_of(result)
    header["outputs"] = [
        {
            "name": name,
            "shape": list(a.shape),
            "datatype": _OIP_DATATYPES[dtype_name(a.dtype)],
            "parameters": {"binary_data_size": a.nbytes},
        }
        for name, a in arrays.items()
    ]
    head = orjson.dumps(header)
    payload = b"".join(
        np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes() for a in arrays.values()
    )
    return BytesResponse(
        head + payload,
        b"application/octet-stream",
        [(b"inference-header-content-length", str(len(head)).encode())],
    )


def _json_with_arrays(result: BaseModel | Document, arrays: dict[str, np.ndarray]) -> Response:
    """`result` as JSON with its per-sample `arrays` in place, serialised by orjson from their buffers.

    ``ndarray.tolist()`` made a Python float per value for Pydantic to print (1M float32 losses:
    136 ms; orjson from the buffer 31 ms, ``python -m benchmarks.replaced``). Arrays are printed
    as float64, so the text is byte for byte what the Pydantic path gives (a float32 value
    prints as the double it is). An array with non-finite values, which orjson would write as
    null, goes as a list with "Infinity"/"-Infinity"/"NaN" strings in their places, as the
    result models write them.
    """
    body = document_of(result)  # small: the scalars and the convention
    for name, a in arrays.items():
        finite = np.isfinite(a)
        put_output(
            body,
            name,
            np.ascontiguousarray(a, dtype=np.float64)  # the fields are floats: 2 prints as 2.0
            if finite.all()
            else _with_non_finite_strings(a.astype(np.float64).tolist(), a, finite),
        )
    return BytesResponse(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))


def _with_non_finite_strings(values: list[Any], a: np.ndarray, finite: np.ndarray) -> list[Any]:
    """`values` (``a.tolist()``) with each non-finite entry replaced by its JSON string form."""
    for index in np.argwhere(~finite):
        *outer, last = index.tolist()
        row = values
        for i in outer:
            row = row[i]
        value = row[last]
        row[last] = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return values


@dataclass(frozen=True)
class Answer:
    """A scoring result before it is written: the result and its per-sample arrays.

    The result is a model, or its JSON document as a plain dict in the model's field order
    (:mod:`service.api.formats.answers`). /v1 writes it with :func:`respond`; /v2 (the Open
    Inference Protocol) maps it to output tensors.
    """

    result: BaseModel | Document
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    binary: bool = False

    def response(self) -> Response:
        """The /v1 answer: JSON, or the binary tensor extension when asked and there are arrays."""
        return respond(self.result, self.arrays, binary=self.binary)

    def document(self) -> Document:
        """The result's JSON document (without the per-sample arrays): a fresh dict the caller may change."""
        return document_of(self.result)


def unit_of(base: Any) -> str:
    """The unit name of a log base ("log base 3" for one without a name)."""
    named = {"e": "nats", 2: "bits", 10: "hartleys"}
    if base in named:
        return named[base]
    return f"log base {base:g}"


def log_base(base: Any) -> float:
    """The numeric value of a log base option."""
    return math.e if base == "e" else float(base)


def routers() -> list[APIRouter]:
    """The service's routers: /v1 scoring endpoints and health probes, in document order.

    The app includes each one itself: FastAPI resolves included routers per request, so
    a router of routers would cost every request one more level of matching.
    """
    from . import (
        calibration,
        cross_entropy,
        dashboard,
        divergence,
        health,
        logprobs,
        metrics,
        monitor_events,
        monitor_queries,
        monitor_sequences,
        monitors,
        oip,
        recalibration,
        reliability_diagram,
    )

    modules = (
        cross_entropy,
        divergence,
        recalibration,
        calibration,
        reliability_diagram,
        monitors,
        monitor_events,
        monitor_queries,
        monitor_sequences,
        logprobs,
        oip,
        health,
        metrics,
        dashboard,
    )
    return [module.router for module in modules]


def top_k_result(
    ks: list[int] | None,
    labels: np.ndarray,
    dist: core.Distribution,
    kept: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> dict[str, float] | None:
    """Top-k accuracy by k (string keys) over the `kept` rows, for the options' `top_k`; None if not asked."""
    if ks is None:
        return None
    scores = dist.logits if dist.logits is not None and not dist.binary else dist.probs
    if kept is not None:
        scores, labels = scores[kept], labels[kept]
        sample_weight = None if sample_weight is None else sample_weight[kept]
    values = core.top_k_accuracy(core.label_rank(labels, scores), ks, sample_weight=sample_weight)
    return {str(k): float(v) for k, v in zip(ks, values, strict=True)}
