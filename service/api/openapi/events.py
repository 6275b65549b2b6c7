"""A structured-mode CloudEvent of KServe's inference logger, stated as the events route reads it.

- the required attributes (`id`, `source`, `type`, `specversion`) and `time`; attribute names are
  lower-case (CloudEvents 1.0), so a member ``ID`` is an extension, not the `id`;
- `data` (required here; `data_base64` instead, base64 of the same JSON, is read too but not
  stated: no schema says which strings are base64 of JSON), and never both;
- a response event's `data` holds the predictions: V1 ``predictions`` (a length-N list or N×K
  rows of numbers) or V2 ``outputs`` (a non-empty list of tensors, each with a numeric
  `datatype`, its `shape` and row-major `data`, finite when read in that datatype). Which
  tensor, N×K against the monitor's classes, and logits or probabilities are the monitor's
  (`output`, `n_classes`, `output_kind`): state on the server, said in its 422s.
"""

from typing import Any

from service.monitors.batch_checks import MAX_ID_CHARS
from service.monitors.events import DATATYPES, RESPONSE, TYPES

from .values import FINITE_MAX, FLOAT64_MAX


def _numbers(high: float) -> dict[str, Any]:
    """A length-N list or N×K rows of numbers within ±`high`."""
    number = {"type": "number", "minimum": -high, "maximum": high}
    row = {"type": "array", "minItems": 1, "items": number}
    return {"type": "array", "minItems": 1, "items": {"anyOf": [number, row]}}


def _tensor(datatype: dict[str, Any], high: float) -> dict[str, Any]:
    """A V2 output tensor of `datatype` whose values are within ±`high`."""
    return {
        "type": "object",
        "required": ["datatype", "shape", "data"],
        "properties": {
            "name": {"type": "string"},
            "datatype": datatype,
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}},
            "data": _numbers(high),
        },
    }


def _outputs() -> dict[str, Any]:
    """V2 outputs: one whole tensor object per datatype range (a narrow float's, else float64's)."""
    narrow = [name for name in FINITE_MAX if name in DATATYPES]
    wide = [name for name in DATATYPES if name not in narrow]
    tensors = [_tensor({"enum": wide}, FLOAT64_MAX)]
    for name in narrow:
        tensors.append(_tensor({"const": name}, FINITE_MAX[name]))
    return {"type": "array", "minItems": 1, "items": {"oneOf": tensors}}


#: A response event's `data`: V1 `predictions` or V2 `outputs` (`outputs` read first).
RESPONSE_DATA: dict[str, Any] = {
    "type": "object",
    "description": "An inference response: V1 `predictions` or V2 `outputs` (read first when both).",
    "anyOf": [{"required": ["predictions"]}, {"required": ["outputs"]}],
    "properties": {"predictions": _numbers(FLOAT64_MAX), "outputs": _outputs()},
}
#: The binary-mode body (its attributes are `ce-*` headers).
JSON_SCHEMA: dict[str, Any] = {"type": "object", "description": "A V1 or V2 (OIP) inference response."}
#: A structured-mode CloudEvent as read here (extension attributes may be added).
STRUCTURED_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["id", "source", "type", "specversion", "data"],
    "properties": {
        # (a response of N > 1 rows names them `<id>:<row>`, each within the same 128 characters)
        "id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
        "source": {"type": "string", "minLength": 1},
        "type": {"enum": list(TYPES)},
        "specversion": {"const": "1.0"},
        "time": {"type": "string", "format": "date-time"},
        "data": {"type": "object", "description": "The inference request or response."},
        "data_base64": False,
    },
    "if": {"required": ["type"], "properties": {"type": {"const": RESPONSE}}},
    "then": {"properties": {"data": RESPONSE_DATA}},
}
