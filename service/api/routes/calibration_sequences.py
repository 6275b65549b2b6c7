"""``POST /v1/calibration`` with B×T×K token sequences: calibration of the top-1 token.

The B·T positions are scored in blocks of rows (:func:`service.core.token_scores`): the top-1
probability and whether the label is top-1 (ties count for it) per scored position, never a
second B×T×K array. Top-label calibration of a K-class prediction is the calibration of the
pairs (top-1 probability, top-1 is right), so every top-label metric is computed on those pairs
with the convention sent (binning, bins, norm, presets, HELM's 10 equal-mass bins, …) and equals
the N×K route's answer on the flattened scored rows. The Brier score, which needs each
position's whole distribution, is a second blocked pass (:func:`service.core.sequence_brier`),
asked for by name. Class-wise and marginal targets and the Brier decomposition bin every class's
pairs a block of positions at a time (:func:`service.core.class_bin_sums`, shared edges only);
``ace_nixon`` (each class sorted over all positions) is refused.
"""

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from service import core
from service.api.formats.inputs import Body, Prediction
from service.api.schemas.calibration import (
    CalibrationConvention,
    CalibrationMetrics,
    CalibrationOptions,
    CalibrationResult,
)
from service.core.calibration import METRICS
from service.core.calibration.brier import brier_factor

from . import Answer

#: Metrics that need every class's pairs.
WHOLE_DISTRIBUTION = ("ace_nixon",)
#: Metrics computed from the top-1 pairs alone (`nll` from the token losses, `accuracy`,
#: `mean_confidence` and `confidence_gap` from the pairs directly: on the pairs as a binary problem
#: they would mean something else). `brier` is a second pass over the positions: asked for by name.
SEQUENCE_METRICS = tuple(m for m in METRICS if m not in (*WHOLE_DISTRIBUTION, "brier"))
_DIRECT = {"nll", "accuracy", "mean_confidence", "confidence_gap", "brier"}


@dataclass
class SequenceCalibration:
    """Top-1 calibration of scored positions: the report on the pairs and what the answer states."""

    report: core.CalibrationReport  # of the (top-1 probability, top-1 is right) pairs
    scalars: dict[str, float]  # the metrics asked, as a K-class top-label answer states them
    convention: CalibrationConvention
    n: int
    n_ignored: int
    top_k: dict[str, float] | None


def score_sequence_calibration(
    body: Body, options: CalibrationOptions, name: str, values: np.ndarray
) -> Answer:
    """Top-1 calibration of B×T `labels` under B×T×K `values` (field `name`)."""
    from .calibration import reliability_bins

    found = sequence_calibration(body, options, name, values)
    result = CalibrationResult(
        n=found.n,
        n_ignored=found.n_ignored,
        n_classes=int(values.shape[2]),
        metrics=CalibrationMetrics(**found.scalars),
        per_class=found.report.per_class or None,
        reliability=reliability_bins(found.report.reliability) if found.report.reliability else None,
        top_k_accuracy=found.top_k,
        bootstrap=None,
        convention=found.convention,
    )
    return Answer(result)


def sequence_calibration(
    body: Body,
    options: CalibrationOptions,
    name: str,
    values: np.ndarray,
    metrics: Collection[str] | None = None,
) -> SequenceCalibration:
    """Score the positions a block of rows at a time, then the top-label `metrics` (default: the options')."""
    from .calibration import _nll_scale, convention_of, convention_result

    _refuse(body, options)
    convention = convention_of(options)
    target = convention.target or "top_label"
    if target not in ("top_label", "classwise", "marginal"):
        raise core.InputError(
            "target",
            f'"{target}" is not supported with B×T×K sequence inputs; '
            'send "top_label", "classwise" or "marginal"',
        )
    if metrics is None:
        metrics = SEQUENCE_METRICS if options.metrics is None else options.metrics
    wanted = set(metrics)
    refused = sorted(wanted & set(WHOLE_DISTRIBUTION))
    if refused:
        raise core.InputError(
            "metrics",
            f"{', '.join(refused)} need each position's whole distribution: not available for B×T×K inputs",
        )
    if body.fields.get("labels") is None:
        raise core.InputError("labels", "are required (B×T token ids) with B×T×K sequence inputs")
    bfloat16 = name in body.reader.bfloat16
    kind: Literal["logits", "probs"] = "logits" if name == "logits" else "probs"
    mask = body.array("mask") if body.fields.get("mask") is not None else None
    scores = core.token_scores(
        body.array("labels"),
        values,
        kind=kind,
        mask=mask,
        ignore_index=options.ignore_index,
        bfloat16=bfloat16,
        eps=options.eps,
        confidence=True,
        field=name,
    )
    assert scores.confidence is not None and scores.rank is not None
    scored = scores.scored
    n = int(np.count_nonzero(scored))
    if n == 0:
        raise core.InputError("labels", "must leave at least one position scored (mask and ignore_index)")
    confidence = scores.confidence[scored]
    correct = (scores.rank[scored] == 0).astype(np.int64)
    pairs = core.Distribution.from_probs(confidence, eps=0.0, validate=False)
    # torchmetrics rounds top-label confidences to float32; on the pairs that is its binary rule
    float32 = convention.float32_confidence or convention.preset == "torchmetrics"
    binary = replace(convention, target="positive_class", float32_confidence=float32)
    report = core.calibration_report(correct, pairs, binary, metrics=(wanted - _DIRECT) or {"ece"})
    scalars = {k: v for k, v in report.scalars.items() if k in {m for w in wanted for m in METRICS[w]}}
    accuracy = float(correct.mean())
    mean_confidence = float(confidence.mean(dtype=np.float64))
    direct = {
        "nll": float(scores.nll[scored].sum(dtype=np.float64)) / n * _nll_scale(options),
        "accuracy": accuracy,
        "mean_confidence": mean_confidence,
        "confidence_gap": mean_confidence - accuracy,
    }
    scalars.update({k: v for k, v in direct.items() if k in wanted})
    factor = brier_factor(convention.brier_scale, int(values.shape[2]), binary=False)
    if "brier" in wanted:  # the K-way Brier score, not the pairs' binary one; no decomposition
        brier = core.sequence_brier(
            body.array("labels"),
            values,
            kind=kind,
            mask=mask,
            ignore_index=options.ignore_index,
            bfloat16=bfloat16,
            field=name,
        )
        scalars["brier"] = factor * float(np.add.reduce(brier, axis=None)) / n
    murphy = "brier" in wanted and convention.binning != "quantile"  # equal-mass: no decomposition
    if target != "top_label" or murphy:
        sums = core.class_bin_sums(
            body.array("labels"),
            values,
            convention,
            target=target,
            brier=murphy,
            kind=kind,
            mask=mask,
            ignore_index=options.ignore_index,
            bfloat16=bfloat16,
            field=name,
        )
        found = core.class_report(sums, target, brier_factor=factor, reliability="reliability" in wanted)
        selected = {m for w in wanted for m in METRICS[w]}
        scalars.update({k: v for k, v in found.scalars.items() if k in selected})
        if target != "top_label":
            report = replace(
                report,
                per_class=found.per_class,
                reliability=found.reliability,
                target=target,
                n_excluded_bins=found.n_excluded_bins,
            )
    prediction = Prediction(pairs, name, core.dtype_name(confidence.dtype), 0.0, 0)
    echo = convention_result(options, prediction, report)
    echo = echo.model_copy(
        update={
            "input": kind,
            "form": "sequence",
            "target": target,
            "tests_on": "top_label",
            "eps": 0.0 if kind == "logits" else core.resolve_eps(options.eps, np.dtype(np.float32)),
            "n_clipped": scores.n_clipped,
            "float32_confidence": convention.float32_confidence,
            "brier_scale": "half" if factor == 0.5 else "sum",
        }
    )
    top_k = None
    if options.top_k is not None:
        top_k = {str(k): float(np.count_nonzero(scores.rank[scored] < k)) / n for k in options.top_k}
    return SequenceCalibration(report, scalars, echo, n, int(scored.size - n), top_k)


def _refuse(body: Body, options: CalibrationOptions) -> None:
    """Options with no sequence form: a 422 naming each."""
    for field in ("sample_weight",):
        if body.fields.get(field) is not None:
            raise core.InputError(field, "is not supported with B×T×K sequence inputs")
    for field in ("bootstrap", "classes", "pos_label"):
        if getattr(options, field) is not None:
            raise core.InputError(field, "is not supported with B×T×K sequence inputs")
