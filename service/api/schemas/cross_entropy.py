"""Request and response models of ``POST /v1/cross-entropy``."""

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from .common import (
    RESULT_CONFIG,
    TOP_K_DESCRIPTION,
    Base,
    ClassVocabulary,
    FloatArrayField,
    IntArrayField,
    JsonFloat,
    ProbabilityOptions,
    Tensor,
    TopK,
)
from .logprobs import LanguageModelMetrics, MergeableTotals, Top1Calibration


def _check_pos_weight(value: float | list[float]) -> float | list[float]:
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        raise ValueError("must hold one weight per class; got an empty list")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"must be greater than 0 and finite; got {value!r}")
    return value


# One validator for the union, so an error points at `pos_weight` itself, not at a union member.
PosWeight = Annotated[
    float | list[float],
    AfterValidator(_check_pos_weight),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1},
            ]
        }
    ),
]


class CrossEntropyOptions(ProbabilityOptions, ClassVocabulary):
    """The scalar options of a cross-entropy request."""

    label_smoothing: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.0,
        description="ε: the target becomes (1 - ε)·onehot(y) + ε/K (soft targets: (1 - ε)·t + ε/K), "
        "as torch.nn.functional.cross_entropy's label_smoothing.",
    )
    ignore_index: int | None = Field(
        default=None,
        description="Samples whose label equals this value are left out of every reduction and get "
        "loss 0 in `losses` (PyTorch uses -100). Hard labels only.",
    )
    reduction: Literal["mean", "sum", "none"] = Field(
        default="mean",
        description="mean: Σ losses / Σ w[y] over non-ignored samples (PyTorch's weighted mean; "
        "with soft targets, / N); sum: Σ losses; none: no `loss`, per-sample `losses` only.",
    )
    per_sample: bool = Field(default=False, description="Also return per-sample `losses`.")
    pos_weight: PosWeight | None = Field(
        default=None,
        description="Binary or multilabel input: p multiplies the positive term, loss = -(p·t·log σ + "
        "(1 - t)·log(1 - σ)), as torch.nn.functional.binary_cross_entropy_with_logits(pos_weight=p). "
        "PyTorch's binary_cross_entropy (probabilities) has no pos_weight; with `probs` Xent defines it "
        "the same way (log p for log σ). The mean divides by N, not by the weights; no class_weights, "
        "sample_weight, label_smoothing or ignore_index with it. Multilabel: one p per class (a list of "
        "K) or one for all, as BCEWithLogitsLoss(pos_weight=…); sample_weight and class_weights allowed.",
    )
    multilabel: bool = Field(
        default=False,
        description="N×K independent binary problems: `logits` (a sigmoid per element) or `probs` (in "
        "[0, 1], rows need not sum to 1) against N×K `targets` in [0, 1] (0/1 indicators or probabilities; "
        "`labels` are a 422). Loss per `multilabel_convention`; `accuracy` is the element-wise "
        "accuracy at 0.5 (1 - sklearn hamming_loss, torchmetrics MultilabelAccuracy(average='micro')); "
        "`mean_entropy` the mean binary entropy per element. class_weights (K) scale every term of "
        "a class, as BCEWithLogitsLoss(weight=…) of shape (K,).",
    )
    multilabel_convention: Literal["torch", "sklearn"] = Field(
        default="torch",
        description="torch: per-element binary cross-entropy -(p·t·log σ + (1 - t)·log(1 - σ)), "
        "BCEWithLogitsLoss / binary_cross_entropy: mean over all N·K elements, sum over them, none "
        "N×K `losses`. sklearn: sklearn.metrics.log_loss on an indicator matrix, which takes the "
        "rows as one-hot multiclass targets: -Σ_k t_k log p_k per sample (the (1 - t) terms never "
        "count, rows not renormalised), mean over N (Σ s·loss / Σ s with sample_weight), none N "
        "`losses`.",
    )
    top_k: TopK | None = Field(default=None, description=TOP_K_DESCRIPTION)
    binary_data_output: bool = Field(
        default=False,
        description="Send per-sample `losses` as a raw binary tensor (OIP binary extension, "
        "application/octet-stream) instead of a JSON list.",
    )


class CrossEntropyBody(CrossEntropyOptions):
    """Predictions (exactly one of `logits`, `probs`) and truth (exactly one of `labels`, `targets`)."""

    logits: FloatArrayField | None = Field(
        default=None,
        description="N×K unnormalised log-probabilities (log-softmax by log-sum-exp), or a length-N "
        "vector of positive-class logits (binary, sigmoid), or B×T×K logits of token sequences "
        "(FP32, FP16 or BF16 tensors welcome) with B×T `labels`.",
    )
    probs: FloatArrayField | None = Field(
        default=None,
        description="N×K probabilities (rows sum to 1 within `tolerance`), or a length-N vector of "
        "positive-class probabilities (binary), or B×T×K token probabilities with B×T `labels`.",
    )
    labels: IntArrayField | None = Field(
        default=None,
        description="N true class indices in [0, K) (binary: 0 or 1); B×T token ids for sequence "
        "inputs (a nested list, or an INT32/INT64 tensor of shape [B, T]).",
    )
    mask: list[list[int]] | Tensor | None = Field(
        default=None,
        description="Sequence inputs: B×T, 1 where a position is scored (e.g. the attention mask "
        "shifted to the labels), 0 elsewhere; labels at unscored positions are never read.",
    )
    bytes: list[int] | None = Field(
        default=None,
        description="Sequence inputs: UTF-8 bytes of each sequence's scored text, for "
        "byte_perplexity and bits_per_byte (lm-evaluation-harness).",
    )
    words: list[int] | None = Field(
        default=None, description="Sequence inputs: words of each sequence's text, for word_perplexity."
    )
    targets: FloatArrayField | None = Field(
        default=None,
        description="Soft labels: N×K rows summing to 1, or for binary a length-N vector of "
        "positive-class probabilities.",
    )
    class_weights: Annotated[list[float], Field(min_length=2)] | None = Field(
        default=None,
        description="K non-negative per-class weights w, as PyTorch's `weight` (binary: [w0, w1]).",
    )
    sample_weight: FloatArrayField | None = Field(
        default=None,
        description="N non-negative per-sample weights s, as scikit-learn's `sample_weight`: mean "
        "Σ s·w[y]·loss / Σ s·w[y] (w the class weights, 1 without), sum Σ s·w[y]·loss, `losses` "
        "s·w[y]·loss; accuracy, top-k accuracy and mean entropy are s-weighted means.",
    )
    weight: FloatArrayField | None = Field(
        default=None,
        description="Binary input only: N non-negative per-element weights v, as PyTorch's `weight=` of "
        "binary_cross_entropy(_with_logits): `losses` v·loss, sum Σ v·loss, mean Σ v·loss / N (PyTorch "
        "divides by N, NOT by Σ v: unlike `sample_weight`'s scikit-learn mean Σ s·loss / Σ s). Loss "
        "only: accuracy and entropy are unweighted. No class_weights, sample_weight, label_smoothing "
        "or ignore_index with it.",
    )


class CrossEntropyConvention(BaseModel):
    """Exactly how the numbers were computed."""

    model_config = RESULT_CONFIG

    classes: list[int] | list[str] | None = Field(default=None, description="The class vocabulary, as sent.")
    pos_label: int | str | None = Field(
        default=None, description="The positive class of binary input, as sent."
    )

    input: Literal["logits", "probs"] = Field(description="Which prediction field was sent.")
    form: Literal["categorical", "binary", "sequence", "multilabel"] = Field(
        description="N×K, positive-class vector, B×T×K token sequences, or N×K independent columns."
    )
    truth: Literal["labels", "targets"] = Field(description="Hard labels or soft targets.")
    dtype: Literal["float32", "float64"] = Field(description="Precision of the computation.")
    base: Base = Field(description="Logarithm base of every reported loss and entropy.")
    unit: Literal["nats", "bits", "hartleys"] = Field(description="Unit implied by `base`.")
    reduction: Literal["mean", "sum", "none"] = Field(description="How `loss` reduces `losses`.")
    eps: float = Field(description="Floor applied to probabilities before the log (0: none).")
    n_clipped: int = Field(description="How many probabilities were raised to `eps`.")
    tolerance: float = Field(description="Row-sum tolerance applied to probabilities and targets.")
    n_normalized: int = Field(description="Rows divided by their sum (normalize: true).")
    label_smoothing: float = Field(description="ε as applied.")
    class_weights: bool = Field(description="Whether per-class weights were applied.")
    sample_weight: bool = Field(default=False, description="Whether per-sample weights were applied.")
    pos_weight: float | list[float] | None = Field(
        default=None,
        description="The pos_weight applied (multilabel: one per class, or one for all), if any.",
    )
    multilabel_convention: Literal["torch", "sklearn"] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Multilabel input only (absent otherwise): the loss convention applied.",
    )
    weight: bool = Field(default=False, description="Whether PyTorch's per-element `weight` was applied.")
    ignore_index: int | None = Field(description="Label value left out, if any.")
    top_k: list[int] | None = Field(default=None, description="The k of `top_k_accuracy`, as sent.")
    matches: str = Field(description="The peer implementation these numbers agree with.")


class CrossEntropyResult(BaseModel):
    """Cross-entropy of a batch, with accuracy and predictive entropy."""

    model_config = RESULT_CONFIG

    n: int = Field(description="Samples scored (ignored samples excluded; 0 when every label is ignored).")
    n_ignored: int = Field(description="Samples whose label equals `ignore_index`.")
    loss: JsonFloat | None = Field(
        description='Reduced loss in `unit`; null when reduction is "none". "Infinity" when a '
        "true class has probability 0 and eps is 0. Every label ignored (n = 0): sum 0, mean "
        '"NaN", as PyTorch (a padded window is not an error).'
    )
    losses: list[JsonFloat] | list[list[JsonFloat]] | None = Field(
        default=None,
        description="Per-sample losses (reduction none or per_sample true), class-weighted as in "
        "PyTorch's reduction='none'; 0 for ignored samples. Multilabel torch convention: N×K, one per "
        "element.",
    )
    accuracy: JsonFloat = Field(
        description="Top-1 accuracy: argmax of the prediction equals the label (soft targets: the "
        'argmax of the target; binary: p > 0.5 / logit > 0). Ties go to the lower class. "NaN" when '
        "every label is ignored (n = 0)."
    )
    top_k_accuracy: dict[str, JsonFloat] | None = Field(
        default=None,
        description="Top-k accuracy by k (as a string key) for each k of `top_k`, over the scored samples "
        "(soft targets: the argmax of the target is the true class).",
    )
    mean_entropy: JsonFloat = Field(
        description='Mean entropy of the predicted distributions of the scored samples, in `unit` ("NaN" '
        "when n = 0)."
    )
    convention: CrossEntropyConvention
    language_model: "SequenceSummary | None" = Field(
        default=None,
        description="Sequence inputs with `labels`: per-sequence sums of the plain token NLL (never "
        "class-weighted or smoothed) and the perplexities they give.",
    )
    sequence_loss: "SequenceLoss | None" = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Sequence inputs with class_weights, label_smoothing or `targets` (absent "
        "otherwise): the reported loss summed per sequence, with the weight its mean divides by.",
    )


class SequenceRows(BaseModel):
    """Per-sequence values of a B×T×K request, in order."""

    model_config = RESULT_CONFIG

    nll: list[float] = Field(description="Σ NLL over the sequence's scored tokens, nats.")
    tokens: list[int] = Field(description="Scored tokens.")
    perplexity: list[JsonFloat] = Field(description="exp(nll / tokens); NaN without tokens.")


class SequenceLoss(BaseModel):
    """The reported (weighted, smoothed or soft-target) loss of each of B sequences, in order."""

    model_config = RESULT_CONFIG

    n_sequences: int
    tokens: list[int] = Field(description="Scored positions per sequence.")
    loss: list[JsonFloat] = Field(
        description="Σ of the per-token `losses` over the sequence, in `unit`: PyTorch's "
        "reduction='sum' on that sequence alone."
    )
    weight: list[float] = Field(
        description="Σ w[label] over the sequence's scored tokens (1 per token without class_weights "
        "and with soft targets): loss / weight is PyTorch's reduction='mean' on that sequence alone."
    )


class SequenceSummary(BaseModel):
    """Token cross-entropy of B sequences summed per sequence; perplexities in nats whatever `base`."""

    model_config = RESULT_CONFIG

    n_sequences: int
    metrics: LanguageModelMetrics
    calibration: Top1Calibration = Field(
        description="Token-level calibration of the top-1 token over scored positions (teacher-forced "
        "by construction: the labels are given text)."
    )
    per_sequence: SequenceRows
    totals: MergeableTotals
