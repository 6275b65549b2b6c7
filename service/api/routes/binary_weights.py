"""PyTorch's binary weights on ``POST /v1/cross-entropy``: ``pos_weight`` and per-element ``weight``."""

from dataclasses import dataclass

import numpy as np

from service import core
from service.api.formats.inputs import Body, Prediction
from service.api.schemas import CrossEntropyOptions
from service.core._typing import FloatArray

_EXCLUSIVE = ("class_weights", "sample_weight")


@dataclass(frozen=True)
class BinaryWeights:
    """``pos_weight`` as the class weights [1, p] and ``weight`` as per-element factors; mean over N."""

    pos_weight: float | None
    class_weights: FloatArray | None
    element: FloatArray | None


def read_binary_weights(
    body: Body, options: CrossEntropyOptions, prediction: Prediction
) -> BinaryWeights | None:
    """Validate `pos_weight` / `weight`; ``None`` when neither was sent."""
    has_weight = body.fields.get("weight") is not None
    if options.pos_weight is None and not has_weight:
        return None
    field = "pos_weight" if options.pos_weight is not None else "weight"
    dist = prediction.dist
    if not dist.binary:
        raise core.InputError(
            field, "applies to binary input only (a length-N vector of positive-class logits or probs)"
        )
    for other in _EXCLUSIVE:
        if body.fields.get(other) is not None:
            raise core.InputError(
                field, f"cannot be combined with `{other}` (PyTorch's BCE has no such option)"
            )
    if isinstance(options.pos_weight, list):
        raise core.InputError(
            "pos_weight", "must be one number for binary input (a list is per class: multilabel)"
        )
    if options.label_smoothing:
        raise core.InputError(field, "cannot be combined with `label_smoothing` (PyTorch's BCE has none)")
    if options.ignore_index is not None:
        raise core.InputError(field, "cannot be combined with `ignore_index` (PyTorch's BCE has none)")
    pos_weight = options.pos_weight
    class_weights = None
    if pos_weight is not None:
        class_weights = core.in_dtype(np.array([1.0, pos_weight]), dist.dtype)
    element = None
    if has_weight:
        element = core.check_sample_weight(body.array("weight"), dist.n_samples, field="weight")
        element = core.in_dtype(element, dist.dtype)
    return BinaryWeights(pos_weight, class_weights, element)
