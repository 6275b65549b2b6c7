"""Request and response models of ``POST /v1/divergence``."""

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from .common import RESULT_CONFIG, FloatArrayField, JsonFloat, ProbabilityOptions, Tensor


def _check_base(value: str | float) -> str | float:
    if value == "e" or (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    ):
        if value == 1:
            raise ValueError("must not be 1 (log base 1 is undefined)")
        return value
    raise ValueError(f'must be "e" or a number > 0 other than 1; got {value!r}')


# One validator for the union, so an error points at `base` itself, not at a union member.
AnyBase = Annotated[
    str | float,
    AfterValidator(_check_base),
    WithJsonSchema(
        {"anyOf": [{"enum": ["e"]}, {"type": "number", "exclusiveMinimum": 0, "not": {"const": 1}}]}
    ),
]
Reduction = Literal["mean", "batchmean", "sum", "none"]


class DivergenceOptions(ProbabilityOptions):
    """The scalar options of a divergence request."""

    base: AnyBase = Field(  # type: ignore[assignment]
        default="e",
        description='Logarithm base: "e" (nats, default), 2 (bits), 10 (hartleys) or any number > 0 '
        "other than 1 (scipy.stats.entropy's base).",
    )
    reduction: Reduction = Field(
        default="mean",
        description="mean: each quantity averaged over rows (PyTorch kl_div's batchmean, accepted "
        "as a synonym); sum: summed over rows (PyTorch's sum); none: no reduction, the per-row "
        "values in `per_sample`. PyTorch's elementwise reduction='none' is `elementwise: true`, and "
        "its reduction='mean' (over N·K elements) is `sum` / (N·K).",
    )
    elementwise: bool = Field(
        default=False,
        description="Also return the N×K terms of KL(p‖q), KL(q‖p) and JS in `terms` "
        "(scipy.special.rel_entr(p, q); torch.nn.functional.kl_div(log q, p, reduction='none')).",
    )
    per_sample: bool = Field(default=False, description="Also return every quantity per row.")
    binary_data_output: bool = Field(
        default=False,
        description="With `per_sample`, send the per-row quantities as raw binary tensors (OIP binary "
        "extension, application/octet-stream: the JSON result with `per_sample` null and one "
        "`outputs` entry per quantity, named `per_sample.kl_pq` and so on, then their bytes) "
        "instead of JSON lists.",
    )


def _side(name: str, kind: str) -> FloatArrayField | None:
    return Field(
        default=None,
        description=f"Distribution {name} as {kind}: N×K rows, or a length-N vector of "
        "positive-class values (Bernoulli); B×T×K for token sequences (both sides the same shape).",
    )


class DivergenceBody(DivergenceOptions):
    """Two batches of distributions p and q, each as probabilities or logits (exactly one of each pair)."""

    p_probs: FloatArrayField | None = _side("p", "probabilities")
    p_logits: FloatArrayField | None = _side("p", "logits (softmax / sigmoid)")
    q_probs: FloatArrayField | None = _side("q", "probabilities")
    q_logits: FloatArrayField | None = _side("q", "logits (softmax / sigmoid)")
    sample_weight: FloatArrayField | None = Field(
        default=None,
        description="N non-negative row weights s (N the rows compared, after broadcasting one row "
        "against many), as scikit-learn's sample_weight: `mean` is Σ s·x / Σ s and `sum` Σ s·x for "
        "every quantity (a row of weight 0 adds 0, even an infinite KL); per-row values and `terms` "
        "are not weighted. All zero is a 422. N×K rows only (sequences use `mask`).",
    )
    mask: list[list[int]] | Tensor | None = Field(
        default=None,
        description="Sequence inputs: B×T, 1 where a position is scored, 0 elsewhere (padding).",
    )


class DivergenceConvention(BaseModel):
    """Exactly how the numbers were computed."""

    model_config = RESULT_CONFIG

    p: Literal["probs", "logits"] = Field(description="How p was sent.")
    q: Literal["probs", "logits"] = Field(description="How q was sent.")
    dtype: Literal["float32", "float64"] = Field(description="Precision of the computation.")
    base: str | float = Field(description='Logarithm base of every reported value ("e" or a number).')
    unit: str = Field(description='Unit implied by `base`: nats, bits, hartleys, or "log base b".')
    reduction: Reduction = Field(description="How rows were reduced, as sent.")
    elementwise: bool = Field(description="Whether N×K `terms` were returned.")
    broadcast: Literal["p", "q"] | None = Field(
        description="The side sent as one row and compared with every row of the other, if any."
    )
    sample_weight: bool = Field(
        default=False, description="Whether the reductions (mean, sum) were weighted by `sample_weight`."
    )
    eps: float = Field(description="Floor applied to probabilities before the log (0: none).")
    n_clipped: int = Field(description="How many probabilities (p and q) were raised to `eps`.")
    tolerance: float = Field(description="Row-sum tolerance applied to probabilities.")
    n_normalized: int = Field(description="Rows divided by their sum (normalize: true).")
    zero_convention: str = Field(description="How 0·log 0 and p > 0 = q are treated.")
    matches: str = Field(description="The peer implementations these numbers agree with.")


class DivergenceStats(BaseModel):
    """One value per quantity: the mean over rows, or per row when asked."""

    model_config = RESULT_CONFIG

    kl_pq: JsonFloat = Field(description="KL(p‖q) = Σ p log(p/q).")
    kl_qp: JsonFloat = Field(description="KL(q‖p) = Σ q log(q/p).")
    js_divergence: JsonFloat = Field(description="½KL(p‖m) + ½KL(q‖m), m = (p+q)/2; ≤ log 2.")
    js_distance: JsonFloat = Field(
        description='sqrt(js_divergence) per row (then averaged); "NaN" for a base below 1, as '
        "scipy.spatial.distance.jensenshannon."
    )
    entropy_p: JsonFloat = Field(description="H(p) = -Σ p log p.")
    entropy_q: JsonFloat = Field(description="H(q) = -Σ q log q.")
    cross_entropy_pq: JsonFloat = Field(description="H(p, q) = -Σ p log q = H(p) + KL(p‖q).")


class DivergenceRows(BaseModel):
    """Every quantity per row."""

    model_config = RESULT_CONFIG

    kl_pq: list[JsonFloat]
    kl_qp: list[JsonFloat]
    js_divergence: list[JsonFloat]
    js_distance: list[JsonFloat]
    entropy_p: list[JsonFloat]
    entropy_q: list[JsonFloat]
    cross_entropy_pq: list[JsonFloat]


class DivergencePositions(BaseModel):
    """Every quantity per row (N), or per position of token sequences (B×T; 0 where `mask` is 0)."""

    model_config = RESULT_CONFIG

    kl_pq: list[JsonFloat] | list[list[JsonFloat]]
    kl_qp: list[JsonFloat] | list[list[JsonFloat]]
    js_divergence: list[JsonFloat] | list[list[JsonFloat]]
    js_distance: list[JsonFloat] | list[list[JsonFloat]]
    entropy_p: list[JsonFloat] | list[list[JsonFloat]]
    entropy_q: list[JsonFloat] | list[list[JsonFloat]]
    cross_entropy_pq: list[JsonFloat] | list[list[JsonFloat]]


class DivergenceTerms(BaseModel):
    """N×K elementwise terms; each row sums to the per-row value."""

    model_config = RESULT_CONFIG

    kl_pq: list[list[JsonFloat]] = Field(description="p log(p/q) (0 where p = 0).")
    kl_qp: list[list[JsonFloat]] = Field(description="q log(q/p) (0 where q = 0).")
    js_divergence: list[list[JsonFloat]] = Field(description="½ (p log(p/m) + q log(q/m)), m = (p+q)/2.")


class DivergenceSequences(BaseModel):
    """Token sequences (B×T×K on both sides): each sequence's sums over its scored positions."""

    model_config = RESULT_CONFIG

    n_sequences: int = Field(description="B.")
    n_ignored: int = Field(description="Positions left out by `mask`.")
    tokens: list[int] = Field(description="Scored positions per sequence.")
    sum: DivergenceRows = Field(
        description="Per sequence, each quantity summed over its scored positions, in `unit` "
        "(e.g. the sequence's total KL(p‖q), the distillation loss before averaging)."
    )


class DivergenceResult(BaseModel):
    """Divergences and entropies between p and q, reduced over rows as asked."""

    model_config = RESULT_CONFIG

    n: int = Field(description="Rows compared.")
    mean: DivergenceStats | None = Field(
        description="Each quantity averaged over rows, in `unit` (reduction mean or batchmean; else null)."
    )
    sum: DivergenceStats | None = Field(
        default=None, description="Each quantity summed over rows, in `unit` (reduction sum)."
    )
    per_sample: DivergencePositions | None = Field(
        default=None,
        description="Each quantity per row (per_sample: true, or reduction none); B×T for token sequences.",
    )
    terms: DivergenceTerms | None = Field(default=None, description="N×K terms (elementwise: true).")
    sequences: DivergenceSequences | None = Field(
        default=None,
        exclude_if=lambda value: value is None,  # present only for B×T×K inputs
        description="B×T×K inputs only: per-sequence sums over the scored positions (`n` counts those).",
    )
    convention: DivergenceConvention
