"""Request and response models of ``POST /v1/divergence``."""

from typing import Literal

from pydantic import BaseModel, Field

from .common import RESULT_CONFIG, Base, FloatArrayField, JsonFloat, ProbabilityOptions


class DivergenceOptions(ProbabilityOptions):
    """The scalar options of a divergence request."""

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
        "positive-class values (Bernoulli).",
    )


class DivergenceBody(DivergenceOptions):
    """Two batches of distributions p and q, each as probabilities or logits (exactly one of each pair)."""

    p_probs: FloatArrayField | None = _side("p", "probabilities")
    p_logits: FloatArrayField | None = _side("p", "logits (softmax / sigmoid)")
    q_probs: FloatArrayField | None = _side("q", "probabilities")
    q_logits: FloatArrayField | None = _side("q", "logits (softmax / sigmoid)")


class DivergenceConvention(BaseModel):
    """Exactly how the numbers were computed."""

    model_config = RESULT_CONFIG

    p: Literal["probs", "logits"] = Field(description="How p was sent.")
    q: Literal["probs", "logits"] = Field(description="How q was sent.")
    dtype: Literal["float32", "float64"] = Field(description="Precision of the computation.")
    base: Base = Field(description="Logarithm base of every reported value.")
    unit: Literal["nats", "bits", "hartleys"] = Field(description="Unit implied by `base`.")
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
    js_distance: JsonFloat = Field(description="sqrt(js_divergence) per row (then averaged).")
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


class DivergenceResult(BaseModel):
    """Divergences and entropies between p and q, averaged over rows."""

    model_config = RESULT_CONFIG

    n: int = Field(description="Rows compared.")
    mean: DivergenceStats = Field(description="Each quantity averaged over rows, in `unit`.")
    per_sample: DivergenceRows | None = Field(
        default=None, description="Each quantity per row (per_sample: true)."
    )
    convention: DivergenceConvention
