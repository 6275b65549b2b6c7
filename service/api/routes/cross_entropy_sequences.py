"""``POST /v1/cross-entropy`` with B×T×K token sequences: the language-model branch of the route."""

from typing import Literal

import numpy as np

from service import core
from service.api.formats.inputs import Body
from service.api.schemas import CrossEntropyConvention, CrossEntropyOptions, CrossEntropyResult
from service.api.schemas.cross_entropy import SequenceLoss, SequenceRows, SequenceSummary
from service.api.schemas.logprobs import LanguageModelMetrics, MergeableTotals, Top1Calibration

from . import Answer, log_base, unit_of


def score_sequences(body: Body, options: CrossEntropyOptions, name: str, values: np.ndarray) -> Answer:
    """Token cross-entropy of B×T `labels` (or B×T×K `targets`) under B×T×K `values` (field `name`).

    The plain token NLL gives `language_model`; class_weights, label_smoothing and soft targets
    change the reported `loss`/`losses` as PyTorch's cross_entropy does (`sequence_loss`).
    """
    for option in ("classes", "pos_label"):  # token ids index the vocabulary axis: no class names
        if getattr(options, option) is not None:
            raise core.InputError(option, "is not supported with B×T×K sequence inputs")
    if options.normalize:
        raise core.InputError("normalize", "is not supported with B×T×K sequence inputs")
    truth = body.pick("labels", "targets")
    bfloat16 = name in body.reader.bfloat16
    mask = body.array("mask") if body.fields.get("mask") is not None else None
    kind: Literal["logits", "probs"] = "logits" if name == "logits" else "probs"
    weights = None
    if body.fields.get("class_weights") is not None:
        weights = core.check_class_weights(body.array("class_weights"), int(values.shape[2]))
    if truth == "targets":
        return _soft_targets(body, options, name, values, kind, mask, weights)
    scores = core.token_scores(
        body.array("labels"),
        values,
        kind=kind,
        mask=mask,
        ignore_index=options.ignore_index,
        bfloat16=bfloat16,
        eps=options.eps,
        entropy=True,
        confidence=True,
        field=name,
    )
    n = int(np.count_nonzero(scores.scored))
    if n == 0:
        raise core.InputError("labels", "must leave at least one position scored (mask and ignore_index)")
    base = log_base(options.base)
    weighted = None
    if weights is not None or options.label_smoothing:
        weighted = _sequence_loss_of(
            values, kind, mask, bfloat16, options, weights, name, labels=body.array("labels")
        )
    losses = core.to_base(scores.nll if weighted is None else weighted.loss, base)
    loss = _reduce(losses, None if weighted is None else weighted, n, options.reduction)
    assert scores.entropy is not None
    entropy = float(np.add.reduce(scores.entropy, axis=None, dtype=np.float64)) / n
    hits = {1: scores.hits(1), 5: scores.hits(5)}
    totals = core.PerplexityTotals.from_sequences(
        scores.sequence_nll,
        scores.tokens,
        bytes=_counts(body, "bytes"),
        words=_counts(body, "words"),
        hits=hits,
    )
    result = CrossEntropyResult(
        n=n,
        n_ignored=int(scores.scored.size - n),
        loss=loss,
        accuracy=int(hits[1].sum()) / n,
        mean_entropy=float(core.to_base(np.asarray(entropy), base)),
        convention=_convention(options, values, kind, bfloat16, "labels", weights, scores.n_clipped),
        language_model=_summary(scores, totals),
        sequence_loss=None if weighted is None else _sequence_loss(weighted, base),
    )
    per_token = options.reduction == "none" or options.per_sample
    return Answer(result, {"losses": losses} if per_token else {}, options.binary_data_output)


def _sequence_loss_of(
    values: np.ndarray,
    kind: Literal["logits", "probs"],
    mask: np.ndarray | None,
    bfloat16: bool,
    options: CrossEntropyOptions,
    weights: np.ndarray | None,
    name: str,
    **truth: np.ndarray,
) -> core.SequenceLoss:
    """PyTorch's loss of `values` against `labels` or `targets` (`truth`) under the request's options."""
    return core.sequence_loss(
        values,
        kind=kind,
        mask=mask,
        ignore_index=options.ignore_index,
        bfloat16=bfloat16,
        eps=options.eps,
        class_weights=weights,
        label_smoothing=options.label_smoothing,
        field=name,
        **truth,
    )


def _soft_targets(
    body: Body,
    options: CrossEntropyOptions,
    name: str,
    values: np.ndarray,
    kind: Literal["logits", "probs"],
    mask: np.ndarray | None,
    weights: np.ndarray | None,
) -> Answer:
    """PyTorch's cross-entropy with B×T×K probability targets; no perplexities (no realised token)."""
    for field in ("bytes", "words"):
        if body.fields.get(field) is not None:
            raise core.InputError(field, "is not supported with B×T×K `targets` (perplexities need `labels`)")
    bfloat16 = name in body.reader.bfloat16
    found = _sequence_loss_of(
        values, kind, mask, bfloat16, options, weights, name, targets=body.array("targets")
    )
    assert found.correct is not None and found.entropy is not None
    n = int(np.count_nonzero(found.scored))
    if n == 0:
        raise core.InputError("mask", "must leave at least one position scored")
    base = log_base(options.base)
    losses = core.to_base(found.loss, base)
    entropy = float(np.add.reduce(found.entropy, axis=None, dtype=np.float64)) / n
    result = CrossEntropyResult(
        n=n,
        n_ignored=int(found.scored.size - n),
        loss=_reduce(losses, found, n, options.reduction),
        accuracy=int(np.count_nonzero(found.correct)) / n,
        mean_entropy=float(core.to_base(np.asarray(entropy), base)),
        convention=_convention(options, values, kind, bfloat16, "targets", weights, found.n_clipped),
        sequence_loss=_sequence_loss(found, base),
    )
    per_token = options.reduction == "none" or options.per_sample
    return Answer(result, {"losses": losses} if per_token else {}, options.binary_data_output)


def _reduce(losses: np.ndarray, weighted: core.SequenceLoss | None, n: int, reduction: str) -> float | None:
    """PyTorch's reductions: the mean divides by Σ w[y] over scored tokens (soft targets: by n)."""
    total = float(np.add.reduce(losses, axis=None, dtype=np.float64))
    if reduction == "none":
        return None
    if reduction == "sum":
        return total
    weight = n if weighted is None else float(weighted.weight.sum())
    if weight == 0:
        raise core.InputError(
            "class_weights", "give the scored tokens zero total weight; the mean is undefined"
        )
    return total / weight


def _sequence_loss(found: core.SequenceLoss, base: float) -> SequenceLoss:
    return SequenceLoss(
        n_sequences=int(found.scored.shape[0]),
        tokens=np.count_nonzero(found.scored, axis=1).tolist(),
        loss=core.to_base(found.sequence_loss, base).tolist(),
        weight=found.sequence_weight.tolist(),
    )


def _convention(
    options: CrossEntropyOptions,
    values: np.ndarray,
    kind: Literal["logits", "probs"],
    bfloat16: bool,
    truth: Literal["labels", "targets"],
    weights: np.ndarray | None,
    n_clipped: int,
) -> CrossEntropyConvention:
    peer = "labels" if truth == "labels" else "targets.transpose(1, 2)"
    return CrossEntropyConvention(
        input=kind,
        form="sequence",
        truth=truth,
        dtype="float64" if values.dtype == np.float64 else "float32",
        base=options.base,
        unit=unit_of(options.base),
        reduction=options.reduction,
        eps=0.0 if kind == "logits" else core.resolve_eps(options.eps, np.dtype(np.float32)),
        n_clipped=n_clipped,
        tolerance=0.0 if kind == "logits" else _tolerance(values, bfloat16),
        n_normalized=0,
        label_smoothing=float(options.label_smoothing),
        class_weights=weights is not None,
        ignore_index=options.ignore_index,
        matches=f"torch.nn.functional.cross_entropy(logits.transpose(1, 2), {peer}, weight=, "
        "label_smoothing=, ignore_index=) over (B, K, T); "
        + ("accuracy counts ties for the label" if truth == "labels" else "accuracy: argmax of the target"),
    )


def _summary(scores: core.TokenScores, totals: core.PerplexityTotals) -> SequenceSummary:
    assert scores.confidence is not None and scores.rank is not None
    confidence = scores.confidence[scores.scored]
    return SequenceSummary(
        n_sequences=totals.sequences,
        metrics=LanguageModelMetrics(**totals.metrics()),
        calibration=Top1Calibration(
            n_tokens=int(confidence.size),
            teacher_forced=True,
            **core.top1_calibration(confidence, scores.rank[scores.scored] == 0),
        ),
        per_sequence=SequenceRows(
            nll=scores.sequence_nll.tolist(),
            tokens=scores.tokens.tolist(),
            perplexity=core.sequence_perplexity(scores.sequence_nll, scores.tokens).tolist(),
        ),
        totals=MergeableTotals.of(totals),
    )


def _counts(body: Body, name: str) -> np.ndarray | None:
    return None if body.fields.get(name) is None else body.array(name)


def _tolerance(values: np.ndarray, bfloat16: bool) -> float:
    sent = "bfloat16" if bfloat16 else core.dtype_name(values.dtype)
    return {"float64": 1e-6, "float32": 1e-4}.get(sent, 1e-2)
