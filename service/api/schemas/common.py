"""Models shared by every endpoint: tensors, array fields, common options, problems."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, WithJsonSchema

#: A float that may be infinite or NaN: JSON has no such numbers, so these are sent as the
#: strings "Infinity", "-Infinity" and "NaN" (the proto3 JSON mapping's convention).
JsonFloat = Annotated[
    float,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {"type": "string", "enum": ["Infinity", "-Infinity", "NaN"]},
            ]
        }
    ),
]

RESULT_CONFIG = ConfigDict(frozen=True, ser_json_inf_nan="strings")
OPTIONS_CONFIG = ConfigDict(extra="forbid")


_Row = Annotated[list[float], Field(min_length=1)]  # an empty batch or row is a 422: say so in the schema

#: The Open Inference Protocol numeric datatypes Xent reads (service.api.formats.arrays.DATATYPES).
Datatype = Literal[
    "BF16", "FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"
]


def whole(value: Any) -> Any:
    """3.0 as 3: JSON Schema's integers include numbers with no fractional part."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: An integer as JSON carries it exactly (int64; larger ones arrive as floats); 3.0 counts as 3.
Int64 = Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1), BeforeValidator(whole)]


class Tensor(BaseModel):
    """An Open Inference Protocol (KServe v2) tensor: shape, datatype and row-major data."""

    model_config = ConfigDict(extra="forbid")

    shape: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1,
        max_length=3,
        description="[N], [N, K], or [B, T, K] for token sequences (/v1/cross-entropy); prod(shape) "
        "must equal len(data).",
    )
    datatype: Datatype = Field(
        description="Element type. FP32 is computed in float32, FP16 and BF16 widened to float32 (BF16 "
        "binary tensors are raw 16-bit words, the top half of a float32, widened a block at a time); "
        "FP64 and integers in float64."
    )
    data: Annotated[list[float], Field(min_length=1)] | Annotated[list[_Row], Field(min_length=1)] = Field(
        description="The values in row-major order, flat or nested as the protocol allows."
    )
    name: str | None = Field(default=None, description="Ignored; allowed so OIP outputs can be forwarded.")
    parameters: dict[str, Any] | None = Field(default=None, description="Ignored.")


FloatArrayField = Annotated[
    Annotated[list[_Row], Field(min_length=1)] | _Row | Tensor,
    Field(description="N×K nested list (categorical) or length-N list (binary), or a tensor object."),
]
IntArrayField = Annotated[
    Annotated[list[int], Field(min_length=1)] | Tensor,
    Field(description="Length-N list of integers, or a tensor object."),
]

Base = Literal["e", 2, 10]
TopK = Annotated[list[Annotated[int, Field(ge=1, le=1_000_000)]], Field(min_length=1, max_length=64)]
TOP_K_DESCRIPTION = (
    "Also report top-k accuracy for each k: the share of samples whose true class is among the k "
    "highest predicted scores, ties going to the lower class as for `accuracy` (k = 1 is `accuracy`; "
    "k ≥ K gives 1, as scikit-learn). torchmetrics MulticlassAccuracy(top_k=k, average='micro'), "
    "sklearn.metrics.top_k_accuracy_score."
)
Eps = Annotated[float, Field(ge=0, lt=1)] | Literal["auto"]


class ProbabilityOptions(BaseModel):
    """How probabilities are checked and logged: shared by every scoring endpoint."""

    model_config = OPTIONS_CONFIG

    eps: Eps = Field(
        default="auto",
        description='Floor applied to probabilities before the log: log(max(p, eps)). "auto" is the '
        "machine epsilon of the computation dtype (2.22e-16 for float64, 1.19e-7 for float32), "
        "as scikit-learn's log_loss (≥1.5) uses; 0 keeps log 0 = -inf, so losses may be "
        '"Infinity". The response counts the values clipped. Logits are never clipped.',
    )
    tolerance: Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None,
        description="Allowed |sum(row) - 1| for probability rows and soft targets. Default by the "
        "dtype sent: 1e-6 for float64 (JSON numbers), 1e-4 for FP32, 1e-2 for FP16.",
    )
    normalize: bool = Field(
        default=False,
        description="Divide each probability row by its sum instead of rejecting rows that do not "
        "sum to 1 (rows must then be non-negative with a positive sum). The response counts them.",
    )
    base: Base = Field(
        default="e", description='Logarithm base: "e" (nats, default), 2 (bits) or 10 (hartleys).'
    )


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: what went wrong and which field caused it."""

    type: str = Field(default="about:blank", description="Problem type URI.")
    title: str = Field(description="The HTTP status phrase.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What is wrong, naming the field: `probs[17]` must sum to 1 ...")
    errors: list[dict[str, str]] | None = Field(
        default=None,
        description='One entry per problem: {"pointer": "#/probs/17", "detail": "..."}; the pointer '
        "is a JSON pointer into the request body.",
    )


class ClassVocabulary(BaseModel):
    """Labels named by a class vocabulary, as scikit-learn's ``labels=`` and ``pos_label=``."""

    model_config = OPTIONS_CONFIG

    classes: (
        Annotated[list[Int64], Field(min_length=2, json_schema_extra={"uniqueItems": True})]
        | Annotated[list[StrictStr], Field(min_length=2, json_schema_extra={"uniqueItems": True})]
        | None
    ) = Field(
        default=None,
        description="K class names (all integers or all strings), column j being classes[j]; `labels` "
        "are then names from this list (mapped to indices). As sklearn.metrics.log_loss(labels=…): "
        "a `labels` holding a single class is scored against every declared class. scikit-learn "
        "orders columns by sorted names: send `classes` sorted to match it. K must equal the "
        "prediction columns (2 for binary input), else a 422 naming both counts; a label not in "
        "`classes` is a 422 naming its index. With soft `targets`, column j of the targets is "
        "classes[j] too (the count is checked the same way; binary targets are the probability of "
        "`pos_label`). With `ignore_index` (integer classes only), a label equal to it is dropped as "
        "sent, before mapping (PyTorch compares ignore_index with the target as given): it need not "
        "be a class, and if it is one, that class's rows are dropped. String classes with "
        "ignore_index are a 422 (an integer never equals a string label).",
    )
    pos_label: Int64 | StrictStr | None = Field(
        default=None,
        description="Binary input with `classes`: which of the two declared classes the positive-class "
        "probability or logit refers to (default classes[1]), as brier_score_loss(pos_label=…).",
    )
