"""What an apply or a fit states, as JSON documents in the result models' field order.

``POST /v1/apply`` with the truth prints its ``metrics`` and ``convention`` from these plain
dicts instead of building :class:`~service.api.schemas.recalibration.Metrics` and
:class:`~service.api.schemas.recalibration.RecalibrationConvention` per request
(:mod:`service.api.formats.answers`); the fits build those models from the same documents, so
both say the same (``tests/api/test_apply_document.py`` checks the bytes agree with the models').
:func:`metrics` and :func:`convention` are those models.
"""

from typing import Any

import numpy as np

from service import core
from service.api.formats.answers import Document, json_float
from service.api.formats.inputs import Prediction, Truth
from service.api.schemas.recalibration import Metrics, RecalibrationConvention
from service.core._typing import FloatArray

from . import log_base, unit_of


def scores(log_probs: FloatArray, truth: Truth, base: Any) -> dict[str, float]:
    """The reported scores of `log_probs` against `truth`, NLL in the unit of `base` (Metrics' fields)."""
    found = core.fit_metrics(
        log_probs, labels=truth.labels, targets=truth.targets, sample_weight=truth.sample_weight
    )
    return {
        "nll": float(found.nll / np.log(log_base(base))),
        "ece": float(found.ece),
        "brier": float(found.brier),
        "accuracy": float(found.accuracy),
    }


def metrics_document(log_probs: FloatArray, truth: Truth, base: Any) -> Document:
    """Metrics' JSON document of :func:`scores` (non-finite values as "Infinity", ... strings)."""
    return {name: json_float(value) for name, value in scores(log_probs, truth, base).items()}


def convention_document(prediction: Prediction, truth: Truth, options: Any, peer: str) -> Document:
    """How the numbers of a fit or an apply were computed (RecalibrationConvention's document)."""
    dist = prediction.dist
    classes = getattr(options, "classes", None)
    ignore_index = getattr(options, "ignore_index", None)
    return {
        "input": prediction.field,
        "form": "binary" if dist.binary else "categorical",
        "truth": truth.field,
        "dtype": core.dtype_name(dist.log_probs.dtype),
        "base": options.base,
        "unit": unit_of(options.base),
        "eps": float(dist.eps),
        "n_clipped": int(dist.n_clipped),
        "tolerance": float(prediction.tolerance),
        "n_normalized": int(prediction.n_normalized),
        "ece_bins": int(core.ECE_BINS),
        "ignore_index": None if ignore_index is None else int(ignore_index),
        "sample_weight": truth.sample_weight is not None,
        "classes": None if classes is None else list(classes),
        "pos_label": getattr(options, "pos_label", None),
        "matches": peer,
    }


def metrics(log_probs: FloatArray, truth: Truth, base: Any) -> Metrics:
    """The reported scores of `log_probs` against `truth`, NLL in the unit of `base`."""
    return Metrics(**scores(log_probs, truth, base))


def convention(prediction: Prediction, truth: Truth, options: Any, peer: str) -> RecalibrationConvention:
    """How the numbers of a fit or an apply were computed."""
    return RecalibrationConvention(**convention_document(prediction, truth, options, peer))
