"""The two forms of ``POST /v1/monitors/{name}/sequences``, stated as ``anyOf`` in ``SequencesBody``.

- a /v1/logprobs body: exactly one of `responses` | `response`, and none of the B×T×K fields
  (`logits`, `probs`, `labels`, `mask`, `ignore_index`);
- B×T×K sequences as /v1/cross-entropy takes them: exactly one of `logits` | `probs` (nested
  B×T×K numbers, K ≥ 2; probabilities in [0, 1]), B×T `labels`, and only the fields of that form
  (`mask`, `ignore_index`, `bytes`, `words`, and `timestamps`, `segment`).

A field sent as null counts as not sent, as the service reads it.
"""

from typing import Any

BODY = "SequencesBody"
PREDICTIONS = ("logits", "probs")
SEQUENCE_ONLY = ("logits", "probs", "labels", "mask", "ignore_index")
#: The fields a B×T×K sequences body may send besides the predictions and labels.
SEQUENCE_FIELDS = {*SEQUENCE_ONLY, "bytes", "words", "timestamps", "segment"}


def _sent(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def _not_sent(names: list[str]) -> dict[str, Any]:
    return {"properties": {name: {"type": "null"} for name in names}}


def _tokens(low: float, high: float) -> dict[str, Any]:
    """B×T×K nested numbers in [`low`, `high`], K ≥ 2."""
    numbers = {"type": "number", "minimum": low, "maximum": high}
    k = {"type": "array", "minItems": 2, "items": numbers}
    return {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "items": k}}


def state_sequence_forms(schemas: dict[str, Any], logprobs_rules: list[dict[str, Any]]) -> None:
    """State the two forms of a sequences body in `schemas`, `logprobs_rules` those of /v1/logprobs."""
    body = schemas.get(BODY)
    if body is None:
        return
    fields = list(body.get("properties", {}))
    logprobs_form = {"allOf": [*logprobs_rules, _not_sent(list(SEQUENCE_ONLY))]}
    sequences_form = {
        "allOf": [
            {"oneOf": [_sent(name) for name in PREDICTIONS]},
            _sent("labels"),
            _not_sent([name for name in fields if name not in SEQUENCE_FIELDS]),
            {
                "properties": {
                    "logits": {
                        "anyOf": [_tokens(-1.7976931348623157e308, 1.7976931348623157e308), {"type": "null"}]
                    },
                    "probs": {"anyOf": [_tokens(0, 1), {"type": "null"}]},
                }
            },
        ]
    }
    body["anyOf"] = [logprobs_form, sequences_form]
