"""schemathesis hooks that teach the generator the rules JSON Schema cannot state, on positive cases only.

A positive case is a request the document says is valid; these rules (lengths that agree across
fields, rows summing to 1, labels below K, a binary body's framing, CloudEvents' binary-mode
headers, the deployment's limits) are the server's too, so a draw that breaks one is *repaired*
into a request that keeps them, keeping the draw's values where it can: tensors are cut to at most
:data:`CAP` per dimension and their ``data`` cycled to ``prod(shape)`` values, rows made as long as
the first one, probabilities divided by their row's sum, labels taken modulo K (and among
`classes`), a vLLM prompt's token ids taken from its entries, an applied map's arrays shaped by
the predictions; an option the predictions' form refuses is left out. A binary body
(``application/octet-stream``, ``application/x-npz``) is a drawn JSON request of the same
operation, repaired, then encoded (the fuzzing phase; the coverage phase, which draws nothing in a
hook, encodes the operation's documented JSON example). Negative cases are left as drawn, so
``negative_data_rejection`` still sees refusals. A JSON body set anew is revalidated by
schemathesis against the document: a repair the document refuses turns the case into a negative
one (checked as such), so no repaired case is held to acceptance unless the document says it is
valid. A binary body is bytes, which every ``{"type": "string", "format": "binary"}`` body
matches, so it is set as the case's starting state (:func:`_set_binary`): schemathesis 4.32.5 would
call any bytes a hook sets invalid.

Used by the pytest contract test (imported there) and by the command-line runner::

    SCHEMATHESIS_HOOKS=tests.contract.hooks st run openapi/openapi.json --checks all ...

:data:`REPAIRED` counts the repairs per kind (read by the terminal summary in tests/conftest.py).
"""

import copy
import hashlib
import io
import itertools
import json
import math
from collections import Counter
from typing import Any

import numpy as np
import schemathesis
from hypothesis import strategies as st
from schemathesis.transport.serialization import Binary

from service.api.schemas.calibration import CONVENTION_FIELDS
from service.core.calibration.conventions import PRESETS
from service.settings import Settings

#: Largest dimension a repaired tensor keeps (a 3-D tensor holds at most CAP³ values).
CAP = 6
BINARY_MEDIA_TYPES = ("application/octet-stream", "application/x-npz")
#: The fields that hold arrays (the inputs of an inference request), over every endpoint.
ARRAY_FIELDS = (
    "logits",
    "probs",
    "scores",
    "labels",
    "targets",
    "sample_weight",
    "weight",
    "mask",
    "p_probs",
    "p_logits",
    "q_probs",
    "q_logits",
    "timestamps",
)
PREDICTIONS = ("logits", "probs", "scores", "p_probs", "p_logits", "q_probs", "q_logits")
PROBABILITIES = ("probs", "p_probs", "q_probs")
#: NumPy dtype of each OIP datatype (BF16 is written as the top half of a float32).
DTYPES = {
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "BF16": "<f4",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "BOOL": "<u1",
}
CE_RESPONSE = "org.kubeflow.serving.inference.response"
CE_REQUEST = "org.kubeflow.serving.inference.request"
#: Repairs made, per kind.
REPAIRED: Counter[str] = Counter()
#: The JSON request each binary body was encoded from, by the body's bytes (read by the refusal log).
ENCODED_FROM: dict[bytes, dict[str, Any]] = {}
_LIMITS = Settings()


def _positive(case: Any) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_positive


def _phase(case: Any) -> str:
    return str(case.meta.phase.name) if case.meta is not None else ""


# --- JSON bodies ---------------------------------------------------------------------------------


def _flat(values: Any) -> list[Any]:
    if isinstance(values, list):
        return [v for item in values for v in _flat(item)]
    return [values]


def _cycled(values: list[Any], n: int) -> list[Any]:
    return list(itertools.islice(itertools.cycle(values), n)) if values else []


def _dims(shape: Any) -> list[int] | None:
    """A shape's dimensions as ints (JSON Schema counts `3.0` an integer), or None."""
    if not isinstance(shape, list):
        return None
    dims = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int | float) or not float(d).is_integer():
            return None
        dims.append(int(d))
    return dims


def _is_tensor(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("data"), list)


def _fix_tensor(tensor: dict[str, Any]) -> None:
    """Cut `tensor`'s shape to CAP per dimension and give its `data` prod(shape) values (flat).

    With no shape, its nested `data` is made rectangular instead.
    """
    values = _flat(tensor["data"])
    if not values:
        return
    dims = _dims(tensor.get("shape"))
    if dims is None:
        depth = _depth(tensor["data"])
        fixed = _rectangular(tensor["data"], depth)
        if fixed != tensor["data"]:
            REPAIRED["rows of one length"] += 1
            tensor["data"] = fixed
        return
    shape = [max(1, min(d, CAP)) for d in dims]
    n = math.prod(shape)
    if shape != tensor["shape"] or len(values) != n or values != tensor["data"]:
        REPAIRED["tensor shape and data"] += 1
    tensor["shape"], tensor["data"] = shape, _cycled(values, n)


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    return depth


def _rectangular(value: list[Any], depth: int) -> list[Any]:
    """`value` (nested lists) with every row as long as the first, cut to CAP per dimension."""
    dims, first = [], value
    for _ in range(depth):
        dims.append(min(len(first), CAP))
        first = first[0]
    return _rebuilt(value, dims) or value


def _rebuilt(value: Any, dims: list[int]) -> list[Any] | None:
    if not isinstance(value, list) or not value:
        return None
    items = _cycled(value, dims[0])
    if len(dims) == 1:
        return None if any(isinstance(v, list) for v in items) else items
    rows = [_rebuilt(row, dims[1:]) for row in items]
    return None if any(row is None for row in rows) else rows


def _array_of(value: Any) -> np.ndarray | None:
    """The numeric ndarray of a field (nested lists or a tensor object), or None."""
    data = value
    if _is_tensor(value):
        try:
            array = np.asarray(value["data"], dtype=np.float64)
            dims = _dims(value.get("shape"))
            return array if dims is None else array.reshape(dims)
        except (ValueError, TypeError):
            return None
    try:
        array = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError):
        return None
    return array if array.ndim >= 1 else None


def _put(
    body: dict[str, Any], name: str, array: np.ndarray, like: Any, *, integer: bool | None = None
) -> None:
    """Write `array` back as `like` (a tensor, changed in place) or as `body[name]` (nested lists).

    Integers stay integers unless `integer` is False (fractions: a tensor's integer datatype becomes FP64).
    """
    integer = _is_integer_field(like) if integer is None else integer
    values = array.astype(np.int64) if integer else array
    if _is_tensor(like) and not integer and str(like.get("datatype", "")).startswith(("INT", "UINT", "BOOL")):
        like["datatype"] = "FP64"
    if _is_tensor(like):
        like["shape"], like["data"] = list(array.shape), values.reshape(-1).tolist()
    else:
        body[name] = values.tolist()


def _is_integer_field(value: Any) -> bool:
    values = _flat(value["data"] if _is_tensor(value) else value)
    return bool(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    """Array fields by role: a JSON body's own, or an inference request's inputs (role or name)."""
    if isinstance(body.get("inputs"), list):
        fields = {}
        for item in body["inputs"]:
            if not isinstance(item, dict):
                continue
            parameters = item.get("parameters") if isinstance(item.get("parameters"), dict) else {}
            role = parameters.get("role") or item.get("name")
            if isinstance(role, str) and _is_tensor(item):
                fields[role] = item
        return fields
    return {k: v for k, v in body.items() if k in ARRAY_FIELDS and v is not None}


#: The operations that fit or apply a map (a probability 0 with eps 0 has no logit there).
MAPS = ("temperature", "recalibrate", "apply")


def repair_json(body: Any, path: str = "") -> None:
    """Repair a positive JSON body in place (tensors, rows, sums, labels; see the module docstring)."""
    if not isinstance(body, dict):
        return
    for value in [*body.values(), *(body.get("inputs") or [])]:
        if _is_tensor(value):
            _fix_tensor(value)
    for name in ARRAY_FIELDS:
        value = body.get(name)
        depth = _depth(value)
        if isinstance(value, list) and depth >= 1:
            fixed = _rectangular(value, depth)
            if fixed != value:
                REPAIRED["rows of one length"] += 1
                body[name] = fixed
    if path.endswith(("/apply", "/apply/infer", "/recalibrate", "/recalibrate/infer")):
        _binary_methods(body)
    fields = _fields(body)
    for name in PROBABILITIES:
        if name in fields:
            _normalise(body, fields, name)
    _labels(body, fields)
    _ids_and_labels(body)
    _weights(body, fields)
    _multilabel_targets(body, fields)
    _soft_targets(body, fields)
    _divergence_sides(body, fields)
    _edges(body)
    _pos_label_needs_classes(body)
    _classes(body, fields)
    _mask(body, fields)
    _requested_outputs(body)
    _logprobs_documents(body)
    _positive_class(body, fields)
    _counts(body)
    _preset(body)
    _options_of_rows(body, _fields(body))
    if path.removeprefix("/v1/").removeprefix("/v2/models/").removesuffix("/infer") in MAPS:
        _map_inputs(body, fields)
    if path.endswith(("/apply", "/apply/infer")):
        _applied_map(body, fields)
    if path.endswith(("/cross-entropy", "/cross-entropy/infer")):
        _class_weights(body, _fields(body))


def _predictions(fields: dict[str, Any]) -> np.ndarray | None:
    like = next((fields[name] for name in PREDICTIONS if name in fields), None)
    return None if like is None else _array_of(like)


def _weights(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """`sample_weight` and BCE's `weight`: a non-negative weight per row (N×K or N), a positive sum."""
    for name in ("sample_weight", "weight"):
        if name not in fields:
            continue
        array, weights = _predictions(fields), _array_of(fields[name])
        if array is None or weights is None or array.ndim > 2 or weights.size == 0:
            continue
        fixed = np.abs(np.resize(weights.reshape(-1), array.shape[0]))
        if not fixed.sum() > 0:
            fixed = np.ones_like(fixed)
        if fixed.shape != weights.shape or not np.array_equal(fixed, weights):
            REPAIRED[f"{name}: one per row, positive sum"] += 1
            _put(body, name, fixed, fields[name])


def _class_weights(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """Cross-entropy's `class_weights`: one non-negative weight per class, some labelled row weighted.

    With binary predictions, PyTorch's BCE `pos_weight` and `weight` take no `class_weights`,
    `sample_weight`, `label_smoothing` or `ignore_index` (binary_weights.py): those are left out.
    """
    options = _options(body) or {}
    array = _predictions(fields)
    if array is None:
        return
    binary = array.ndim == 1 and options.get("multilabel") is not True
    if binary and (options.get("pos_weight") is not None or "weight" in fields):
        for name in ("class_weights", "sample_weight", "label_smoothing", "ignore_index"):
            if _drop(body, name):
                REPAIRED["BCE weights without class or sample weights, smoothing, ignore_index"] += 1
        return
    like = fields.get("class_weights", options.get("class_weights"))
    weights = _array_of_or_none(like)
    if weights is None or weights.size == 0 or array.ndim > 3 or options.get("multilabel") is True:
        return
    k = 2 if array.ndim == 1 else array.shape[-1]
    fixed = np.abs(np.resize(weights.reshape(-1), k))
    labels = _array_of_or_none(fields.get("labels"))
    scored = labels is not None and labels.size and np.all((labels >= 0) & (labels < k))
    if scored and not fixed[labels.astype(np.int64).reshape(-1)].sum() > 0:
        fixed[fixed == 0] = 1  # (the weight of every labelled row's class was 0)
    if not fixed.sum() > 0:
        fixed = np.ones(k)
    if fixed.shape != weights.shape or not np.array_equal(fixed, weights):
        REPAIRED["class_weights: one per class, some weight"] += 1
        if _is_tensor(like):
            _put(body, "class_weights", fixed, like, integer=False)
        else:
            options["class_weights"] = fixed.tolist()


def _drop(body: dict[str, Any], name: str) -> bool:
    """Leave out an option or input `name` (an inference request's input by role); whether it was sent."""
    options, dropped = _options(body), False
    if options is not None and options.get(name) is not None:
        del options[name]
        dropped = True
    if isinstance(body.get("inputs"), list):
        kept = [item for item in body["inputs"] if _fields({"inputs": [item]}).get(name) is None]
        dropped = dropped or len(kept) != len(body["inputs"])
        body["inputs"] = kept
    return dropped


def _multilabel_targets(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """Multilabel `targets`: 0/1, shaped as the N×K predictions."""
    multilabel = body.get("multilabel") or (body.get("parameters") or {}).get("multilabel")
    if multilabel is not True or "targets" not in fields:
        return
    array, targets = _predictions(fields), _array_of(fields["targets"])
    if array is None or targets is None or array.ndim != 2 or targets.size == 0:
        return
    fixed = (np.resize(targets.reshape(-1), array.shape) != 0).astype(np.int64)
    if fixed.shape != targets.shape or not np.array_equal(fixed, targets):
        REPAIRED["multilabel targets: 0/1, N×K"] += 1
        _put(body, "targets", fixed, fields["targets"])


def _soft_targets(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """Soft `targets` (the predictions' shape): values in [0, 1], rows summing to 1."""
    array, targets = _predictions(fields), _array_of_or_none(fields.get("targets"))
    if array is None or targets is None or targets.size == 0 or body.get("multilabel") is True:
        return
    # (binary predictions, a length-N vector, take soft targets as a vector)
    if array.ndim >= 2:
        _rows_in_float64(fields["targets"])
    fixed = np.resize(targets.reshape(-1), array.shape)
    if np.any((fixed < 0) | (fixed > 1)):
        fixed = np.abs(fixed) / (1 + np.abs(fixed))
    if fixed.ndim >= 2:
        sums = fixed.sum(axis=-1, keepdims=True)
        fixed = np.where(sums > 0, fixed / np.where(sums > 0, sums, 1), 1 / fixed.shape[-1])
    if fixed.shape != targets.shape or not np.array_equal(fixed, targets):
        REPAIRED["soft targets: shaped as the predictions, in [0, 1], rows summing to 1"] += 1
        _put(body, "targets", fixed, fields["targets"], integer=bool(np.all(fixed == np.round(fixed))))


def _array_of_or_none(value: Any) -> np.ndarray | None:
    return None if value is None else _array_of(value)


def _divergence_sides(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """A divergence's q side with the shape of its p side (values cycled)."""
    p_name = next((name for name in ("p_probs", "p_logits") if name in fields), None)
    q_name = next((name for name in ("q_probs", "q_logits") if name in fields), None)
    if p_name is None or q_name is None:
        return
    p, q = _array_of(fields[p_name]), _array_of(fields[q_name])
    if p is None or q is None or q.size == 0 or p.shape == q.shape:
        return
    fixed = np.resize(q.reshape(-1), p.shape)
    if q_name == "q_probs" and fixed.ndim >= 2:
        sums = fixed.sum(axis=-1, keepdims=True)
        fixed = np.where(sums > 0, fixed / np.where(sums > 0, sums, 1), 1 / fixed.shape[-1])
    REPAIRED["divergence: q shaped as p"] += 1
    if fixed.ndim >= 3 and not _is_tensor(fields[q_name]):
        # B×T×K is stated as a tensor object, not as nested lists: q takes p's form
        body[q_name] = {"datatype": "FP64", "shape": list(fixed.shape), "data": fixed.reshape(-1).tolist()}
        return
    _put(body, q_name, fixed, fields[q_name], integer=False)


def _pos_label_needs_classes(body: dict[str, Any]) -> None:
    """An inference request's `pos_label` needs `classes` (stated, but for /v1/calibration's: see there)."""
    parameters = body.get("parameters") if isinstance(body.get("inputs"), list) else None
    if (
        isinstance(parameters, dict)
        and parameters.get("pos_label") is not None
        and parameters.get("classes") is None
    ):
        del parameters["pos_label"]
        REPAIRED["pos_label without classes"] += 1


def _options(body: dict[str, Any]) -> dict[str, Any] | None:
    """Where the options are: an inference request's `parameters`, else the JSON body itself."""
    if isinstance(body.get("inputs"), list):
        options = body.get("parameters")
        return options if isinstance(options, dict) else None
    return body


def _classes(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """`classes`: a distinct name per prediction column (2 if binary); labels and `pos_label` among them."""
    options = _options(body)
    classes = None if options is None else options.get("classes")
    array = _predictions(fields)
    if not isinstance(classes, list) or len(classes) < 2 or array is None or array.ndim > 2:
        return
    k = 2 if array.ndim == 1 else array.shape[-1]
    strings = isinstance(classes[0], str)
    fixed = classes[:k]
    spare = (f"class {i}" if strings else i for i in itertools.count())
    fixed += itertools.islice((c for c in spare if c not in classes), k - len(fixed))
    if fixed != classes:
        REPAIRED["classes: one per column"] += 1
        options["classes"] = fixed
    pos_label = options.get("pos_label")
    if pos_label is not None and not any(c == pos_label and type(c) is type(pos_label) for c in fixed):
        REPAIRED["pos_label among classes"] += 1
        options["pos_label"] = fixed[-1]
    labels = fields.get("labels")
    values = labels.get("data") if _is_tensor(labels) else labels
    if not isinstance(values, list) or any(isinstance(v, list | dict) for v in values):
        return
    if strings and _is_tensor(labels):
        return  # (a tensor holds numbers: string classes take no labels input; the document says so)
    if _is_tensor(labels) and labels.get("datatype") != "INT64":
        # (integer classes within int64: a float rounds a label off its class, or past 2**53 is refused)
        labels["datatype"] = "INT64"
        REPAIRED["labels among classes"] += 1
    ignore_index = options.get("ignore_index")
    kept = [
        v
        if _member(v, fixed) or (ignore_index is not None and v == ignore_index)
        else fixed[(int(v) if isinstance(v, int | float) and float(v).is_integer() else i) % k]
        for i, v in enumerate(values)
    ]
    if not _is_tensor(labels) and array.ndim <= 2:
        kept = _cycled(kept, array.shape[0])  # (names: `_labels` counted only numbers)
    if kept != values:
        REPAIRED["labels among classes"] += 1
        if _is_tensor(labels):
            labels["data"] = kept
        else:
            body["labels"] = kept


def _mask(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """A B×T×K request's `mask`: B×T, 0/1, some position fitted."""
    array, mask = _predictions(fields), _array_of_or_none(fields.get("mask"))
    if array is None or array.ndim != 3 or mask is None:
        return
    flat = mask.reshape(-1) if mask.size else np.ones(1)
    fixed = (np.resize(flat, array.shape[:2]) != 0).astype(np.int64)
    if not fixed.any():
        fixed[...] = 1
    if fixed.shape != mask.shape or not np.array_equal(fixed, mask):
        REPAIRED["mask: B×T, 0/1"] += 1
        _put(body, "mask", fixed, fields["mask"], integer=True)


def _map_inputs(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """A map's inputs: eps 0 only without a probability 0 (log 0 is no logit); sigmoid: raw scores."""
    options = _options(body)
    if options is None:
        return
    probs = _array_of_or_none(fields.get("probs"))
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


def _binary_methods(body: dict[str, Any]) -> None:
    """Platt and beta map binary predictions: N×K `logits` or `probs` (K ≠ 2) sent as their first column."""
    options = _options(body)
    inner = None if options is None else options.get("parameters")
    method = None if options is None else options.get("method")
    method = inner.get("method") if isinstance(inner, dict) and method is None else method
    if method not in ("platt", "beta"):
        return
    fields = _fields(body)
    for name in ("logits", "probs"):
        array = _array_of_or_none(fields.get(name))
        if array is not None and array.ndim == 2 and array.shape[1] != 2:
            REPAIRED["platt and beta: binary predictions"] += 1
            _put(body, name, array[:, 0], fields[name])


def _applied_map(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """/v1/apply's map: its arrays shaped by the predictions (K, or the classes it maps: 1 if binary)."""
    options = _options(body)
    parameters = None if options is None else options.get("parameters")
    array = _predictions(fields)
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
        flat = [v for v in _flat(values) if _is_number(v)] if isinstance(values, list) else []
        if values is None or min(shape) < 1:
            continue
        # (no values drawn, as `[[], []]`: the identity map's)
        default = (
            np.eye(shape[0]) if name == "weights" else np.full(shape, 0.0 if name in ("bias", "b") else 1.0)
        )
        fixed = (np.resize(np.asarray(flat, dtype=np.float64), shape) if flat else default).tolist()
        if fixed != values:
            parameters[name] = fixed
            REPAIRED["applied map's arrays shaped by the predictions"] += 1
    knots = parameters.get("knots")
    if method == "isotonic" and isinstance(knots, list) and knots and all(isinstance(s, dict) for s in knots):
        fixed_knots = []
        for knot_set in _cycled(knots, mapped):
            x, y = knot_set.get("x"), knot_set.get("y")
            n = min(len(x), len(y)) if isinstance(x, list) and isinstance(y, list) else 0
            fixed_knots.append({**knot_set, "x": sorted(x[:n]), "y": y[:n]} if n else knot_set)
        if fixed_knots != knots:
            parameters["knots"] = fixed_knots
            REPAIRED["applied map's arrays shaped by the predictions"] += 1


def _positive_class(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """`target: "positive_class"` needs two classes (binary input or N×2), `pos_label` binary input."""
    options, array = _options(body), _predictions(fields)
    if options is None or array is None:
        return
    if options.get("target") == "positive_class" and array.ndim == 2 and array.shape[1] != 2:
        del options["target"]
        REPAIRED["positive_class target with two classes only"] += 1
    if options.get("pos_label") is not None and array.ndim >= 2 and options.get("multilabel") is not True:
        del options["pos_label"]
        REPAIRED["pos_label with binary input only"] += 1


def _preset(body: dict[str, Any]) -> None:
    """A calibration `preset` with none of the fields it fixes (not stated: see unstatable.py)."""
    options = _options(body)
    spec = None if options is None else PRESETS.get(str(options.get("preset")))
    if options is None or spec is None:
        return
    for name in {*CONVENTION_FIELDS, "edges"}:  # (every preset fixes its edges)
        if (name not in spec.free or name == "edges") and options.get(name) is not None:
            del options[name]
            REPAIRED["fields a preset fixes left out"] += 1


def _counts(body: dict[str, Any]) -> None:
    """Per-sequence `bytes` and `words` counts (a sequences request's): non-negative integers."""
    fields = {k: v for k, v in _fields(body).items() if k in ("bytes", "words")}
    if not isinstance(body.get("inputs"), list):
        fields = {k: body[k] for k in ("bytes", "words") if isinstance(body.get(k), list)}
    for name, like in fields.items():
        counts = _array_of_or_none(like)
        if counts is None or counts.size == 0 or not np.any(counts < 0):
            continue
        REPAIRED["bytes and words counts non-negative"] += 1
        _put(body, name, np.abs(counts), like, integer=True)


def _requested_outputs(body: dict[str, Any]) -> None:
    """Requested `outputs` named `n`, which every answer has (the others follow the options)."""
    outputs = body.get("outputs") if isinstance(body.get("inputs"), list) else None
    if not isinstance(outputs, list):
        return
    for output in outputs:
        if isinstance(output, dict) and output.get("name") != "n":
            output["name"] = "n"
            REPAIRED["requested outputs: n"] += 1


def _logprobs_documents(body: dict[str, Any]) -> None:
    """Logprobs documents (/v1/logprobs, a monitor's sequences): vLLM prompts paired with their token ids.

    Each ``prompt_logprobs`` list the server reads (in its order: service.core.language.logprobs) gets
    the token ids it needs, one per entry, each entry's own (a key of the entry; any for a null
    entry): in the body's `prompt_token_ids` when it sends them (or a bare list needs them), else in
    the list's holder. `ranges`: one per sequence read.
    """
    items = [body["response"]] if body.get("response") is not None else body.get("responses")
    if not isinstance(items, list):
        return
    slots: list[tuple[dict[str, Any] | None, Any]] = []
    try:
        n_sequences = sum(_read_item(item, str(body.get("use", "auto")), slots) for item in items)
    except (TypeError, AttributeError):
        return  # (a form the server refuses for its own reason: nothing to pair)
    ids = [_prompt_ids(entries) for _, entries in slots]
    if not slots and body.get("prompt_token_ids"):
        body["prompt_token_ids"] = None  # (no prompt_logprobs read: nothing to pair)
        REPAIRED["prompt_token_ids: one list per prompt_logprobs"] += 1
    if slots and all(i is not None for i in ids):
        if body.get("prompt_token_ids") is not None or any(holder is None for holder, _ in slots):
            if body.get("prompt_token_ids") != ids:
                body["prompt_token_ids"] = ids
                REPAIRED["prompt_token_ids: one list per prompt_logprobs"] += 1
        else:
            for (holder, _), own in zip(slots, ids, strict=True):
                if holder is not None and holder.get("prompt_token_ids") != own:
                    holder["prompt_token_ids"] = own
                    REPAIRED["prompt_token_ids: one list per prompt_logprobs"] += 1
    for item in items:
        _alternatives(item)
    ranges = body.get("ranges")
    if isinstance(ranges, list) and n_sequences and len(ranges) != n_sequences:
        body["ranges"] = _cycled(ranges, n_sequences) if ranges else [[None, None]] * n_sequences
        REPAIRED["ranges: one per sequence"] += 1
    for name in ("texts", "bytes", "words"):  # (one text or count per sequence)
        values = body.get(name)
        if isinstance(values, list) and values and n_sequences and len(values) != n_sequences:
            body[name] = _cycled(values, n_sequences)
            REPAIRED[f"{name}: one per sequence"] += 1


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _alternatives(value: Any) -> None:
    """Every position's alternatives (chat `top_logprobs` objects, legacy `{token: logprob}`) kept below 1."""
    if isinstance(value, list):
        for item in value:
            _alternatives(item)
        return
    if not isinstance(value, dict):
        return
    tops, lps = value.get("top_logprobs"), value.get("token_logprobs")
    if _is_prompt_entry(value) and all(
        isinstance(v, dict) and _is_number(v.get("logprob")) for v in value.values()
    ):
        _prompt_mass(value)
        return
    if _is_number(value.get("logprob")) and isinstance(tops, list) and tops:
        if all(isinstance(a, dict) and _is_number(a.get("logprob")) for a in tops):
            _position(value, "logprob", tops, [(a, "logprob") for a in tops], value.get("token"))
    elif isinstance(lps, list) and isinstance(tops, list) and value.get("tokens") is None and any(tops):
        del value["top_logprobs"]  # (alternatives match the realised tokens, which are not sent)
        REPAIRED["legacy top_logprobs only with tokens"] += 1
    elif isinstance(lps, list) and isinstance(tops, list) and isinstance(value.get("tokens"), list):
        _legacy_positions(lps, tops, value["tokens"])
    for item in value.values():
        if isinstance(item, list | dict):
            _alternatives(item)


def _prompt_mass(entry: dict[str, Any]) -> None:
    """A vLLM prompt entry's probabilities, lowered together by one factor to sum below 1."""
    mass = sum(math.exp(min(v["logprob"], 0.0)) for v in entry.values())
    if mass > 1:
        shift = math.log(mass) + 0.01
        for v in entry.values():
            v["logprob"] = min(v["logprob"], 0.0) - shift
        REPAIRED["top_logprobs summing below 1"] += 1


def _legacy_positions(lps: list[Any], tops: list[Any], tokens: list[Any]) -> None:
    if not len(lps) == len(tops) == len(tokens):
        return
    for j, top in enumerate(tops):
        if _is_number(lps[j]) and isinstance(top, dict) and top and all(map(_is_number, top.values())):
            _position(lps, j, list(top.items()), [(top, k) for k in top], tokens[j])


def _position(
    holder: Any, key: Any, tops: list[Any], alternatives: list[tuple[Any, Any]], token: Any
) -> None:
    """One position: the realised token (`holder[key]`) and its alternatives (each `where[k]`).

    A realised token missing from the alternatives is ranked below them (at most the smallest), and
    the probabilities (theirs, and its own when missing) are lowered together by one factor to sum
    below 1: the order of every logprob is kept.
    """
    alt = [where[k] for where, k in alternatives]
    realised_in = any((a.get("token") if isinstance(a, dict) else a[0]) == token for a in tops)
    if not realised_in and holder[key] > min(alt) + 1e-6:
        holder[key] = min(alt)
        REPAIRED["realised token ranked below its missing alternatives"] += 1
    mass = sum(math.exp(min(v, 0.0)) for v in alt) + (0.0 if realised_in else math.exp(min(holder[key], 0.0)))
    if mass > 1:
        shift = math.log(mass) + 0.01
        for where, k in alternatives:
            where[k] = min(where[k], 0.0) - shift
        holder[key] = min(holder[key], 0.0) - shift
        REPAIRED["top_logprobs summing below 1"] += 1


def _read_item(item: Any, use: str, slots: list[tuple[dict[str, Any] | None, Any]]) -> int:
    """How many sequences the server reads from `item`; the prompt lists it reads appended to `slots`."""
    if isinstance(item, list):
        if item and (item[0] is None or _is_prompt_entry(item[0])):
            slots.append((None, item))
        return 1
    if not isinstance(item, dict):
        return 0
    if "choices" in item and isinstance(item["choices"], list):
        top, n = item.get("prompt_logprobs"), 0
        if top is not None and use != "sampled":
            slots.append((item, top))
            n += 1
        for choice in sorted(item["choices"], key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0):
            if not isinstance(choice, dict):
                continue
            if choice.get("prompt_logprobs") is not None and use != "sampled":
                slots.append((choice, choice["prompt_logprobs"]))
                n += 1
            elif (top is None or use == "sampled") and use != "prompt":
                n += 1
        return n
    if "prompt_logprobs" in item:
        slots.append((item, item["prompt_logprobs"]))
    return 1


def _is_prompt_entry(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(k, str) and k.isdigit() for k in value)


def _prompt_ids(entries: Any) -> list[int] | None:
    """A token id per vLLM prompt entry (one of its keys; 0 for a null entry), or None."""
    if not isinstance(entries, list) or not all(e is None or isinstance(e, dict) for e in entries):
        return None
    ids = []
    for entry in entries:
        if entry is None:
            ids.append(0)
            continue
        # (a key the server finds as `str(id)`: ASCII digits, no leading zero, within int64)
        keys = [k for k in entry if k.isascii() and k.isdigit() and str(int(k)) == k and int(k) < 2**63]
        if not keys:  # the prompt token vLLM always includes, improbable (its logprob -1000)
            keys = [next(str(i) for i in itertools.count() if str(i) not in entry)]
            entry[keys[0]] = {"logprob": -1000.0}
        ids.append(int(keys[0]))
    return ids


def _member(value: Any, classes: list[Any]) -> bool:
    """Whether a label is one of `classes` (a name equal in value and kind: 2.0 is the integer 2)."""
    return not isinstance(value, bool) and any(
        value == c and isinstance(value, str) == isinstance(c, str) for c in classes
    )


def _edges(body: dict[str, Any]) -> None:
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


def _labels(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """Labels as many as the predictions' rows (B×T for B×T×K), each below K (modulo K)."""
    if "labels" not in fields:
        return
    values = _flat(fields["labels"]["data"] if _is_tensor(fields["labels"]) else fields["labels"])
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return
    predictions = next((fields[name] for name in PREDICTIONS if name in fields), None)
    array = None if predictions is None else _array_of(predictions)
    labels = _array_of(fields["labels"])
    if array is None or labels is None or array.size == 0:
        return
    if labels.size == 0:
        labels = np.zeros(1, dtype=np.int64)
    k = 2 if array.ndim == 1 else array.shape[-1]
    rows = array.shape[:1] if array.ndim <= 2 else array.shape[:2]
    # (modulo K before the cast: a label near 2**63 is read as a float64 that no int64 holds)
    fixed = np.resize(labels.reshape(-1), math.prod(rows)).reshape(rows)
    fixed = np.where(fixed == -1, -1, np.mod(fixed, k)) if "ignore_index" not in body else np.mod(fixed, k)
    fixed = fixed.astype(np.int64)
    if fixed.shape != labels.shape or not np.array_equal(fixed, labels):
        REPAIRED["labels: one per row, below K"] += 1
        if fixed.ndim == 2 and not _is_tensor(fields["labels"]) and _is_tensor(predictions):
            # B×T labels take the B×T×K predictions' form: a tensor object beside a tensor (nested lists
            # are stated beside nested lists only, on a monitor's sequences body)
            data = fixed.reshape(-1).tolist()
            body["labels"] = {"datatype": "INT64", "shape": list(fixed.shape), "data": data}
            return
        _put(body, "labels", fixed, fields["labels"])


def _ids_and_labels(body: dict[str, Any]) -> None:
    """A monitor's late labels: one per id."""
    ids, labels = body.get("ids"), body.get("labels")
    if not (isinstance(ids, list) and ids and isinstance(labels, list) and labels):
        return
    if len(ids) != len(labels) and all(not isinstance(v, list) for v in labels):
        body["labels"] = _cycled(labels, len(ids))
        REPAIRED["labels: one per id"] += 1


def _normalise(body: dict[str, Any], fields: dict[str, Any], name: str) -> None:
    like = fields[name]
    array = _array_of(like)
    if array is None:
        return
    if np.any((array < 0) | (array > 1)):
        # (values outside [0, 1]: a tensor's nested `data` is not bounded by the document; see the report)
        array = np.abs(array) / (1 + np.abs(array))
        REPAIRED["probabilities in [0, 1]"] += 1
        if array.ndim < 2:
            _put(body, name, array, like, integer=False)
    if array.ndim < 2:
        return
    _rows_in_float64(like)
    sums = array.sum(axis=-1, keepdims=True)
    if np.all(np.abs(sums - 1) <= 1e-9):
        return
    uniform = np.full_like(array, 1 / array.shape[-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        fixed = np.where(sums > 0, array / np.where(sums > 0, sums, 1), uniform)
    REPAIRED["rows summing to 1"] += 1
    _put(body, name, fixed, like, integer=False)


def _rows_in_float64(like: Any) -> None:
    """A tensor of rows summing to 1 sent as FP64: FP16 and BF16 round a row's sum past the tolerance."""
    if _is_tensor(like) and like.get("datatype") in ("FP16", "BF16"):
        like["datatype"] = "FP64"
        REPAIRED["rows summing to 1 sent as FP64"] += 1


def _options_of_rows(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """Options rows of probabilities need: a `tolerance` that float64 rounding of a sum keeps; the
    labels' `ignore_index` not every label; at most N `validation.folds`; no B×T×K-refused options."""
    options, array = _options(body), _predictions(fields)
    if options is None or array is None:
        return
    tolerance = options.get("tolerance")
    if _is_number(tolerance) and tolerance < 1e-12 and array.ndim >= 2:
        del options["tolerance"]
        REPAIRED["tolerance below a row sum's rounding left out"] += 1
    labels, ignore = _array_of_or_none(fields.get("labels")), options.get("ignore_index")
    if labels is not None and labels.size and _is_number(ignore) and np.all(labels == ignore):
        del options["ignore_index"]
        REPAIRED["ignore_index not every label"] += 1
    validation = options.get("validation")
    folds = validation.get("folds") if isinstance(validation, dict) else None
    if isinstance(validation, dict) and validation.get("holdout") is not None and array.shape[0] < 2:
        del options["validation"]  # (a holdout needs a sample each side)
        REPAIRED["validation folds at most N"] += 1
    elif _is_number(folds) and folds > array.shape[0]:
        if array.shape[0] >= 2:
            validation["folds"] = int(array.shape[0])
        else:
            del options["validation"]
        REPAIRED["validation folds at most N"] += 1
    if array.ndim == 3 and isinstance(body.get("inputs"), list):  # (stated on the JSON body only)
        for name in ("classes", "pos_label", "normalize"):
            if _drop(body, name):
                REPAIRED["options B×T×K sequences refuse left out"] += 1


def repair_monitor(body: Any) -> None:
    """A monitor's configuration: class names as many as n_classes, retention ≥ bucket, reservoir ≤ limit."""
    if not isinstance(body, dict):
        return
    names, k = body.get("class_names"), body.get("n_classes")
    if isinstance(names, list) and isinstance(k, int | float) and len(names) != k:
        body["n_classes"] = len(names)
        REPAIRED["class names and n_classes"] += 1
    bucket, retention = body.get("bucket_s", 60), body.get("retention_s", 30 * 86_400)
    if isinstance(bucket, int) and isinstance(retention, int) and retention < bucket:
        body["retention_s"] = max(bucket, 60)
        REPAIRED["retention below the bucket"] += 1
    reservoir = body.get("reservoir_size")
    if isinstance(reservoir, int) and reservoir > _LIMITS.max_reservoir:
        body["reservoir_size"] = reservoir % (_LIMITS.max_reservoir + 1)
        REPAIRED["reservoir past XENT_MAX_RESERVOIR"] += 1


def ce_headers(case: Any) -> None:
    """A binary-mode CloudEvent (application/json): its ce-* headers, from a hash of its body."""
    body = case.body if isinstance(case.body, dict) else {}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    response = "predictions" in body or "outputs" in body
    # set without schemathesis' revalidation: undeclared headers never change a case's validity, but a
    # revalidation recomputes the mode from the components and turned a drawn positive event negative
    headers = {
        **(case.headers or {}),
        "ce-id": digest,
        "ce-source": "schemathesis",
        "ce-type": CE_RESPONSE if response else CE_REQUEST,
        "ce-specversion": "1.0",
    }
    object.__setattr__(case, "headers", headers)
    REPAIRED["CloudEvents binary-mode headers"] += 1


# --- binary bodies -------------------------------------------------------------------------------


def _tensor_bytes(tensor: dict[str, Any]) -> bytes:
    datatype = tensor.get("datatype", "FP64")
    array = np.asarray(tensor["data"], dtype=DTYPES.get(datatype, "<f8"))
    if datatype == "BF16":
        return array.view("<u4").__rshift__(16).astype("<u2").tobytes()
    return array.tobytes()


def _as_inference_request(body: dict[str, Any]) -> dict[str, Any]:
    """A JSON body as an inference request: its array fields as tensors, the rest as parameters."""
    if isinstance(body.get("inputs"), list):
        return body
    inputs, parameters = [], {}
    for name, value in body.items():
        array = None if name not in ARRAY_FIELDS else _array_of(value)
        if array is None:
            parameters[name] = value
            continue
        integer = _is_integer_field(value) or (name == "labels" and bool(np.all(array == np.round(array))))
        datatype = value.get("datatype") if _is_tensor(value) else ("INT64" if integer else "FP64")
        data = array.reshape(-1).astype(np.int64).tolist() if integer else array.reshape(-1).tolist()
        inputs.append({"name": name, "shape": list(array.shape), "datatype": datatype, "data": data})
    return {"inputs": inputs, "parameters": parameters}


def encode_binary(body: dict[str, Any]) -> tuple[bytes, int]:
    """The binary-extension body of a JSON request and its header's length."""
    request = _as_inference_request(body)
    blobs = []
    inputs = []
    for item in request["inputs"]:
        item = dict(item)
        if "data" in item:
            blob = _tensor_bytes(item)
            del item["data"]
            parameters = dict(item.get("parameters") or {})
            parameters["binary_data_size"] = len(blob)
            item["parameters"] = parameters
            blobs.append(blob)
        inputs.append(item)
    header = json.dumps({**request, "inputs": inputs}, separators=(",", ":")).encode()
    return header + b"".join(blobs), len(header)


def encode_npz(body: dict[str, Any]) -> bytes:
    """The npz archive of a JSON request: one array per field, the options as a JSON `parameters`."""
    request = _as_inference_request(body)
    arrays: dict[str, np.ndarray] = {}
    for item in request["inputs"]:
        parameters = item.get("parameters") if isinstance(item.get("parameters"), dict) else {}
        role = parameters.get("role") or item["name"]
        dtype = DTYPES.get(item.get("datatype", "FP64"), "<f8")
        arrays[role] = np.asarray(item["data"], dtype=dtype).reshape(item["shape"])
    options = request.get("parameters") or {}
    if options:
        arrays["parameters"] = np.asarray(json.dumps(options))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _set_binary(
    case: Any, content: bytes, headers: dict[str, str] | None = None, body: dict[str, Any] | None = None
) -> None:
    """Set a binary body (and headers) as the case's starting state, not as an edit to revalidate.

    schemathesis 4.32.5 revalidates a component a hook changed, and calls any body of bytes invalid
    (``Case._validate_component``: ``contains_binary(value)`` -> False), so the case would turn
    negative; but the document's body is ``{"type": "string", "format": "binary"}``, which every
    string of bytes matches. ``Case._record_starting_state`` is what schemathesis itself does with
    the auth and overrides it writes after generation: the containers as they are now are the case.
    """
    object.__setattr__(case, "body", Binary(content))
    if body is not None:
        ENCODED_FROM[content] = body
    if headers:
        object.__setattr__(case, "headers", {**(case.headers or {}), **headers})
    case._record_starting_state()


def to_binary(case: Any, media_type: str, body: dict[str, Any]) -> Any:
    """`case` sent as `media_type`, its body the positive JSON request `body` encoded."""
    case.media_type = media_type
    if media_type == "application/x-npz":
        _set_binary(case, encode_npz(body), body=body)
        REPAIRED["npz body"] += 1
    else:
        content, length = encode_binary(body)
        _set_binary(case, content, {"Inference-Header-Content-Length": str(length)}, body)
        REPAIRED["binary-extension body"] += 1
    return case


# --- the hooks -----------------------------------------------------------------------------------


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Repair a positive case (see the module docstring); a negative one goes as drawn."""
    if not _positive(case):
        return case
    try:
        # (NumPy raises rather than warns, so a value no repair can hold fails alike under pytest and st)
        with np.errstate(all="raise", under="ignore"):
            return _repaired(case)
    except Exception as exc:  # noqa: BLE001  (a value NumPy cannot hold: the case goes as drawn, counted)
        REPAIRED[f"not repairable ({type(exc).__name__})"] += 1
        return case


def _repaired(case: Any) -> Any:
    path, media_type = case.operation.path, case.media_type
    if media_type in BINARY_MEDIA_TYPES:
        # the fuzzing phase draws a JSON request in flatmap_case; the coverage phase (no draws in a
        # map_case) and the examples phase encode the operation's documented JSON example
        return case if _phase(case) == "fuzzing" else _example_encoded(case, media_type)
    if isinstance(case.body, dict):
        body = copy.deepcopy(case.body)
        if path == "/v1/monitors/{name}" and case.method.upper() == "PUT":
            repair_monitor(body)
        elif media_type in ("application/json", "application/cloudevents+json"):
            repair_json(body, path)
        if body != case.body:
            # set anew only when changed: schemathesis then revalidates it against the document
            case.body = body
    if path.endswith("/events") and media_type == "application/json":
        ce_headers(case)
    return case


def _example_encoded(case: Any, media_type: str) -> Any:
    """A coverage-phase binary case: the operation's JSON example (valid by the document) encoded."""
    body = next((item for item in case.operation.body.items if item.media_type == "application/json"), None)
    example = None if body is None else body.definition.get("example")
    if not isinstance(example, dict) or not body.is_valid(example):
        REPAIRED["binary body without a valid JSON example"] += 1
        return case
    return to_binary(case, media_type, copy.deepcopy(example))


def _json_bodies(operation: Any) -> Any:
    """The strategy of the operation's positive JSON bodies (schemathesis' own, from the document)."""
    from schemathesis.generation import GenerationMode

    body = next(item for item in operation.body.items if item.media_type == "application/json")
    config = operation.schema.config.generation_for(operation=operation, phase="fuzzing")
    return body.get_strategy(operation, config, GenerationMode.POSITIVE)


def _encoded(case: Any, media_type: str, body: Any) -> Any:
    drawn = case.body
    try:
        with np.errstate(all="raise", under="ignore"):
            repair_json(body, case.operation.path)
            return to_binary(case, media_type, body)
    except Exception:  # noqa: BLE001
        # values no binary datatype holds (an integer past 64 bits): the operation's example instead
        REPAIRED["binary body not encodable"] += 1
        _set_binary(case, bytes(drawn.data) if isinstance(drawn, Binary) else b"")
        return _example_encoded(case, media_type)


@schemathesis.hook
def flatmap_case(context: Any, case: Any) -> Any:
    """A positive binary case: a drawn JSON request of the operation, repaired, then encoded."""
    media_type = case.media_type
    if not _positive(case) or media_type not in BINARY_MEDIA_TYPES or _phase(case) != "fuzzing":
        return st.just(case)
    return _json_bodies(case.operation).map(lambda body: _encoded(case, media_type, body))
