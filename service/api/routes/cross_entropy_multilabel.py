"""``POST /v1/cross-entropy`` with ``multilabel: true``: N×K independent binary problems."""

import math

import numpy as np

from service import core
from service.api.formats.inputs import Body
from service.api.schemas import CrossEntropyConvention, CrossEntropyOptions, CrossEntropyResult
from service.core._typing import FloatArray
from service.core.multilabel import (
    MultilabelLogProbs,
    check_logit_matrix,
    check_unit_matrix,
    indicator_log_loss,
    multilabel_bce,
    multilabel_log_probs,
)

from . import Answer, log_base, unit_of

#: Options of the categorical route with no multilabel meaning.
_NOT_FOR_MULTILABEL = ("labels", "weight", "mask", "bytes", "words")
_PEERS = {
    ("torch", "logits"): "torch.nn.BCEWithLogitsLoss(weight=class_weights, pos_weight=…) (mean over N·K)",
    ("torch", "probs"): "torch.nn.functional.binary_cross_entropy (mean over N·K; pos_weight as for logits)",
    ("sklearn", "logits"): "sklearn.metrics.log_loss(Y, expit(logits)) on the indicator matrix Y",
    (
        "sklearn",
        "probs",
    ): "sklearn.metrics.log_loss(Y, P) on the indicator matrix Y (-Σ_k y_k log p_k per row)",
}


def score_multilabel(body: Body, options: CrossEntropyOptions, name: str) -> Answer:
    """Per-element binary cross-entropy (or scikit-learn's indicator log loss) of N×K `targets`."""
    _refuse_others(body, options)
    values = body.array(name)
    if name == "logits":
        lp = multilabel_log_probs(logits=check_logit_matrix(values, field="logits"))
    else:
        probs = check_unit_matrix(values, field="probs")
        lp = multilabel_log_probs(probs=probs, eps=options.eps)
    shape = lp.log_p.shape
    if body.fields.get("targets") is None:
        raise core.InputError(
            "targets", "are required with multilabel (an N×K matrix of 0/1 or probabilities)"
        )
    targets = check_unit_matrix(body.array("targets"), field="targets", shape=shape)
    n, k = shape
    if options.classes is not None and len(options.classes) != k:
        raise core.InputError(
            "classes", f"declares {len(options.classes)} classes but the predictions have {k} columns"
        )
    sample_weight = None
    if body.fields.get("sample_weight") is not None:
        sample_weight = core.check_sample_weight(body.array("sample_weight"), n)
    class_weights = None
    if body.fields.get("class_weights") is not None:
        class_weights = core.check_class_weights(body.array("class_weights"), k)
    pos_weight = _pos_weight(options.pos_weight, k)
    sklearn = options.multilabel_convention == "sklearn"
    if sklearn and (class_weights is not None or pos_weight is not None):
        field = "class_weights" if class_weights is not None else "pos_weight"
        raise core.InputError(
            field, 'has no meaning with multilabel_convention "sklearn" (log_loss has none)'
        )
    dtype = lp.log_p.dtype
    if sklearn:
        losses = indicator_log_loss(targets, lp)
        per_row = 1
    else:
        losses = multilabel_bce(
            targets,
            lp,
            pos_weight=None if pos_weight is None else core.in_dtype(pos_weight, dtype),
            class_weights=None if class_weights is None else core.in_dtype(class_weights, dtype),
        )
        per_row = k
    with np.errstate(over="ignore", invalid="ignore"):  # sums past float64 (weights ~1e308): inf, not a 500
        if sample_weight is not None:  # scikit-learn's Σ s·loss / Σ s, every element of a row weighted s
            scale = sample_weight if losses.ndim == 1 else sample_weight[:, None]
            losses = core.weigh(losses, scale)  # in the dtype, float64 where a product overflows it
        losses = core.to_base(losses, log_base(options.base))
        loss = _reduce(losses, options.reduction, per_row, sample_weight)
    result = CrossEntropyResult(
        n=n,
        n_ignored=0,
        loss=loss,
        accuracy=_weighted_mean(((lp.log_p > lp.log_q) == (targets > 0.5)).mean(axis=1), sample_weight),
        mean_entropy=_weighted_mean(_binary_entropy(lp).mean(axis=1), sample_weight)
        / math.log(log_base(options.base)),
        convention=CrossEntropyConvention(
            classes=options.classes,
            input="logits" if name == "logits" else "probs",
            form="multilabel",
            truth="targets",
            dtype="float32" if dtype == np.float32 else "float64",
            base=options.base,
            unit=unit_of(options.base),
            reduction=options.reduction,
            eps=lp.eps,
            n_clipped=lp.n_clipped,
            tolerance=0.0,
            n_normalized=0,
            label_smoothing=0.0,
            class_weights=class_weights is not None,
            pos_weight=options.pos_weight,
            sample_weight=sample_weight is not None,
            ignore_index=None,
            multilabel_convention=options.multilabel_convention,
            matches=_PEERS[(options.multilabel_convention, name)],
        ),
    )
    per_sample = {"losses": losses} if options.reduction == "none" or options.per_sample else {}
    return Answer(result, per_sample, options.binary_data_output)


def _refuse_others(body: Body, options: CrossEntropyOptions) -> None:
    for field in _NOT_FOR_MULTILABEL:
        if body.fields.get(field) is not None:
            if field == "labels":
                raise core.InputError(
                    "labels",
                    "do not apply with multilabel: send N×K `targets` (0/1 indicators or probabilities)",
                )
            raise core.InputError(field, "does not apply with multilabel input")
    sent = {
        "label_smoothing": bool(options.label_smoothing),
        "ignore_index": options.ignore_index is not None,
        "top_k": options.top_k is not None,
        "pos_label": options.pos_label is not None,
        "normalize": options.normalize,
    }
    for field, is_sent in sent.items():
        if is_sent:
            raise core.InputError(field, "does not apply with multilabel input")


def _pos_weight(value: float | list[float] | None, k: int) -> FloatArray | None:
    if value is None:
        return None
    weights = np.asarray(value, dtype=np.float64)
    if weights.ndim == 1 and weights.size != k:
        raise core.InputError("pos_weight", f"must hold one weight per class ({k}); got {weights.size}")
    return weights


def _reduce(
    losses: FloatArray, reduction: str, per_row: int, sample_weight: FloatArray | None
) -> float | None:
    """mean: Σ / (per_row · Σ s) (N·K elements for torch, N rows for sklearn); sum: Σ; none: no scalar."""
    if reduction == "none":
        return None
    total = float(np.add.reduce(losses, axis=None, dtype=np.float64))
    if reduction == "sum":
        return total
    rows = losses.shape[0] if sample_weight is None else float(np.add.reduce(sample_weight, dtype=np.float64))
    if rows == 0:
        raise core.InputError(
            "sample_weight", "gives the samples zero total weight; the weighted mean is undefined"
        )
    return total / (rows * per_row)


def _weighted_mean(values: FloatArray, weights: FloatArray | None) -> float:
    if weights is None:
        return float(np.mean(values, dtype=np.float64))
    if weights.max() > 0:  # a ratio: scaled so that weights near 1e308 do not overflow
        weights = weights / weights.max()
    total = float(np.add.reduce(weights, dtype=np.float64))
    return math.nan if total == 0 else float(np.dot(values, weights)) / total


def _binary_entropy(lp: MultilabelLogProbs) -> FloatArray:
    """-(p log p + (1 - p) log(1 - p)) per element, in nats (0·log 0 = 0)."""
    p = np.exp(lp.log_p)
    q = np.exp(lp.log_q)
    return -(np.where(p > 0, p * lp.log_p, 0.0) + np.where(q > 0, q * lp.log_q, 0.0))
