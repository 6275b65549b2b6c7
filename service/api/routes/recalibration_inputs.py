"""What the recalibration routes read: the scores maps act on and the truth of a fit.

Shared by ``POST /v1/temperature``, ``POST /v1/recalibrate`` and ``POST /v1/apply``
(:mod:`.recalibration`).
"""

from dataclasses import replace

import numpy as np

from service import core
from service.api.formats.inputs import Body, Prediction, Truth, drop_ignored, read_prediction, read_truth
from service.api.schemas.common import ProbabilityOptions
from service.api.schemas.recalibration import FitOptions
from service.core._typing import FloatArray
from service.core.maps.score_isotonic import check_scores


def read_fit(
    body: Body, options: FitOptions, *, method: str = "temperature"
) -> tuple[Prediction, FloatArray, Truth, int]:
    """Predictions, the scores maps act on, and the truth of a fit, without ignored rows (and their count)."""
    prediction, scores = read_scores(body, options, method=method)
    truth = read_truth(body, prediction, ignore_index=options.ignore_index, vocabulary=options)
    if body.fields.get("sample_weight") is not None:
        weights = core.check_sample_weight(body.array("sample_weight"), prediction.dist.n_samples)
        truth = replace(truth, sample_weight=weights.astype(np.float64))
    if truth.ignore_index is None or truth.labels is None:
        return prediction, scores, truth, check_weight_sum(truth, 0)
    kept = truth.labels != truth.ignore_index
    prediction, labels, n_ignored = drop_ignored(
        prediction, truth.labels, truth.ignore_index, sent=options.ignore_index
    )
    if n_ignored:
        scores = scores[kept]
        truth = subset(truth, kept)
    return prediction, scores, truth, check_weight_sum(truth, n_ignored)


def check_weight_sum(truth: Truth, n_ignored: int) -> int:
    """`n_ignored`, once the weights (of the rows kept) are known not to be all zero."""
    if truth.sample_weight is not None and not truth.sample_weight.max(initial=0.0) > 0:
        kept = " of the rows not ignored" if n_ignored else ""
        raise core.InputError("sample_weight", f"must have a positive sum{kept}; got all zero")
    return n_ignored


def read_scores(
    body: Body, options: ProbabilityOptions, *, method: str = "temperature"
) -> tuple[Prediction, FloatArray]:
    """The predictions and what maps act on: the logits as sent (binary: length N), else log(max(p, eps)).

    Logits are fitted as sent, not through log-softmax, so float32 input loses
    nothing to an extra rounding. Raw `scores` (method isotonic) are returned as sent,
    with their softmax/sigmoid as the "before" distribution.
    """
    if body.fields.get("mask") is not None:
        raise core.InputError("mask", "applies to B×T×K sequence inputs only")
    if body.fields.get("scores") is not None:
        return _raw_scores(body, options, method)
    name = body.pick("logits", "probs")
    if name == "probs":
        prediction = read_prediction(body, "probs", "logits", options)
        if prediction.dist.eps == 0 and np.isneginf(prediction.dist.log_probs).any():
            raise core.InputError(
                "eps",
                "must be positive (or auto) to fit or apply a map to probabilities containing 0: "
                "log 0 = -inf is not a logit",
            )
        return prediction, prediction.dist.log_probs
    raw = body.array(name)
    logits = core.check_logits(raw, field=name)
    tolerance = options.tolerance or core.default_tolerance(raw.dtype)
    dist = core.Distribution.from_logits(logits, validate=False)
    return Prediction(dist, name, core.dtype_name(logits.dtype), tolerance, 0), logits


#: Methods that take raw `scores`: isotonic maps them as sent; Platt's σ(a·s + b) acts on them as on logits.
SCORE_METHODS = ("isotonic", "platt", "sigmoid")


def _raw_scores(body: Body, options: ProbabilityOptions, method: str) -> tuple[Prediction, FloatArray]:
    for other in ("logits", "probs"):
        if body.fields.get(other) is not None:
            raise core.InputError(
                "scores", f"must not be sent with `{other}` (exactly one of the three); got both"
            )
    if method not in SCORE_METHODS:
        raise core.InputError(
            "scores",
            f'apply to methods "isotonic", "sigmoid" and "platt" only; got "{method}"',
        )
    raw = body.array("scores")
    scores = check_scores(raw)
    tolerance = options.tolerance or core.default_tolerance(scores.dtype)
    dist = core.Distribution.from_logits(scores, validate=False)
    return Prediction(dist, "scores", core.dtype_name(scores.dtype), tolerance, 0), scores


def subset(truth: Truth, rows: np.ndarray) -> Truth:
    """The truth of `rows` only."""
    return Truth(
        None if truth.labels is None else truth.labels[rows],
        None if truth.targets is None else truth.targets[rows],
        None if truth.sample_weight is None else truth.sample_weight[rows],
    )
