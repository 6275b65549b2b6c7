"""Rules of the recalibration maps (fit, apply) and of calibration binnings: inputs a method takes, an applied
map's arrays shaped by the predictions, bin edges from 0 to 1, the fields a preset fixes."""

from typing import Any

import numpy as np

from service.api.schemas.calibration import CONVENTION_FIELDS
from service.core.calibration.conventions import PRESETS
from tests.contract.repairs.arrays import (
    REPAIRED,
    array_or_none,
    cycled,
    fields_of,
    flat,
    is_number,
    options_of,
    predictions_of,
    put_array,
)

#: The operations that fit or apply a map (a probability 0 with eps 0 has no logit there).
MAPS = ("temperature", "recalibrate", "apply")


def map_inputs(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """A map's inputs: eps 0 only without a probability 0 (log 0 is no logit); sigmoid: raw scores."""
    options = options_of(body)
    if options is None:
        return
    probs = array_or_none(fields.get("probs"))
    if options.get("eps") == 0 and probs is not None and np.any(probs == 0):
        options["eps"] = "auto"
        REPAIRED["eps 0 with a probability 0 on a map"] += 1
    if (
        options.get("method") == "sigmoid"
        and "scores" not in fields
        and ({"logits", "probs"} & fields.keys())
    ):
        options["method"] = "isotonic"  # (a map of logits and probabilities alike)
        REPAIRED["sigmoid of logits or probs"] += 1


def binary_methods(body: dict[str, Any]) -> None:
    """Platt and beta map binary predictions: N×K `logits` or `probs` (K ≠ 2) sent as their first column."""
    options = options_of(body)
    inner = None if options is None else options.get("parameters")
    method = None if options is None else options.get("method")
    method = inner.get("method") if isinstance(inner, dict) and method is None else method
    if method not in ("platt", "beta"):
        return
    fields = fields_of(body)
    for name in ("logits", "probs"):
        array = array_or_none(fields.get(name))
        if array is not None and array.ndim == 2 and array.shape[1] != 2:
            REPAIRED["platt and beta: binary predictions"] += 1
            put_array(body, name, array[:, 0], fields[name])


def applied_map(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """/v1/apply's map: its arrays shaped by the predictions (K, or the classes it maps: 1 if binary)."""
    options = options_of(body)
    parameters = None if options is None else options.get("parameters")
    array = predictions_of(fields)
    if not isinstance(parameters, dict) or array is None or array.ndim > 2:
        return
    k = 2 if array.ndim == 1 else array.shape[1]
    mapped = 1 if k == 2 else k  # one-vs-rest maps: the positive class only when binary
    columns = 1 if array.ndim == 1 else k  # a sigmoid maps each column of raw scores
    method = parameters.get("method")
    shapes = {
        "vector": {"scale": (k,), "bias": (k,)},
        "matrix": {"weights": (k, k), "bias": (k,)},
        "histogram": {"values": (mapped, len(parameters.get("edges") or [0, 1]) - 1)},
        "sigmoid": {"a": (columns,), "b": (columns,)},
    }.get(str(method), {})
    for name, shape in shapes.items():
        values = parameters.get(name)
        numbers = [v for v in flat(values) if is_number(v)] if isinstance(values, list) else []
        if values is None or min(shape) < 1:
            continue
        # (no values drawn, as `[[], []]`: the identity map's)
        default = (
            np.eye(shape[0]) if name == "weights" else np.full(shape, 0.0 if name in ("bias", "b") else 1.0)
        )
        fixed = (np.resize(np.asarray(numbers, dtype=np.float64), shape) if numbers else default).tolist()
        if fixed != values:
            parameters[name] = fixed
            REPAIRED["applied map's arrays shaped by the predictions"] += 1
    _finite_affine_map(parameters, fields, array, k)
    knots = parameters.get("knots")
    if method == "isotonic" and isinstance(knots, list) and knots and all(isinstance(s, dict) for s in knots):
        fixed_knots = []
        for knot_set in cycled(knots, mapped):
            x, y = knot_set.get("x"), knot_set.get("y")
            n = min(len(x), len(y)) if isinstance(x, list) and isinstance(y, list) else 0
            fixed_knots.append({**knot_set, "x": sorted(x[:n]), "y": y[:n]} if n else knot_set)
        if fixed_knots != knots:
            parameters["knots"] = fixed_knots
            REPAIRED["applied map's arrays shaped by the predictions"] += 1


def preset_fields(body: dict[str, Any]) -> None:
    """A calibration `preset` with none of the fields it fixes.

    The rule is not stated: schemathesis cannot generate from it (service.api.openapi.across.UNGENERATED).
    """
    options = options_of(body)
    spec = None if options is None else PRESETS.get(str(options.get("preset")))
    if options is None or spec is None:
        return
    for name in {*CONVENTION_FIELDS, "edges"}:  # (every preset fixes its edges)
        if (name not in spec.free or name == "edges") and options.get(name) is not None:
            del options[name]
            REPAIRED["fields a preset fixes left out"] += 1


def bin_edges(body: dict[str, Any]) -> None:
    """Bin `edges` from 0 to 1, increasing."""
    options = body.get("parameters")
    inner_map = options.get("parameters") if isinstance(options, dict) else None
    for holder in (body, options, inner_map):
        edges = holder.get("edges") if isinstance(holder, dict) else None
        if not isinstance(edges, list) or not edges or not all(isinstance(e, int | float) for e in edges):
            continue
        inner = np.unique(np.clip(np.abs(np.asarray(edges, dtype=np.float64)), 0, 1))
        fixed = np.unique(np.concatenate([[0.0], inner, [1.0]])).tolist()
        if fixed != edges:
            REPAIRED["edges from 0 to 1"] += 1
            holder["edges"] = fixed


def _finite_affine_map(parameters: dict[str, Any], fields: dict[str, Any], array: np.ndarray, k: int) -> None:
    """A vector or matrix map keeping every row's logits within float64 (else the identity map's arrays)."""
    names = {"vector": ("scale", "bias"), "matrix": ("weights", "bias")}.get(str(parameters.get("method")))
    if names is None:
        return
    try:
        a, bias = (np.asarray(parameters[name], dtype=np.float64) for name in names)
    except (KeyError, TypeError, ValueError):
        return
    with np.errstate(all="ignore"):
        z = np.log(np.clip(array, 1e-300, 1)) if "probs" in fields else array
        z = np.column_stack([np.zeros_like(z), z]) if z.ndim == 1 else z
        mapped = z * a + bias if names[0] == "scale" else z @ a.T + bias
    if mapped.shape[-1:] == (k,) and not np.isfinite(mapped).all():
        parameters[names[0]] = (np.ones(k) if names[0] == "scale" else np.eye(k)).tolist()
        parameters["bias"] = np.zeros(k).tolist()
        REPAIRED["applied map within float64's range"] += 1
