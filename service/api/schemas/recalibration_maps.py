"""The recalibration maps' parameters, as /v1/recalibrate answers them and /v1/apply takes them.

One model per map (discriminated by ``method``), closed and frozen; ``method`` listed as required.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, WithJsonSchema

#: A temperature as a request sends it: T ≥ 0, or "Infinity" (validated where it is used).
Temperature = Annotated[
    float, WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"const": "Infinity"}]})
]


def _method_required(schema: dict[str, Any]) -> None:
    """List `method` as required: the service reads it first to pick the map (answers always carry it)."""
    schema["required"] = ["method", *(name for name in schema.get("required", []) if name != "method")]


_PARAMETERS_CONFIG = ConfigDict(
    extra="forbid", frozen=True, ser_json_inf_nan="strings", json_schema_extra=_method_required
)


class TemperatureParameters(BaseModel):
    """Temperature scaling: ``softmax(z / T)`` (binary: ``σ(z / T)``); probabilities are logged first."""

    model_config = _PARAMETERS_CONFIG

    method: Literal["temperature"] = "temperature"
    temperature: Temperature = Field(
        description='T ≥ 0. "Infinity" gives uniform predictions; 0 the arg-max limit (uniform over ties).'
    )


class VectorParameters(BaseModel):
    """Vector scaling (Guo et al. 2017): ``softmax(scale ⊙ z + bias)``."""

    model_config = _PARAMETERS_CONFIG

    method: Literal["vector"]
    scale: list[FiniteFloat] = Field(min_length=2, description="K per-class multipliers of the logits.")
    bias: list[FiniteFloat] = Field(min_length=2, description="K per-class offsets.")


class MatrixParameters(BaseModel):
    """Matrix scaling (Guo et al. 2017; Kull et al. 2019): ``softmax(z Wᵀ + bias)``."""

    model_config = _PARAMETERS_CONFIG

    method: Literal["matrix"]
    weights: list[list[FiniteFloat]] = Field(min_length=2, description="K×K matrix W (row c gives class c).")
    bias: list[FiniteFloat] = Field(min_length=2, description="K offsets.")


class PlattParameters(BaseModel):
    """Platt scaling: ``σ(a·s + b)``, s the positive-class logit (sklearn's A = −a, B = −b)."""

    model_config = _PARAMETERS_CONFIG

    method: Literal["platt"]
    a: FiniteFloat = Field(description="Slope on the logit.")
    b: FiniteFloat = Field(description="Intercept.")


class BetaParameters(BaseModel):
    """Beta calibration (Kull et al. 2017): ``σ(c + a·ln q − b·ln(1 − q))``, q = P(positive)."""

    model_config = _PARAMETERS_CONFIG

    method: Literal["beta"]
    a: Annotated[FiniteFloat, Field(ge=0)] = Field(description="Weight of ln q (≥ 0).")
    b: Annotated[FiniteFloat, Field(ge=0)] = Field(description="Weight of −ln(1 − q) (≥ 0).")
    c: FiniteFloat = Field(description="Intercept.")


class Knots(BaseModel):
    """A non-decreasing piecewise-linear map through (x, y); constant beyond the end knots."""

    # closed and frozen as the maps, but no `method` of its own (the isotonic map's says what it is)
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")

    x: list[FiniteFloat] = Field(min_length=1, description="Probabilities, non-decreasing.")
    y: list[Annotated[FiniteFloat, Field(ge=0, le=1)]] = Field(
        min_length=1, description="Mapped probabilities, as many as x."
    )


class IsotonicParameters(BaseModel):
    """Isotonic regression: one knot set for the positive class (binary) or per class (one-vs-rest)."""

    model_config = _PARAMETERS_CONFIG

    method: Literal["isotonic"]
    knots: list[Knots] = Field(
        min_length=1, description="Binary: one set, mapping q. K > 2: K sets; rows are then renormalised."
    )
    input: Literal["probs", "scores"] = Field(
        default="probs",
        description="What x is: probs, the softmax/sigmoid probability of logits or probs; scores, the raw "
        "`scores` as sent (fitted on them, applied to `scores` only).",
    )


class HistogramParameters(BaseModel):
    """Histogram binning: p in (edges[b], edges[b+1]] (0 in the first bin) maps to values[c][b]."""

    model_config = _PARAMETERS_CONFIG

    method: Literal["histogram"]
    edges: list[FiniteFloat] = Field(min_length=2, description="B + 1 increasing edges from 0 to 1.")
    values: list[list[Annotated[FiniteFloat, Field(ge=0, le=1)]]] = Field(
        min_length=1, description="B values per mapped class: one row (binary) or K rows (renormalised)."
    )


class SigmoidParameters(BaseModel):
    """sklearn's sigmoid on raw scores: P(class k) ∝ σ(a_k·s_k + b_k), one-vs-rest (A = −a, B = −b)."""

    model_config = _PARAMETERS_CONFIG

    method: Literal["sigmoid"]
    a: list[FiniteFloat] = Field(min_length=1, description="Slopes: one (binary) or K (one-vs-rest).")
    b: list[FiniteFloat] = Field(min_length=1, description="Intercepts, as many as a.")


Parameters = Annotated[
    TemperatureParameters
    | VectorParameters
    | MatrixParameters
    | PlattParameters
    | BetaParameters
    | IsotonicParameters
    | HistogramParameters
    | SigmoidParameters,
    Field(discriminator="method"),
]
Method = Literal["temperature", "vector", "matrix", "platt", "beta", "isotonic", "histogram", "sigmoid"]
