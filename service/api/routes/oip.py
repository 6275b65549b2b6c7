"""Xent as an Open Inference Protocol (KServe v2) server: every scoring endpoint is a model.

``POST /v2/models/cross-entropy/infer`` takes the inference request /v1/cross-entropy takes
(tensors in ``inputs``, named by role; options in ``parameters``; JSON or the binary tensor
extension) and answers OIP ``outputs``: the /v1 result's fields as tensors
(:mod:`service.api.formats.oip`). Server and model metadata, health and readiness follow the
protocol, so Triton's and KServe's clients call Xent unchanged.
"""

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from service import __version__
from service.api.deps import INLINE_BYTES, scoring
from service.api.errors.problems import ProblemError
from service.api.formats.arrays import ArrayReader
from service.api.formats.inputs import Body
from service.api.formats.oip import convention_parameters, infer_response, output_tensors, select
from service.api.formats.oip_body import InferBody, infer_parser, read_infer_body
from service.api.openapi.examples import V1, inference_request
from service.api.openapi.inference import marker
from service.api.schemas.calibration import CalibrationOptions
from service.api.schemas.common import ProbabilityOptions
from service.api.schemas.cross_entropy import CrossEntropyOptions
from service.api.schemas.divergence import DivergenceOptions
from service.api.schemas.envelope import InferenceRequest
from service.api.schemas.oip import (
    InferenceResponse,
    LiveResult,
    MetadataTensor,
    ModelMetadata,
    ModelReady,
    ReadyResult,
    ServerMetadata,
)
from service.api.schemas.recalibration import ApplyOptions, RecalibrateOptions, TemperatureOptions

from . import PROBLEM_RESPONSES, REQUEST_MODELS, Answer, calibration, cross_entropy, divergence, recalibration

router = APIRouter(tags=["open inference protocol"])

VERSION = "1"  # every model answers as its /v1 endpoint does
EXTENSIONS = ["binary_tensor_data", "parameters"]
_FLOAT_TYPES = "BF16, FP16, FP32, FP64 (or any integer type)"
_INT_TYPES = "INT8 … INT64, UINT8 … UINT64"


@dataclass(frozen=True)
class Model:
    """A scoring endpoint served as a model."""

    name: str
    answer: Callable[[Body], Answer]
    roles: tuple[str, ...]
    options: type[ProbabilityOptions]
    #: Output name (or dotted prefix) -> the option that makes the answer hold it.
    switches: dict[str, str]
    required: tuple[tuple[str, ...], ...]  # groups of roles: exactly one of each
    linear: bool  # cost linear in the input: small bodies are scored on the event loop


MODELS = {
    model.name: model
    for model in (
        Model("cross-entropy", cross_entropy.cross_entropy_answer, cross_entropy.ARRAY_FIELDS,
              CrossEntropyOptions, {"losses": "per_sample"}, (("logits", "probs"), ("labels", "targets")),
              linear=True),
        Model("divergence", divergence.divergence_answer, divergence.ARRAY_FIELDS, DivergenceOptions,
              {"per_sample": "per_sample"}, (("p_probs", "p_logits"), ("q_probs", "q_logits")), linear=True),
        Model("calibration", calibration.calibration_answer, calibration.ARRAY_FIELDS, CalibrationOptions,
              {}, (("logits", "probs"), ("labels", "targets")), linear=False),
        Model("temperature", recalibration.temperature_answer, recalibration.TEMPERATURE_FIELDS,
              TemperatureOptions, {"probs": "return_probs"}, (("logits", "probs"), ("labels", "targets")),
              linear=False),
        Model("recalibrate", recalibration.recalibrate_answer, recalibration.ARRAY_FIELDS,
              RecalibrateOptions, {"probs": "return_probs"},
              (("logits", "probs", "scores"), ("labels", "targets")), linear=False),
        Model("apply", recalibration.apply_answer, recalibration.ARRAY_FIELDS, ApplyOptions, {},
              (("logits", "probs", "scores"),), linear=True),
    )
}  # fmt: skip
MODEL_NAMES = ", ".join(MODELS)


def example_request(name: str) -> dict[str, Any]:
    """The OpenAPI example of model `name`: /v1's example as an inference request."""
    return inference_request(V1[name], MODELS[name].roles)


def infer(model: Model, body: Body) -> Response:
    """Score an inference request with `model` and answer its outputs."""
    assert isinstance(body, InferBody)
    names = [output["name"] for output in body.outputs or ()]
    for prefix, option in model.switches.items():
        if option not in body.fields and any(n == prefix or n.startswith(prefix + ".") for n in names):
            body.fields[option] = True  # asked for a per-sample output: compute it
    answer = model.answer(body)
    result = answer.document()
    header: dict[str, Any] = {"model_name": model.name, "model_version": VERSION}
    if body.request_id is not None:
        header["id"] = body.request_id
    parameters = convention_parameters(result.pop("convention", None))
    if parameters:
        header["parameters"] = parameters
    tensors = output_tensors(result, answer.arrays)
    return infer_response(header, select(tensors, body.outputs, body.binary_output))


def _role_parameters(model: Model, role: str) -> dict[str, Any]:
    group = next((g for g in model.required if role in g), None)
    if group is None:
        rule = "optional"
    elif len(group) == 1:
        rule = "required"
    else:
        rule = "exactly one of " + ", ".join(group)
    integer = role == "labels"
    return {
        "role": role,
        "rule": rule,
        "datatypes": _INT_TYPES if integer else _FLOAT_TYPES,
        "shapes": {"labels": "[N]", "class_weights": "[K]"}.get(
            role, "[N, K] or [N] (binary: positive class)"
        ),
    }


@functools.cache
def model_metadata(name: str) -> ModelMetadata:
    """Model `name`'s metadata; its outputs are those of its example with every per-sample output on."""
    model = MODELS[name]
    inputs = [
        MetadataTensor(
            name=role,
            datatype="INT64" if role == "labels" else "FP32",
            shape=[-1] if role in ("labels", "class_weights") else [-1, -1],
            parameters=_role_parameters(model, role),
        )
        for role in model.roles
    ]
    fields = {**V1[name], **dict.fromkeys(model.switches.values(), True)}
    answer = model.answer(Body(fields, ArrayReader(10**6, may_hold_booleans=False)))
    result = answer.document()
    result.pop("convention", None)
    outputs = [
        MetadataTensor(
            name=out,
            datatype=_datatype(tensor.dtype.name),
            shape=[1] if out not in answer.arrays and tensor.shape == (1,) else [-1] * tensor.ndim,
            parameters=_per_sample(model, out) if out in answer.arrays else None,
        )
        for out, tensor in output_tensors(result, answer.arrays).items()
    ]
    options = ", ".join(field for field in model.options.model_fields if field != "binary_data_output")
    return ModelMetadata(
        name=name,
        versions=[VERSION],
        platform="xent",
        inputs=inputs,
        outputs=outputs,
        parameters={
            "endpoint": f"/v1/{name}",
            "options": options,
            "outputs": "the /v1 result's fields, dotted; per-sample outputs in the predictions' dtype; "
            "the outputs listed are those of the example request, others depend on the options",
        },
    )


def _datatype(dtype: str) -> str:
    return {"float64": "FP64", "float32": "FP32", "int64": "INT64", "bool": "BOOL", "object": "BYTES"}[dtype]


def _per_sample(model: Model, output: str) -> dict[str, Any]:
    switch = model.switches.get(output.split(".")[0])
    return {"per_sample": True, "option": switch or "always answered"}


@router.get("/v2", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    """OIP server metadata: name, version and the protocol extensions served."""
    return ServerMetadata(name="xent", version=__version__, extensions=EXTENSIONS)


@router.get("/v2/health/live", response_model=LiveResult)
async def server_live() -> LiveResult:
    """OIP liveness: the server answers HTTP (as /healthz)."""
    return LiveResult(live=True)


_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Shutting down: take this instance out of rotation.",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
    }
}


@router.get("/v2/health/ready", response_model=ReadyResult, responses=_NOT_READY)
async def server_ready(request: Request) -> ReadyResult:
    """OIP readiness: every model can score; 503 once the server is shutting down (as /readyz)."""
    _check_not_draining(request)
    return ReadyResult(ready=True)


def _check_not_draining(request: Request) -> None:
    if request.app.state.gate.draining:
        raise ProblemError(503, "shutting down", headers={"Retry-After": "1"})


def _add_model_routes(model: Model) -> None:
    slug = model.name.replace("-", "_")

    async def metadata() -> ModelMetadata:
        return model_metadata(model.name)

    async def ready(request: Request) -> ModelReady:
        _check_not_draining(request)
        return ModelReady(name=model.name, ready=True)

    def score(body: Body) -> Response:
        return infer(model, body)

    score.__name__ = score.__qualname__ = f"{slug}_infer"
    score.__doc__ = _infer_description(model)
    endpoint = scoring(
        inline_bytes=INLINE_BYTES if model.linear else 0,
        read=read_infer_body,
        parse=infer_parser(model.roles),
    )(score)
    router.add_api_route(
        f"/v2/models/{model.name}", metadata, methods=["GET"], name=f"{slug}_metadata",
        response_model=ModelMetadata, response_model_exclude_none=True,
        description=f"OIP model metadata of `{model.name}` (/v1/{model.name}).",
    )  # fmt: skip
    router.add_api_route(
        f"/v2/models/{model.name}/ready", ready, methods=["GET"], name=f"{slug}_ready",
        response_model=ModelReady, responses=_NOT_READY, description=f"OIP readiness of `{model.name}`.",
    )  # fmt: skip
    router.add_api_route(
        f"/v2/models/{model.name}/infer", endpoint, methods=["POST"], name=f"{slug}_infer",
        response_model=InferenceResponse, responses={**_BINARY_RESPONSE, **PROBLEM_RESPONSES},
        description=_infer_description(model), openapi_extra=_infer_body(model),
    )  # fmt: skip
    _ENDPOINTS[model.name] = endpoint


_ENDPOINTS: dict[str, Callable[[Request], Awaitable[Response]]] = {}
_BINARY_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The OIP inference response. Outputs asked binary (`binary_data_output`, or an "
        "output's `parameters.binary_data`) make it `application/octet-stream`: the JSON response of "
        "`Inference-Header-Content-Length` bytes, then each binary output's raw bytes in order.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _infer_description(model: Model) -> str:
    groups = "; ".join(
        f"exactly one of {', '.join(f'`{r}`' for r in g)}" if len(g) > 1 else f"`{g[0]}`"
        for g in model.required
    )
    return (
        f"Score an OIP inference request as POST /v1/{model.name} does. Inputs: {groups} "
        f"(name each input by its role, or set `parameters.role`). Options go in `parameters`; an "
        "object or list option may be sent as its JSON text. The answer's `outputs` are the /v1 "
        "result's fields (dotted names), its `parameters` the convention used."
    )


def _infer_body(model: Model) -> dict[str, Any]:
    """``openapi_extra`` of a model's infer route: an inference request, JSON or binary extension."""
    if InferenceRequest not in REQUEST_MODELS:
        REQUEST_MODELS.append(InferenceRequest)
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "requestBody": {
            "required": True,
            "description": "An OIP inference request. With an `Inference-Header-Content-Length` header, "
            "the binary tensor extension (unless the body is labelled `application/json`): that many "
            "bytes of JSON request, "
            "then each binary input's raw little-endian bytes (`parameters.binary_data_size`; BF16 as "
            "16-bit words).",
            "content": {
                "application/json": {
                    "schema": marker(model.options.__name__.replace("Options", "Body"), model.roles),
                    "example": example_request(model.name),
                },
                "application/octet-stream": binary,
            },
        }
    }


def _register() -> None:
    for model in MODELS.values():
        _add_model_routes(model)


_register()


# Versioned paths (tritonclient with model_version="1") and unknown models: answered, not documented.
@router.api_route("/v2/models/{name}/versions/{version}/infer", methods=["POST"], include_in_schema=False)
async def versioned_infer(request: Request, name: str, version: str) -> Response:
    """Inference at an explicit version: the one version, "1", of a served model."""
    return await _ENDPOINTS[_served(name, version)](request)


@router.get("/v2/models/{name}/versions/{version}", include_in_schema=False, response_model_exclude_none=True)
async def versioned_metadata(name: str, version: str) -> ModelMetadata:
    """Model metadata at an explicit version."""
    return model_metadata(_served(name, version))


@router.get("/v2/models/{name}/versions/{version}/ready", include_in_schema=False)
async def versioned_ready(request: Request, name: str, version: str) -> ModelReady:
    """Readiness at an explicit version."""
    _check_not_draining(request)
    return ModelReady(name=_served(name, version), ready=True)


@router.api_route("/v2/models/{name}", methods=["GET"], include_in_schema=False)
@router.api_route("/v2/models/{name}/ready", methods=["GET"], include_in_schema=False)
@router.api_route("/v2/models/{name}/infer", methods=["POST"], include_in_schema=False)
async def unknown_model(name: str) -> Response:
    """404 naming the models served."""
    _served(name)
    raise AssertionError("unreachable: served models have routes of their own")


def _served(name: str, version: str = VERSION) -> str:
    if name not in MODELS:
        raise ProblemError(404, f"model {name!r} is not served; the models are {MODEL_NAMES}")
    if version != VERSION:
        raise ProblemError(404, f"model {name!r} has version {VERSION!r} only; got {version!r}")
    return name
