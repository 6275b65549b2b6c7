"""``POST /v1/cross-entropy``."""

import functools
import math
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter
from starlette.responses import Response

from service import core
from service.api.deps import INLINE_BYTES, Plain, scoring
from service.api.formats.answers import Document, json_float
from service.api.formats.inputs import Body, Prediction, Truth, read_prediction, read_truth
from service.api.formats.plain import general_answer, plain_array, plain_logits
from service.api.schemas import (
    CrossEntropyBody,
    CrossEntropyOptions,
    CrossEntropyResult,
)
from service.core._typing import FloatArray

from . import (
    BINARY_OUTPUT_RESPONSE,
    PROBLEM_RESPONSES,
    Answer,
    log_base,
    request_body,
    top_k_result,
    unit_of,
)
from .binary_weights import BinaryWeights, read_binary_weights
from .cross_entropy_multilabel import score_multilabel
from .cross_entropy_sequences import score_sequences

router = APIRouter(prefix="/v1", tags=["scores"])

ARRAY_FIELDS = (
    "logits",
    "probs",
    "labels",
    "targets",
    "class_weights",
    "sample_weight",
    "weight",
    "mask",
    "bytes",
    "words",
)


def plain_cross_entropy(fields: dict[str, Any], max_elements: int) -> tuple[bytes, int] | None:
    """The answer to ``{"logits": N×K floats, "labels": N}``, nothing else (:class:`service.api.deps.Plain`).

    What :func:`cross_entropy_answer` answers, by the same core calls: the mean loss,
    accuracy and mean entropy filled into its answer to a plain request; None for the
    general path whenever the request is not that after all.
    """
    logits, labels = plain_logits(fields["logits"], "logits"), plain_array(fields["labels"])
    if (
        logits is None
        or labels is None
        or labels.shape != logits.shape[:1]
        or logits.size + labels.size > max_elements
    ):
        return None
    try:
        labels = core.check_labels(labels, logits.shape[1])
    except core.InputError:
        return None
    dist = core.Distribution.from_logits(logits, validate=False)
    dist.summarise(top=True, entropy=True, labels=labels)
    losses = core.nll(labels, dist)
    n = losses.size
    answer = dict(_plain_answer())
    answer["n"] = n
    # the means `_mean` takes, of n ≥ 1 values; the count of hits is exact, as its float sum is
    answer["loss"] = json_float(float(np.add.reduce(losses, dtype=np.float64)) / n)
    answer["accuracy"] = int(np.count_nonzero(dist.predicted() == labels)) / n
    answer["mean_entropy"] = json_float(float(np.add.reduce(dist.entropy(), dtype=np.float64)) / n)
    return orjson.dumps(answer), n


@functools.cache
def _plain_answer() -> Document:
    """The general path's answer to a plain request (its convention is every plain request's)."""
    return general_answer(cross_entropy_answer, {"logits": [[0.0, 1.0]], "labels": [0]})


@router.post(
    "/cross-entropy",
    response_model=CrossEntropyResult,
    responses={**BINARY_OUTPUT_RESPONSE, **PROBLEM_RESPONSES},
    openapi_extra=request_body(CrossEntropyBody, ARRAY_FIELDS),
)
@scoring(
    inline_bytes=INLINE_BYTES,
    roles=ARRAY_FIELDS,
    plain=Plain(frozenset({"logits", "labels"}), plain_cross_entropy),
)
def score_cross_entropy(body: Body) -> Response:
    """Cross-entropy of labels (or soft targets) under logits or probabilities.

    Categorical logits go through log-softmax by log-sum-exp, binary logits through
    the softplus form; probabilities are logged under the `eps` policy. Options
    follow torch.nn.functional.cross_entropy (label_smoothing, class weights,
    ignore_index, reduction); probabilities match sklearn.metrics.log_loss.
    B×T×K logits or probabilities with B×T labels (and an optional B×T mask) score
    token sequences: per-token losses, and per-sequence sums with the perplexities
    lm-evaluation-harness and Hugging Face evaluate report (`language_model`).
    """
    return cross_entropy_answer(body).response()


def cross_entropy_answer(body: Body) -> Answer:
    """The cross-entropy result of `body`, with per-sample `losses` when asked."""
    options = body.options(CrossEntropyOptions, ARRAY_FIELDS)
    name = body.pick("logits", "probs")
    if options.multilabel:  # N×K independent binary problems
        return score_multilabel(body, options, name)
    values = body.array(name, bfloat16=True)
    if values.ndim == 3:  # B×T×K token sequences
        return score_sequences(body, options, name, values)
    prediction = read_prediction(body, "probs", "logits", options)
    truth = read_truth(body, prediction, ignore_index=options.ignore_index, vocabulary=options)
    weights = _class_weights(body, prediction)
    sample_weight = None
    if body.fields.get("sample_weight") is not None:
        sample_weight = core.check_sample_weight(body.array("sample_weight"), prediction.dist.n_samples)
    bce = read_binary_weights(body, options, prediction)
    result, losses = _score(prediction, truth, weights, options, sample_weight, bce)
    per_sample = {"losses": losses} if options.reduction == "none" or options.per_sample else {}
    return Answer(result, per_sample, options.binary_data_output)


def _class_weights(body: Body, prediction: Prediction) -> FloatArray | None:
    if body.fields.get("class_weights") is None:
        return None
    weights = core.check_class_weights(body.array("class_weights"), prediction.dist.n_classes)
    return core.in_dtype(weights, prediction.dist.dtype)


def _score(
    prediction: Prediction,
    truth: Truth,
    weights: FloatArray | None,
    options: CrossEntropyOptions,
    sample_weight: FloatArray | None = None,
    bce: BinaryWeights | None = None,
) -> tuple[Document, FloatArray]:
    dist = prediction.dist
    if bce is not None:  # PyTorch's BCE: pos_weight as class weights [1, p], the mean over N
        weights = bce.class_weights
    if sample_weight is not None:  # (an FP16 or FP32 tensor: its products and sums in float64)
        sample_weight = sample_weight.astype(np.float64, copy=False)
    if dist.logits is not None:  # one fused pass serves loss, accuracy and entropy
        gathered = truth.labels if truth.ignore_index is None else None  # ignored labels are no index
        dist.summarise(top=True, entropy=True, labels=gathered)
    smoothing = options.label_smoothing
    if truth.labels is not None:
        labels = truth.labels
        losses = core.nll(
            labels,
            dist,
            class_weights=weights,
            label_smoothing=smoothing,
            ignore_index=truth.ignore_index,
        )
        denominators = (
            None  # every sample weighs 1: the mean divides by N
            if (weights is None or bce is not None) and truth.ignore_index is None
            else core.label_weights(labels, class_weights=weights, ignore_index=truth.ignore_index)
        )
        kept = None if truth.ignore_index is None else labels != truth.ignore_index
        true_class = labels
    else:
        assert truth.targets is not None
        losses = core.soft_cross_entropy(
            truth.targets, dist, class_weights=weights, label_smoothing=smoothing
        )
        denominators = None
        kept = None
        true_class = np.argmax(truth.targets, axis=1)
    n = losses.size if kept is None else int(np.count_nonzero(kept))
    if bce is not None and bce.element is not None:  # PyTorch's `weight`: v·loss, the mean still / N
        losses = core.weigh(losses, bce.element)
    if sample_weight is not None:  # sklearn's Σ s·loss / Σ s, times PyTorch's w[y] in both
        losses = core.weigh(losses, sample_weight)
        denominators = sample_weight if denominators is None else denominators * sample_weight
    base = log_base(options.base)
    losses = core.to_base(losses, base)
    loss = _reduce(
        losses,
        denominators,
        options.reduction,
        n,
        "class_weights" if sample_weight is None else "sample_weight",
    )
    predicted, entropies = dist.predicted(), core.to_base(dist.entropy(), base)
    top_k = top_k_result(options.top_k, true_class, dist, kept, sample_weight)
    s = sample_weight
    if kept is not None:  # no all-true masks: each would copy N values
        predicted, true_class, entropies = predicted[kept], true_class[kept], entropies[kept]
        s = None if s is None else s[kept]
    # The answer as CrossEntropyResult's JSON document, fields in its order (formats/answers.py).
    result = {
        "n": n,
        "n_ignored": 0 if kept is None else int(kept.size - n),
        "loss": None if loss is None else json_float(loss),
        "losses": None,
        "accuracy": json_float(_mean((predicted == true_class).astype(np.float64), s)),
        "top_k_accuracy": None if top_k is None else {k: json_float(v) for k, v in top_k.items()},
        "mean_entropy": json_float(_mean(entropies, s)),
        "convention": {
            "classes": None if options.classes is None else list(options.classes),
            "pos_label": options.pos_label,
            "input": prediction.field,
            "form": "binary" if dist.binary else "categorical",
            "truth": truth.field,
            "dtype": prediction.dtype,
            "base": options.base,
            "unit": unit_of(options.base),
            "reduction": options.reduction,
            "eps": float(dist.eps),
            "n_clipped": int(dist.n_clipped),
            "tolerance": float(prediction.tolerance),
            "n_normalized": int(prediction.n_normalized),
            "label_smoothing": float(smoothing),
            "class_weights": weights is not None and bce is None,
            "sample_weight": sample_weight is not None,
            "pos_weight": None if bce is None or bce.pos_weight is None else float(bce.pos_weight),
            "weight": bce is not None and bce.element is not None,
            "ignore_index": options.ignore_index,
            "top_k": None if options.top_k is None else list(options.top_k),
            "matches": _peer(prediction, truth, bce),
        },
        "language_model": None,
    }
    return result, losses


def _mean(values: FloatArray, weights: FloatArray | None) -> float:
    """Mean of `values` (weighted by `weights` as scikit-learn's metrics); NaN for no weight at all."""
    total = values.size if weights is None else float(np.add.reduce(weights, dtype=np.float64))
    if total == 0:
        return math.nan
    summed = np.add.reduce(values, dtype=np.float64) if weights is None else np.dot(values, weights)
    return float(summed) / total


def _reduce(
    losses: FloatArray, denominators: FloatArray | None, reduction: str, n: int, weight_field: str
) -> float | None:
    """PyTorch's reductions; every label ignored (n = 0): sum 0, mean NaN (0 / 0), as PyTorch.

    A sum past float64's range is +inf (it has no float64); a mean whose sum alone is past it is
    ``Σ (loss / weight)`` (PyTorch sums first and answers +inf there).
    """
    if reduction == "none":
        return None
    with np.errstate(over="ignore"):
        total = float(np.add.reduce(losses, dtype=np.float64))
    if reduction == "sum":
        return total
    if n == 0:
        return math.nan
    weight = losses.size if denominators is None else float(np.add.reduce(denominators, dtype=np.float64))
    if weight == 0:
        raise core.InputError(
            weight_field,
            "give the scored samples zero total weight; the weighted mean is undefined",
        )
    if math.isinf(total) and np.isfinite(losses).all():
        with np.errstate(over="ignore"):
            return float(np.add.reduce(losses.astype(np.float64) / weight))
    return total / weight


def _peer(prediction: Prediction, truth: Truth, bce: BinaryWeights | None = None) -> str:
    if bce is not None:
        if prediction.field == "logits":
            return "torch.nn.functional.binary_cross_entropy_with_logits(pos_weight=, weight=)"
        extra = " (pos_weight: defined as for logits; torch has none)" if bce.pos_weight else ""
        return "torch.nn.functional.binary_cross_entropy(weight=)" + extra
    if prediction.field == "probs":
        return "sklearn.metrics.log_loss (≥1.5; eps clips the zero side only)"
    if prediction.dist.binary:
        return "torch.nn.functional.binary_cross_entropy_with_logits (class_weights: [w0, w1])"
    return "torch.nn.functional.cross_entropy"
