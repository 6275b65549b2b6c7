"""The Open Inference Protocol (KServe v2) inference-request shape, accepted by every scoring route."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from .common import Datatype

_Row = Annotated[list[float], Field(min_length=1)]


class InferenceInputParameters(BaseModel):
    """Per-input parameters."""

    model_config = ConfigDict(extra="allow")

    role: str | None = Field(
        default=None,
        description="Which field of the endpoint this tensor fills (logits, probs, labels, targets, "
        "p_probs, ...). Defaults to the input's `name`.",
    )
    binary_data_size: int | None = Field(
        default=None,
        ge=0,
        description="Binary tensor extension: the tensor's bytes follow the JSON header "
        "(little-endian, row-major), in input order; must equal prod(shape) × itemsize.",
    )


class InferenceInput(BaseModel):
    """One input tensor, as an inference server's `outputs` entry holds it."""

    name: str = Field(description="Tensor name; used as the role when `parameters.role` is absent.")
    shape: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1, max_length=3, description="[N], [N, K], or [B, T, K] (token sequences)."
    )
    datatype: Datatype = Field(description="Element type.")
    data: Annotated[list[float], Field(min_length=1)] | Annotated[list[_Row], Field(min_length=1)] | None = (
        Field(default=None, description="Row-major values, flat or nested; absent for binary inputs.")
    )
    parameters: InferenceInputParameters | None = None


class OutputParameters(BaseModel):
    """A requested output's parameters."""

    model_config = ConfigDict(extra="allow")

    binary_data: bool | None = Field(default=None, description="Return this output as raw bytes.")


class RequestedOutput(BaseModel):
    """An output asked for by name (OIP), with its parameters (``binary_data``)."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="The output's name.")
    parameters: OutputParameters | None = None


class InferenceRequest(BaseModel):
    """An OIP inference request: tensors in `inputs`, the endpoint's options in `parameters`."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, description="Ignored.")
    inputs: list[InferenceInput] = Field(min_length=1, description="The arrays, one tensor each.")
    outputs: list[RequestedOutput] | None = Field(
        default=None, description="The outputs to return (default all); on /v1 ignored."
    )
    parameters: dict[str, Any] | None = Field(
        default=None, description="The endpoint's scalar options (eps, base, reduction, ...)."
    )
