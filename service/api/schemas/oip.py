"""Response models of the Open Inference Protocol (KServe v2) routes under ``/v2``."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_CONFIG = ConfigDict(frozen=True)


class ServerMetadata(BaseModel):
    """``GET /v2``."""

    model_config = _CONFIG

    name: str = Field(description='The server: "xent".')
    version: str = Field(description="Xent's version.")
    extensions: list[str] = Field(description="Protocol extensions served.")


class LiveResult(BaseModel):
    """``GET /v2/health/live``."""

    model_config = _CONFIG

    live: bool = Field(description="Always true: the server answers.")


class ReadyResult(BaseModel):
    """``GET /v2/health/ready``."""

    model_config = _CONFIG

    ready: bool = Field(description="True: every model can score (503 problem+json when shutting down).")


class ModelReady(BaseModel):
    """``GET /v2/models/{name}/ready``."""

    model_config = _CONFIG

    name: str = Field(description="The model.")
    ready: bool = Field(description="True: the model can score.")


class MetadataTensor(BaseModel):
    """An input or output of a model: name, datatype, shape (-1: any size)."""

    model_config = _CONFIG

    name: str = Field(description="Inputs: the role (logits, probs, labels, ...). Outputs: the result field.")
    datatype: str = Field(description="The datatype sent or answered (inputs accept others: see parameters).")
    shape: list[int] = Field(description="-1 for a dimension of any size.")
    parameters: dict[str, Any] | None = Field(
        default=None,
        description="Inputs: role, rule (required, optional, exactly one of ...), datatypes and shapes "
        "accepted. Per-sample outputs: the option that turns them on.",
    )


class ModelMetadata(BaseModel):
    """``GET /v2/models/{name}``."""

    model_config = _CONFIG

    name: str = Field(description="The model: a scoring endpoint of /v1.")
    versions: list[str] = Field(description='The one version, "1".')
    platform: str = Field(description='"xent".')
    inputs: list[MetadataTensor] = Field(description="Tensors the model takes, by role.")
    outputs: list[MetadataTensor] = Field(description="Tensors the model answers (those of its example).")
    parameters: dict[str, str] = Field(description="The /v1 endpoint, its options, how outputs are named.")


class OutputTensor(BaseModel):
    """One output tensor of an inference response."""

    name: str = Field(description="The /v1 result's field, dotted for nested ones (mean.kl_pq).")
    datatype: str = Field(description="FP64, FP32, INT64, BOOL or BYTES.")
    shape: list[int] = Field(description="[1] for a scalar, [N] or [N, K] for arrays.")
    data: list[Any] | None = Field(default=None, description="Row-major values (absent when binary).")
    parameters: dict[str, Any] | None = Field(
        default=None, description="Binary outputs: `binary_data_size`, the bytes after the JSON."
    )


class InferenceResponse(BaseModel):
    """An OIP inference response."""

    model_name: str = Field(description="The model that answered.")
    model_version: str = Field(description='"1".')
    id: str | None = Field(default=None, description="The request's `id`, echoed.")
    parameters: dict[str, Any] | None = Field(
        default=None, description="The convention used (the /v1 result's `convention`), field by field."
    )
    outputs: list[OutputTensor] = Field(description="The result's fields as tensors.")
