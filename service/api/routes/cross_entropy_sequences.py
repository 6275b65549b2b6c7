"""``POST /v1/cross-entropy`` with B×T×K token sequences: the language-model branch of the route."""

from typing import Literal

import numpy as np

from service import core
from service.api.formats.inputs import Body
from service.api.schemas import CrossEntropyConvention, CrossEntropyOptions, CrossEntropyResult
from service.api.schemas.cross_entropy import SequenceRows, SequenceSummary
from service.api.schemas.logprobs import LanguageModelMetrics, MergeableTotals, Top1Calibration

from . import Answer, log_base, unit_of

#: Options of the N×K route that have no sequence form yet.
_NOT_FOR_SEQUENCES = ("targets", "class_weights")


def score_sequences(body: Body, options: CrossEntropyOptions, name: str, values: np.ndarray) -> Answer:
    """Token cross-entropy of B×T `labels` under B×T×K `values` (field `name`), and perplexities."""
    for field in _NOT_FOR_SEQUENCES:
        if body.fields.get(field) is not None:
            raise core.InputError(field, "is not supported with B×T×K sequence inputs; send B×T `labels`")
    for option in ("classes", "pos_label"):  # token ids index the vocabulary axis: no class names
        if getattr(options, option) is not None:
            raise core.InputError(option, "is not supported with B×T×K sequence inputs")
    if options.label_smoothing or options.normalize:
        bad = "label_smoothing" if options.label_smoothing else "normalize"
        raise core.InputError(bad, "is not supported with B×T×K sequence inputs")
    if body.fields.get("labels") is None:
        raise core.InputError("labels", "are required (B×T token ids) with B×T×K sequence inputs")
    bfloat16 = name in body.reader.bfloat16
    mask = body.array("mask") if body.fields.get("mask") is not None else None
    kind: Literal["logits", "probs"] = "logits" if name == "logits" else "probs"
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
    losses = core.to_base(scores.nll, base)
    total = float(np.add.reduce(losses, axis=None, dtype=np.float64))
    loss = {"mean": total / n, "sum": total, "none": None}[options.reduction]
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
        convention=CrossEntropyConvention(
            input=kind,
            form="sequence",
            truth="labels",
            dtype="float64" if values.dtype == np.float64 else "float32",
            base=options.base,
            unit=unit_of(options.base),
            reduction=options.reduction,
            eps=0.0 if kind == "logits" else core.resolve_eps(options.eps, np.dtype(np.float32)),
            n_clipped=scores.n_clipped,
            tolerance=0.0 if kind == "logits" else _tolerance(values, bfloat16),
            n_normalized=0,
            label_smoothing=0.0,
            class_weights=False,
            ignore_index=options.ignore_index,
            matches="torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=…) "
            "over (B, K, T); accuracy counts ties for the label",
        ),
        language_model=_summary(scores, totals),
    )
    per_token = options.reduction == "none" or options.per_sample
    return Answer(result, {"losses": losses} if per_token else {}, options.binary_data_output)


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
