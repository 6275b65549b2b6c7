"""Turn a parsed JSON body into validated core inputs: options, predictions, truth."""

from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast

import numpy as np
import orjson
from pydantic import BaseModel

from service.core import (
    Distribution,
    InputError,
    check_labels,
    check_logits,
    check_probabilities,
    check_same_length,
    check_targets,
    default_tolerance,
    dtype_name,
)
from service.core._typing import FloatArray, IntArray

from ..schemas.common import ClassVocabulary, ProbabilityOptions
from .arrays import ArrayReader, widen_bf16
from .vocabulary import check_vocabulary, ignored_sentinel, map_labels

OptionsModel = TypeVar("OptionsModel", bound=BaseModel)

#: Distinct option sets kept validated (all of them dropped when full), and the longest one kept.
OPTIONS_CACHE_SIZE = 512
OPTIONS_KEY_BYTES = 4096
_VALIDATED: dict[tuple[type[BaseModel], bytes], BaseModel] = {}


def validated_options(model: type[OptionsModel], scalars: dict[str, Any]) -> OptionsModel:
    """`scalars` validated as `model`, once per distinct set of options.

    Clients send the same few option sets again and again (most send none), and validating
    even an empty set costs ~6 µs of a ~100 µs small request; so the validated object is kept,
    keyed by the options' JSON text with sorted keys (``1`` and ``1.0`` stay distinct, as
    validation may tell them apart). Option objects are only read by the routes, never
    changed, so requests may share one. Invalid options are validated (and refused) every time.

    Examples
    --------
    >>> from service.api.schemas.recalibration import ApplyOptions
    >>> validated_options(ApplyOptions, {}) is validated_options(ApplyOptions, {})
    True
    """
    try:
        key = (model, orjson.dumps(scalars, option=orjson.OPT_SORT_KEYS))
    except TypeError:  # not plain JSON (an array decoded from a binary body): validated each time
        return model.model_validate(scalars)
    known = _VALIDATED.get(key)
    if known is not None:
        return cast(OptionsModel, known)
    options = model.model_validate(scalars)
    if len(key[1]) <= OPTIONS_KEY_BYTES:
        if len(_VALIDATED) >= OPTIONS_CACHE_SIZE:
            _VALIDATED.clear()
        _VALIDATED[key] = options
    return options


@dataclass
class Body:
    """A parsed request: its arrays (raw JSON values until decoded) and a reader for them."""

    fields: dict[str, Any]
    reader: ArrayReader
    rows: int = 0  # most rows of any array decoded so far (reported by metrics and access logs)

    def scalars(self, array_fields: tuple[str, ...]) -> dict[str, Any]:
        """The fields other than `array_fields`: small options for a Pydantic model to validate."""
        return {k: v for k, v in self.fields.items() if k not in array_fields}

    def options(self, model: type[OptionsModel], array_fields: tuple[str, ...]) -> OptionsModel:
        """The fields other than `array_fields`, validated as `model` (see :func:`validated_options`)."""
        return validated_options(model, self.scalars(array_fields))

    def pick(self, first: str, second: str) -> str:
        """The one field of the pair that was sent, or raise."""
        sent = [name for name in (first, second) if self.fields.get(name) is not None]
        if len(sent) == 1:
            return sent[0]
        if sent:
            raise InputError(second, f"must not be sent with `{first}` (exactly one of the two); got both")
        raise InputError(first, f"or `{second}` is required (exactly one of the two); got neither")

    def array(self, name: str, *, bfloat16: bool = False) -> np.ndarray:
        """Decode the array field `name`; a BF16 tensor as float32, or as its raw words with `bfloat16`.

        The decoded array replaces the JSON value, so a large list of Python floats is freed as
        soon as it is read rather than when the response is sent: fewer live objects to fragment
        the allocator's arenas under load (docs/operations.md, Memory).
        """
        array = self.reader.read(self.fields[name], name)
        if name in self.reader.bfloat16 and not bfloat16:  # uint16 bit patterns: widen them exactly
            array = widen_bf16(array)
            self.reader.bfloat16.discard(name)
        self.fields[name] = array
        self.rows = max(self.rows, len(array) if array.ndim else 0)
        return array


@dataclass
class Prediction:
    """Validated predictions and how they were sent."""

    dist: Distribution
    field: str
    dtype: str
    tolerance: float
    n_normalized: int


def read_prediction(
    body: Body, probs_field: str, logits_field: str, options: ProbabilityOptions
) -> Prediction:
    """Build the predicted distributions from whichever of the two fields was sent."""
    name = body.pick(logits_field, probs_field)
    raw = body.array(name)
    if name == logits_field:
        logits = check_logits(raw, field=name)
        tolerance = options.tolerance or default_tolerance(raw.dtype)
        return Prediction(
            Distribution.from_logits(logits, validate=False), name, dtype_name(logits.dtype), tolerance, 0
        )
    return probs_prediction(raw, name, options)


def probs_prediction(raw: np.ndarray, name: str, options: ProbabilityOptions) -> Prediction:
    """The predicted distributions of probabilities `raw` sent as `name`, checked under `options`."""
    tolerance = options.tolerance or default_tolerance(raw.dtype)
    probs = check_probabilities(raw, field=name, tolerance=tolerance, normalize=options.normalize)
    n_normalized = _count_renormalised(raw, probs) if options.normalize else 0
    dist = Distribution.from_probs(probs, eps=options.eps, validate=False)
    return Prediction(dist, name, dtype_name(probs.dtype), tolerance, n_normalized)


def _count_renormalised(raw: np.ndarray, probs: FloatArray) -> int:
    if probs.ndim == 1:
        return 0
    return int(np.count_nonzero(np.any(raw != probs, axis=1)))


@dataclass
class Truth:
    """Validated hard labels or soft targets (N×K, binary widened to [1 - t, t])."""

    labels: IntArray | None
    targets: FloatArray | None
    sample_weight: FloatArray | None = None  # per-sample weights, where the endpoint takes them
    #: The label value that marks ignored rows in `labels` (column indices): `ignore_index` as sent,
    #: or, once `classes` mapped names to columns, :func:`~.vocabulary.ignored_sentinel`.
    ignore_index: int | None = None

    @property
    def field(self) -> str:
        """Which truth field was sent."""
        return "labels" if self.labels is not None else "targets"


def read_truth(
    body: Body,
    prediction: Prediction,
    *,
    ignore_index: int | None = None,
    vocabulary: ClassVocabulary | None = None,
) -> Truth:
    """Read exactly one of `labels` or `targets`, shaped like the predictions (`classes`: names).

    With `classes`, labels are names mapped to columns, `ignore_index` compared with the label as
    sent (before mapping, as PyTorch compares it with the target as given), and soft targets'
    columns are the declared classes (their count checked).
    """
    name = body.pick("labels", "targets")
    named = vocabulary is not None and (vocabulary.classes is not None or vocabulary.pos_label is not None)
    if named and name == "labels":
        assert vocabulary is not None
        return _named_labels(body, prediction, vocabulary, ignore_index)
    if named:
        assert vocabulary is not None
        _check_named_columns(prediction, vocabulary)
    raw = body.array(name)
    dist = prediction.dist
    check_same_length(name, raw.shape[0] if raw.ndim else 0, dist.n_samples, other=prediction.field)
    if name == "labels":
        return Truth(
            check_labels(raw, dist.n_classes, ignore_index=ignore_index), None, ignore_index=ignore_index
        )
    if ignore_index is not None:
        raise InputError("ignore_index", "applies to hard `labels` only; got soft `targets`")
    targets = check_targets(raw, dist.n_classes, binary=dist.binary, tolerance=prediction.tolerance)
    if dist.binary:
        targets = np.stack([1 - targets, targets], axis=1)
    return Truth(None, targets.astype(dist.dtype, copy=False))


def _check_named_columns(prediction: Prediction, vocabulary: ClassVocabulary) -> None:
    """Soft targets with `classes`: the classes name the columns (binary: `pos_label` the positive one)."""
    if vocabulary.classes is None:
        raise InputError("pos_label", "needs `classes` (the two class names it picks from)")
    dist = prediction.dist
    check_vocabulary(vocabulary.classes, vocabulary.pos_label, dist.n_classes, binary=dist.binary)


def _named_labels(
    body: Body, prediction: Prediction, vocabulary: ClassVocabulary, ignore_index: int | None
) -> Truth:
    if vocabulary.classes is None:
        raise InputError("pos_label", "needs `classes` (the two class names it picks from)")
    if ignore_index is not None and isinstance(vocabulary.classes[0], str):
        raise InputError(
            "ignore_index",
            "is an integer and never equals a string label: with string `classes`, leave it out "
            "(or drop the rows)",
        )
    raw = body.fields["labels"]
    raw = raw if isinstance(raw, list) else body.array("labels")
    dist = prediction.dist
    n = len(raw) if isinstance(raw, list) else int(raw.shape[0]) if raw.ndim else 0
    check_same_length("labels", n, dist.n_samples, other=prediction.field)
    labels = map_labels(
        raw,
        vocabulary.classes,
        vocabulary.pos_label,
        dist.n_classes,
        binary=dist.binary,
        ignore_index=ignore_index,
    )
    sentinel = None if ignore_index is None else ignored_sentinel(ignore_index, dist.n_classes)
    return Truth(labels, None, ignore_index=sentinel)


def drop_ignored(
    prediction: Prediction, labels: IntArray, ignore_index: int | None, *, sent: int | None = None
) -> tuple[Prediction, IntArray, int]:
    """The rows whose label is not `ignore_index`, and how many were dropped.

    Every label ignored is a 422 naming `labels` and the value `sent` (default `ignore_index`):
    there is nothing to calibrate or fit.
    """
    if ignore_index is None:
        return prediction, labels, 0
    kept = labels != ignore_index
    n_kept = int(np.count_nonzero(kept))
    if n_kept == labels.size:
        return prediction, labels, 0
    if n_kept == 0:
        shown = ignore_index if sent is None else sent
        raise InputError("labels", f"must hold a label other than ignore_index ({shown})")
    dist = prediction.dist
    if dist.logits is not None:
        subset = Distribution.from_logits(dist.logits[kept], validate=False)
    else:
        assert dist.sent_probs is not None
        subset = Distribution.from_probs(dist.sent_probs[kept], eps=dist.eps, validate=False)
    return replace(prediction, dist=subset), labels[kept], labels.size - n_kept
