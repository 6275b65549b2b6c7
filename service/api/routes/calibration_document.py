"""The calibration answer as its JSON document: plain dicts in the result models' field order.

``POST /v1/calibration`` (N×K and binary input) writes its answer from these documents,
printed by orjson, instead of constructing :class:`~service.api.schemas.CalibrationResult`
and serialising it (:mod:`service.api.formats.answers`). The documents hold exactly what the
models write: values cast to the fields' JSON types, non-finite floats as "Infinity",
"-Infinity" or "NaN", ``weight_sum`` only with sample_weight. The sequence and multilabel
answers still build the models, from these same documents (``tests/api/test_calibration_document.py``
checks the bytes agree with the models').
"""

import math
from collections.abc import Sequence
from typing import Any, Literal, TypedDict

import numpy as np

from service import core
from service.api.formats.answers import Document, json_float
from service.api.schemas.calibration import CalibrationMetrics, CalibrationOptions
from service.core.calibration import Target

from . import unit_of

#: CalibrationMetrics' fields, in its order.
METRIC_FIELDS = tuple(CalibrationMetrics.model_fields)
#: Reliability cells (groups × bins) a response may carry.
MAX_RELIABILITY_CELLS = 200_000


class ConventionStated(TypedDict):
    """The echoed convention's fields found by the computation rather than sent."""

    n_bins: int
    n_excluded_bins: int
    target: Target
    brier_scale: Literal["sum", "half"]
    eps: float
    n_clipped: int
    tolerance: float
    n_normalized: int
    tests_on: Literal["top_label", "positive_class"]
    p_values: str
    matches: str


def convention_document(
    options: CalibrationOptions,
    conv: core.Convention,
    *,
    input: Literal["logits", "probs"],
    form: Literal["categorical", "binary", "sequence", "multilabel"],
    dtype: np.dtype[Any],
    weighted: bool,
    stated: ConventionStated,
) -> Document:
    """The `convention` echoed by a calibration answer, as CalibrationConvention's JSON document."""
    return {
        "classes": None if options.classes is None else list(options.classes),
        "pos_label": options.pos_label,
        "input": input,
        "form": form,
        "dtype": "float32" if dtype == np.float32 else "float64",
        "preset": conv.preset,
        "binning": conv.binning,
        "edge_rule": conv.edge_rule,
        "quantile_method": conv.quantile_method,
        "n_bins": int(stated["n_bins"]),
        "closed": conv.closed,
        "overflow_bin": bool(conv.overflow_bin),
        "exclude_zero": bool(conv.exclude_zero),
        "clip": bool(conv.clip),
        "float32_confidence": bool(conv.float32_confidence),
        "top_k": None if options.top_k is None else [int(k) for k in options.top_k],
        "ignore_index": None if options.ignore_index is None else int(options.ignore_index),
        "sample_weight": weighted,
        "input_dtype_means": bool(conv.input_dtype_means),
        "min_bin_count": int(conv.min_bin_count),
        "n_excluded_bins": int(stated["n_excluded_bins"]),
        "target": stated["target"],
        "norm": conv.norm,
        "bin_weighting": conv.bin_weighting,
        "brier_scale": stated["brier_scale"],
        "base": options.base,
        "unit": unit_of(options.base),
        "eps": float(stated["eps"]),
        "n_clipped": int(stated["n_clipped"]),
        "tolerance": float(stated["tolerance"]),
        "n_normalized": int(stated["n_normalized"]),
        "level": float(conv.level),
        "tests_on": stated["tests_on"],
        "p_values": stated["p_values"],
        "matches": stated["matches"],
    }


def reliability_documents(bins: Sequence[core.Reliability], *, weighted: bool = False) -> list[Document]:
    """The answer's reliability bins as ReliabilityBins' documents, `weight_sum` when `weighted`."""
    cells = sum(r.count.size for r in bins)
    if cells > MAX_RELIABILITY_CELLS:
        raise core.InputError(
            "metrics",
            f"would return {cells} reliability bins (limit {MAX_RELIABILITY_CELLS}); "
            "request fewer bins or leave out reliability",
        )
    documents = []
    for r in bins:
        document: Document = {
            "group": None if r.group is None else int(r.group),
            "lower": _floats(r.lower),
            "upper": _floats(r.upper),
            "count": r.count.astype(np.int64).tolist(),
        }
        if weighted:
            document["weight_sum"] = _floats(r.weight)
        document["confidence"] = _floats(r.confidence)
        document["accuracy"] = _floats(r.accuracy)
        document["gap"] = _floats(r.gap)
        document["wilson_low"] = _floats(r.wilson_low)
        document["wilson_high"] = _floats(r.wilson_high)
        documents.append(document)
    return documents


def metrics_document(scalars: dict[str, float]) -> Document:
    """CalibrationMetrics' document: every metric field, null where not computed."""
    get = scalars.get
    return {  # a finite float as itself (v - v is 0 only then), anything else as json_float writes it
        name: None if (v := get(name)) is None else v if type(v) is float and v - v == 0 else json_float(v)
        for name in METRIC_FIELDS
    }


def float_lists(values: dict[str, Any] | None) -> dict[str, list[float | str]] | None:
    """`per_class` as the answer writes it (a dict of float lists), or None for none."""
    if not values:
        return None
    return {
        name: [json_float(v) for v in np.asarray(row, dtype=np.float64).tolist()]
        for name, row in values.items()
    }


def float_dict(values: dict[str, float] | None) -> dict[str, float | str] | None:
    """`top_k_accuracy` as the answer writes it."""
    return None if values is None else {name: json_float(v) for name, v in values.items()}


def _floats(values: np.ndarray) -> list[float | str | None]:
    """A float array as ReliabilityBins writes it: NaN as null (an empty bin), ±inf as strings.

    A finite sum means every value is finite (NaN or ±inf make it non-finite; a sum that
    overflows takes the value-by-value way, which gives finite values as they are): one
    ``sum`` over the listed floats, where ``np.isinf`` / ``np.isnan`` and their ``any()`` cost
    four NumPy calls an array of a dozen bins.
    """
    listed: list[float | str | None] = values.astype(np.float64, copy=False).tolist()
    if math.isfinite(sum(listed)):  # type: ignore[arg-type]
        return listed
    # NaN as null, finite as itself (v - v is 0 only for a finite v), ±inf as json_float writes it
    return [None if v != v else v if v - v == 0 else json_float(v) for v in listed]  # type: ignore[operator, arg-type]
