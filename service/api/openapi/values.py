"""Tensor values by role: the value ranges of an array field, stated in the document.

An array field is a nested list, a flat list or an OIP tensor object (``Tensor``), and an
inference request's input is a tensor whose role is its ``parameters.role`` or ``name``. The
shared forms take any numbers; per role the service reads them further, and the document says so:

- predictions (``logits``, ``probs``, ...) have K ≥ 2 classes (rows of at least 2 numbers, a tensor
  ``shape`` whose last dimension is at least 2), ``scores`` K ≥ 3; where an endpoint takes no
  B×T×K sequences (in the document: apply, a monitor's observations) at most 2 dimensions;
  /v1/temperature's and /v1/recalibrate's B×T×K token logits are stated (rules: :mod:`.across`);
- hard ``labels`` hold integers (a tensor's ``data`` too; ``2.0`` is one), 1-D on those endpoints;
- probabilities (``probs``, ``p_probs``, ``q_probs``) and soft or multilabel ``targets`` lie in
  [0, 1] (``minimum``/``maximum`` on every number, and on a tensor's ``data``);
- every number is finite: a JSON number beyond ±1.7976931348623157e308 reads as ±inf, and one
  that rounds to ±inf when the tensor is read in a narrow datatype (FP16 from ±65520, FP32 from
  ±3.4028235677973366e38, BF16 from ±3.396177427818412e38: its largest finite value plus half a
  step) is refused (one ``anyOf`` branch per datatype on the tensor forms);
- an integer option is an int64, as JSON carries it exactly;
- an integer datatype's ``data`` holds integers that fit it (INT8 in [-128, 127], ...), on tensor
  objects and inference inputs (there one whole object per datatype: :func:`state_inference_input`).
"""

from typing import Any

import numpy as np

#: Array fields (and inference-input roles) whose values are probabilities (`targets`: soft
#: targets or multilabel indicators, refused outside [0, 1] by the server in every form).
UNIT_INTERVAL = ("probs", "p_probs", "q_probs", "targets")
#: Array fields (and roles) that are predictions (or soft targets): N×K with K ≥ 2, a length-N
#: vector, or B×T×K.
PREDICTIONS = ("logits", "probs", "p_probs", "p_logits", "q_probs", "q_logits", "scores", "targets")
#: Bodies whose predictions are N×K or N only (no B×T×K token sequences).
MATRIX_BODIES = ("ObservationsBody", "ApplyBody")
DATATYPE_VALUES = "TensorDatatypeValues"
TENSOR = "#/components/schemas/Tensor"
FLOAT64_MAX = 1.7976931348623157e308
#: The smallest magnitude each narrow float datatype rounds to ±inf (the server's rounding: numpy's
#: float16 and float32 casts; BF16 through float32, then to nearest, ties to even). Wider ones need
#: nothing more.
ROUNDS_TO_INF = {"FP16": 65520.0, "FP32": 3.4028235677973366e38, "BF16": 3.396177427818412e38}
#: The largest double each narrow float datatype reads as finite (a plain ``maximum``).
FINITE_MAX = {name: float(np.nextafter(rounds, 0.0)) for name, rounds in ROUNDS_TO_INF.items()}
#: The integers each integer datatype holds (numpy.iinfo).
INTEGER_RANGES = {
    f"{'U' if unsigned else ''}INT{bits}": (0, 2**bits - 1)
    if unsigned
    else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    for unsigned in (False, True)
    for bits in (8, 16, 32, 64)
}


def _bound_numbers(schema: Any, low: float, high: float) -> None:
    """Add ``minimum``/``maximum`` to every ``"type": "number"`` in `schema` (not through $ref), in place."""
    if isinstance(schema, dict):
        if schema.get("type") == "number":
            schema["minimum"] = max(schema.get("minimum", low), low)
            schema["maximum"] = min(schema.get("maximum", high), high)
        for value in schema.values():
            _bound_numbers(value, low, high)
    elif isinstance(schema, list):
        for value in schema:
            _bound_numbers(value, low, high)


def _bound_integers(schema: Any) -> None:
    """Bound every unbounded ``"type": "integer"`` in `schema` by int64 (not through $ref), in place."""
    if isinstance(schema, dict):
        if schema.get("type") == "integer":
            schema.setdefault("minimum", -(2**63))
            schema.setdefault("maximum", 2**63 - 1)
        for value in schema.values():
            _bound_integers(value)
    elif isinstance(schema, list):
        for value in schema:
            _bound_integers(value)


def _data(item: dict[str, Any]) -> dict[str, Any]:
    """`data` as flat or nested lists whose numbers are `item` (the shapes of ``Tensor.data``)."""
    row = {"type": "array", "minItems": 1, "items": item}
    return {"anyOf": [row, {"type": "array", "minItems": 1, "items": row}]}


def datatype_rules() -> list[dict[str, Any]]:
    """The values a tensor (or input) form's `datatype` can hold: one ``anyOf`` branch per datatype."""
    branches: list[dict[str, Any]] = [{"properties": {"datatype": {"enum": ["FP64"]}}}]
    for name, high in ROUNDS_TO_INF.items():
        values = _data({"exclusiveMinimum": -high, "exclusiveMaximum": high})
        branches.append({"properties": {"datatype": {"const": name}, "data": values}})
    for name, (low, high) in INTEGER_RANGES.items():
        values = _data({"type": "integer", "minimum": low, "maximum": high})
        branches.append({"properties": {"datatype": {"const": name}, "data": values}})
    return [{"anyOf": branches}]


def unit_interval_data() -> dict[str, Any]:
    """An input (or tensor) whose ``data``, when sent, holds numbers in [0, 1]."""
    return {"properties": {"data": _data({"minimum": 0, "maximum": 1})}}


def _shape(least_k: int, most_rank: int) -> dict[str, Any]:
    """A tensor shape [N], [N, K] (or [B, T, K] when `most_rank` is 3) with K ≥ `least_k`."""
    forms: list[dict[str, Any]] = [
        {"maxItems": 1},
        {"minItems": 2, "maxItems": 2, "prefixItems": [{}, {"minimum": least_k}]},
    ]
    if most_rank == 3:
        forms.append({"minItems": 3, "prefixItems": [{}, {}, {"minimum": least_k}]})
    return {"required": ["shape"], "properties": {"shape": {"anyOf": forms}}}


def role_values(role: str, body: str) -> dict[str, Any] | None:
    """What a tensor (or input) filling `role` of `body` holds beyond any tensor's values, if anything.

    Predictions have K ≥ 2 classes (raw `scores` K ≥ 3 when not a vector); a monitor's
    observations are N×K or N, not B×T×K; probabilities lie in [0, 1].
    """
    if role == "labels":  # class indices (or token ids): integers, 1-D where no sequences are taken
        integers = {"$ref": "#/components/schemas/LabelData"}
        return (
            {"allOf": [{"$ref": "#/components/schemas/VectorShape"}, integers]}
            if body in MATRIX_BODIES
            else integers
        )
    if role not in PREDICTIONS:
        return None
    shape = (
        "ScoresShape"
        if role == "scores"
        else "PredictionMatrixShape"
        if body in MATRIX_BODIES
        else "PredictionShape"
    )
    if role not in UNIT_INTERVAL:
        return {"$ref": f"#/components/schemas/{shape}"}
    return {
        "allOf": [{"$ref": f"#/components/schemas/{shape}"}, {"$ref": "#/components/schemas/ProbabilityData"}]
    }


#: The shared components :func:`role_values` refers to.
SHAPES = {
    "PredictionShape": ("Predictions: [N], [N, K] or [B, T, K], with K ≥ 2.", 2, 3),
    "PredictionMatrixShape": ("Predictions: [N] or [N, K], with K ≥ 2.", 2, 2),
    "ScoresShape": ("Raw scores: [N] or [N, K], with K ≥ 3.", 3, 2),
}


def _nested(schema: Any, role: str) -> None:
    """Bound the nested-list forms of `role`'s field `schema` (rows of K ≥ 2, probabilities in [0, 1])."""
    if isinstance(schema, dict):
        items = schema.get("items")
        if schema.get("type") == "array" and isinstance(items, dict) and items.get("type") == "array":
            items["minItems"] = max(items.get("minItems", 0), 3 if role == "scores" else 2)
        for value in schema.values():
            _nested(value, role)
    elif isinstance(schema, list):
        for value in schema:
            _nested(value, role)


def _retarget(schema: Any, extra: dict[str, Any]) -> None:
    """Narrow every ``Tensor`` $ref in `schema` by `extra`, in place."""
    if isinstance(schema, dict):
        if schema.get("$ref") == TENSOR:
            schema.pop("$ref")
            schema["allOf"] = [{"$ref": TENSOR}, extra]
            return
        for value in schema.values():
            _retarget(value, extra)
    elif isinstance(schema, list):
        for value in schema:
            _retarget(value, extra)


def state_values(schemas: dict[str, Any]) -> None:
    """State the value ranges of tensors and of probability fields in the component `schemas`."""
    tensor = schemas.get("Tensor")
    if tensor is None:
        return
    _bound_numbers(tensor, -FLOAT64_MAX, FLOAT64_MAX)
    schemas[DATATYPE_VALUES] = {
        "description": "The values a tensor's `datatype` holds: finite in its range, integers that fit.",
        "allOf": datatype_rules(),
    }
    by_datatype = {"$ref": f"#/components/schemas/{DATATYPE_VALUES}"}
    tensor["allOf"] = [*tensor.get("allOf", []), by_datatype]
    for shape_name, (description, least_k, most_rank) in SHAPES.items():
        schemas[shape_name] = {"description": description, **_shape(least_k, most_rank)}
    schemas["VectorShape"] = {
        "description": "Hard labels where no token sequences are taken: [N].",
        "required": ["shape"],
        "properties": {"shape": {"maxItems": 1}},
    }
    schemas["LabelData"] = {
        "description": "A tensor of labels: `data` holds integers (2.0 counts, as in JSON Schema).",
        "properties": {"data": _data({"type": "integer"})},
    }
    schemas["ProbabilityData"] = {
        "description": "A tensor of probabilities (or soft targets): `data` in [0, 1].",
        **unit_interval_data(),
    }
    for name, schema in list(schemas.items()):
        if not name.endswith("Body"):
            continue
        _bound_integers(schema.get("properties", {}))
        for field, prop in schema.get("properties", {}).items():
            if TENSOR not in str(prop):  # not an array field
                continue
            _bound_numbers(prop, *((0, 1) if field in UNIT_INTERVAL else (-FLOAT64_MAX, FLOAT64_MAX)))
            extra = role_values(field, name)
            if extra is not None:
                _nested(prop, field)
                _retarget(prop, extra)
    inference_input = schemas.get("InferenceInput")
    if inference_input is not None:
        state_inference_input(inference_input)


def _bounded_data(number: dict[str, Any]) -> dict[str, Any]:
    """An input's `data`: flat or nested lists of `number`, or null (a binary input's)."""
    return {"anyOf": [*_data(number)["anyOf"], {"type": "null"}], "default": None}


def state_inference_input(schema: dict[str, Any]) -> None:
    """Restate the ``InferenceInput`` `schema`, in place, as one alternative per `datatype`.

    Each alternative is a whole input object (every field, `datatype` a ``const``) whose `data`
    holds what that datatype reads: finite numbers below the narrow floats' rounding to ±inf
    (plain ``minimum``/``maximum``: the largest double below it), integers within an integer
    type's width, any finite number in FP64. Stated as constraints over one object (an ``anyOf``
    of ``datatype``/``data`` pairs beside the fields, with a ``not`` over the other datatypes),
    a negative case negating them stopped schemathesis 4.32.5 with "result is not supported in
    canonical form" on cross-entropy's inference requests and a monitor's observations
    (jsonschema_rs 0.60.3 intersecting them with each role's values); whole objects, it builds
    (tests/contract/test_generator_forms.py).
    """
    properties = schema.pop("properties")
    required = schema.pop("required")
    ranges: dict[str, dict[str, Any]] = {
        "FP64": {"type": "number", "minimum": -FLOAT64_MAX, "maximum": FLOAT64_MAX}
    }
    for name, top in FINITE_MAX.items():
        ranges[name] = {"type": "number", "minimum": -top, "maximum": top}
    for name, (low, high) in INTEGER_RANGES.items():
        ranges[name] = {"type": "integer", "minimum": low, "maximum": high}
    datatype = properties["datatype"]
    branches = []
    for name in datatype["enum"]:
        fields = {
            **properties,
            "datatype": {"const": name, "description": datatype.get("description", "")},
            "data": _bounded_data(ranges[name]),
        }
        fields["data"]["description"] = properties["data"].get("description", "")
        branches.append({"type": "object", "properties": fields, "required": required})
    schema["oneOf"] = branches
