"""Options across fields: rules where one field's value decides what another may be, as ``if``/``then``.

Each rule is written once over field names (:data:`RULES`) and stated twice: in the JSON body's
component (:func:`on_body`) and in the endpoint's narrowed inference request (:func:`on_inference`),
where a field is either an input's role (in ``inputs``) or an option (in ``parameters``).

A condition or consequence is a tuple:

- ``("always",)`` (a condition): the consequence holds whatever is sent;
- ``("sent", f)``: `f` is sent (not null);
- ``("in", f, values)``: `f` is sent with one of `values`;
- ``("not_in", f, values)``: `f` is absent, null or none of `values`;
- ``("none", fields)``: none of `fields` is sent (each absent or null);
- ``("binary", fields)``: the one of `fields` that is sent is binary (a vector, or N×2);
- ``("fitted_on_scores", bool)``: /v1/apply's `parameters` were fitted on raw scores (or not);
- ``("items_in", f, values)``: `f`, when sent, lists only `values`;
- ``("rank3", fields)``: the one of `fields` that is sent is a B×T×K tensor (a ``shape`` of 3);
- ``("matrix", fields)``: the one of `fields` that is sent is N×K (rows, or a ``shape`` of 2);
- ``("preset", {preset: fields})``: the preset sent leaves out the fields it fixes.
"""

from typing import Any

from service.api.schemas.calibration import CONVENTION_FIELDS
from service.core.calibration.conventions import PRESETS
from service.core.calibration.multilabel import MULTILABEL_ALLOWED

Term = tuple[Any, ...]
#: Methods whose maps take raw `scores` (service.api.routes.recalibration_inputs.SCORE_METHODS).
SCORE_METHODS = ["isotonic", "platt", "sigmoid"]
#: The metrics multilabel calibration reports (service.api.routes.calibration_multilabel).
#: Methods of binary predictions only (service.api.maps.BINARY_ONLY): a vector, or N×2. Stated for
#: raw `scores` (then a vector: scores are K ≥ 3 or N); for `logits` and `probs` too, the if/then on
#: `method` leaves /v1/apply's body raw ("Schemathesis does not support this part of it") and
#: /v1/recalibrate's past "result is not supported in canonical form" (schemathesis 4.32.5).
BINARY_METHODS = ["platt", "beta"]
MULTILABEL_METRICS = [*MULTILABEL_ALLOWED, "reliability"]
#: Stands for "any value but 0" in a rule's values (label smoothing is off at 0).
NONZERO = "nonzero"
_PREDICTIONS = ("logits", "probs")
#: The predictions of a recalibration map.
_SCORED = ("logits", "probs", "scores")
#: `mask` marks the scored tokens of B×T×K sequences. The document states /v1/apply's predictions
#: N×K or N (:data:`.values.MATRIX_BODIES`; its B×T×K token sequences are described in the fields,
#: not stated; /v1/temperature's and /v1/recalibrate's are stated), so there `mask` is never sent:
#: as an ``if``/``then`` on the predictions' shape, /v1/apply's body is more than schemathesis
#: 4.32.5 generates from ("Schemathesis does not support this part of it"): see ApplyBody's rules.
#: What a temperature fit of B×T×K token sequences refuses (routes.temperature_sequences._refuse).
_NOT_FOR_SEQUENCES = ["targets", "sample_weight", "classes", "pos_label", "validation"]
#: A divergence's p side decides: B×T×K token sequences take `mask`, N×K rows `sample_weight`.
_P_SIDE = ("p_probs", "p_logits")

_PRESET_RULES: list[tuple[Term, Term]] = [
    (
        ("sent", "preset"),
        (
            "preset",
            {name: [f for f in CONVENTION_FIELDS if f not in spec.free] for name, spec in PRESETS.items()},
        ),
    )
]
#: `edges` and `binning`: one ``if``/``then``/``else`` (two closed alternatives): edges sent, with a
#: binning that is absent, null or "edges" and no preset (every preset fixes them); or no edges, and
#: a binning other than "edges".
_EDGES: list[tuple[Term, Term]] = [
    (("sent", "edges"), ("not_in", "binning", ["uniform", "quantile"])),
    (("sent", "edges"), ("none", ["preset"])),
    (("none", ["edges"]), ("not_in", "binning", ["edges"])),
]
_CALIBRATION: list[tuple[Term, Term]] = [
    (("sent", "mask"), ("rank3", _PREDICTIONS)),
    # (`targets` without `ignore_index` follows from the multilabel rules below: stated once, as a
    # generator pays for each condition)
    *_EDGES,
    # B×T×K sequences: top-label pairs of each scored token, no per-row weights, classes or bootstrap
    (("rank3", _PREDICTIONS), ("none", ["sample_weight", "bootstrap", "classes", "pos_label"])),
    (("rank3", _PREDICTIONS), ("not_in", "target", ["positive_class"])),
]
#: Rules JSON Schema states but the document leaves out for the generator's sake: the other fields a
#: preset fixes. With them on /v1/calibration's body (in any form tried: one alternative per preset,
#: one ``if``/``then`` per field, per group of presets) jsonschema_rs 0.60.3 leaves the body's
#: canonical form raw, and schemathesis 4.32.5 reports "Schemathesis does not support this part of
#: it"; the endpoint's description says them.
UNGENERATED: list[tuple[Term, Term]] = _PRESET_RULES
_MULTILABEL_CALIBRATION: list[tuple[Term, Term]] = [
    # (`classes` name the columns and `bootstrap` resamples rows: both apply with multilabel)
    (("in", "multilabel", [True]), ("none", ["labels", "ignore_index", "top_k", "pos_label"])),
    (("in", "multilabel", [True]), ("not_in", "normalize", [True])),
    (("in", "multilabel", [True]), ("not_in", "target", ["top_label", "positive_class", "marginal"])),
    (("in", "multilabel", [True]), ("matrix", _PREDICTIONS)),
    (("in", "multilabel", [True]), ("items_in", "metrics", MULTILABEL_METRICS)),
    (("not_in", "multilabel", [True]), ("none", ["targets"])),
]
#: Per request-body schema (and so per endpoint taking it): (condition, consequence) rules.
RULES: dict[str, list[tuple[Term, Term]]] = {
    "CalibrationBody": _CALIBRATION + _MULTILABEL_CALIBRATION,
    "CrossEntropyBody": [
        (("in", "multilabel", [True]), ("none", ["labels", "weight", "mask", "bytes", "words"])),
        (("in", "multilabel", [True]), ("none", ["ignore_index", "top_k", "classes", "pos_label"])),
        (("in", "multilabel", [True]), ("not_in", "label_smoothing", [NONZERO])),
        (("in", "multilabel", [True]), ("not_in", "normalize", [True])),
        (("in", "multilabel", [True]), ("matrix", _PREDICTIONS)),
        (("sent", "mask"), ("rank3", _PREDICTIONS)),
        (("sent", "targets"), ("none", ["ignore_index"])),
    ],
    "DivergenceBody": [
        (("sent", "mask"), ("rank3", _P_SIDE)),
        (("rank3", _P_SIDE), ("none", ["sample_weight"])),
        (("rank3", _P_SIDE), ("not_in", "elementwise", [True])),
        (("rank3", _P_SIDE), ("not_in", "normalize", [True])),
    ],
    "RecalibrateBody": [
        (("sent", "scores"), ("in", "method", SCORE_METHODS)),
        (("in", "method", BINARY_METHODS), ("binary", ("scores",))),
        (("sent", "targets"), ("none", ["ignore_index", "target_smoothing"])),
        # B×T×K token logits: a temperature only, as /v1/temperature takes them (`scores` in the
        # group: raw scores, never B×T×K, keep the condition from holding when neither is sent)
        (("sent", "mask"), ("rank3", _SCORED)),
        (("rank3", _SCORED), ("in", "method", ["temperature"])),
        (("rank3", _SCORED), ("none", _NOT_FOR_SEQUENCES)),
        (("rank3", _SCORED), ("not_in", "normalize", [True])),
        (("rank3", _SCORED), ("not_in", "return_probs", [True])),
    ],
    # (apply drops no rows: `ignore_index` marks padding in B×T×K sequences only, as `mask`)
    "ApplyBody": [
        # raw scores take maps fitted on them (Platt, sigmoid, isotonic with input "scores"), and
        # logits or probs the others
        (("sent", "scores"), ("fitted_on_scores", True)),
        (("none", ["scores"]), ("fitted_on_scores", False)),
        (("in", "parameters.method", BINARY_METHODS), ("binary", ("scores",))),
        (("always",), ("none", ["mask", "ignore_index"])),
    ],
    "TemperatureBody": [
        (("sent", "targets"), ("none", ["ignore_index"])),
        # B×T×K token logits (one T over every scored token): B×T `labels`, `mask` with them only
        (("sent", "mask"), ("rank3", _PREDICTIONS)),
        (("rank3", _PREDICTIONS), ("none", _NOT_FOR_SEQUENCES)),
        (("rank3", _PREDICTIONS), ("not_in", "normalize", [True])),
        (("rank3", _PREDICTIONS), ("not_in", "return_probs", [True])),
    ],
}
#: Rules stated on the JSON body only, not on the endpoint's inference request: with them there
#: schemathesis 4.32.5 cannot generate /v1/cross-entropy's or /v2/models/cross-entropy/infer's
#: requests ("result is not supported in canonical form": a condition on an input's shape).
BODY_ONLY: dict[str, list[tuple[Term, Term]]] = {
    "CrossEntropyBody": [
        # token ids index the vocabulary axis: no class names; perplexities need hard labels
        (("rank3", _PREDICTIONS), ("none", ["classes", "pos_label"])),
        (("rank3", _PREDICTIONS), ("not_in", "normalize", [True])),
        (("rank3", ["targets"]), ("none", ["bytes", "words"])),
    ],
}
#: Rules of one endpoint beyond its body's: the diagram takes /v1/calibration's body.
DIAGRAM_RULES: list[tuple[Term, Term]] = [
    (("sent", "multilabel"), ("not_in", "multilabel", [True])),
    (("sent", "target"), ("not_in", "target", ["classwise", "marginal"])),
]


#: Binary predictions: nested rows of at most 2 (a flat list's numbers have no length), or a tensor
#: whose shape is [N] or [N, K ≤ 2] (``items`` does not apply to an object, ``properties`` not to a list).
_BINARY: dict[str, Any] = {
    "items": {"maxItems": 2},
    "properties": {"shape": {"maxItems": 2, "prefixItems": [{}, {"maximum": 2}]}},
}


#: /v1/apply's `parameters` fitted on raw scores: Platt, sigmoid, or isotonic with input "scores".
_FITTED_ON_SCORES: dict[str, Any] = {
    "required": ["parameters"],
    "properties": {
        "parameters": {
            "type": "object",
            "required": ["method"],
            "properties": {"method": {"enum": SCORE_METHODS}},
            "if": {"properties": {"method": {"const": "isotonic"}}},
            "then": {"required": ["input"], "properties": {"input": {"const": "scores"}}},
        }
    },
}
#: ... and fitted on logits or probabilities: no sigmoid, no isotonic map with input "scores".
_FITTED_ON_PREDICTIONS: dict[str, Any] = {
    "properties": {
        "parameters": {
            "properties": {"method": {"not": {"const": "sigmoid"}}, "input": {"not": {"const": "scores"}}}
        }
    }
}


def _values(values: list[Any]) -> dict[str, Any]:
    if values == [NONZERO]:  # label_smoothing: only 0 is "not sent"
        return {"not": {"const": 0}}
    return {"enum": values}


def _field(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` on field `name` of an object (``a.b``: `b` inside object field `a`), `name` required."""
    head, _, rest = name.partition(".")
    # an object holding `rest` (``properties`` alone would let a null `head` through)
    inner = {"type": "object", **_field(rest, schema)} if rest else schema
    return {"required": [head], "properties": {head: inner}}


def _body_term(term: Term) -> dict[str, Any]:
    kind = term[0]
    if kind == "sent":
        return _field(term[1], {"not": {"type": "null"}})
    if kind == "in":
        return _field(term[1], _values(term[2]))
    if kind == "not_in":
        return {"properties": {term[1]: {"not": _values(term[2])}}}
    if kind == "none":
        return {"properties": {f: {"type": "null"} for f in term[1]}}
    if kind == "binary":  # a vector or N×2: rows of at most 2, a shape [N] or [N, ≤ 2] (no disjunction)
        return {"properties": dict.fromkeys(term[1], _BINARY)}
    if kind == "fitted_on_scores":  # /v1/apply's `parameters`: fitted on raw scores, or not
        return _FITTED_ON_SCORES if term[1] else _FITTED_ON_PREDICTIONS
    if kind == "items_in":
        return {"properties": {term[1]: {"anyOf": [{"type": "null"}, {"items": _values(term[2])}]}}}
    if kind == "preset":  # each preset leaves out the fields it fixes
        fixed = [
            {"allOf": [_field("preset", {"const": p}), _body_term(("none", f))]} for p, f in term[1].items()
        ]
        return {"anyOf": fixed}
    # rank3 (only tensor objects have 3 dimensions) or matrix (rows, or a tensor of 2 dimensions)
    dims = {"minItems": 3} if kind == "rank3" else {"minItems": 2, "maxItems": 2}
    forms: list[dict[str, Any]] = [{"type": "object", "required": ["shape"], "properties": {"shape": dims}}]
    if kind == "matrix":
        forms.append({"type": "array", "items": {"type": "array"}})
    if len(term[1]) == 1:
        return _field(term[1][0], _any(forms))
    # Of an "exactly one of" group: each sent field has the form (a field's own schema: no disjunction
    # across fields, which a generator pays for).
    return {"properties": {f: {"anyOf": [{"type": "null"}, *forms]} for f in term[1]}}


def _any(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def _names(term: Term) -> list[str]:
    if term[0] == "always":
        return []
    if term[0] == "fitted_on_scores":
        return ["parameters"]
    if term[0] == "preset":
        return ["preset"]
    names = term[1] if term[0] in ("none", "rank3", "matrix", "binary") else [term[1]]
    return [name.partition(".")[0] for name in names]


def applicable(rules: list[tuple[Term, Term]], fields: set[str]) -> list[tuple[Term, Term]]:
    """The `rules` whose fields are all among `fields` (a body's properties)."""
    return [(c, t) for c, t in rules if set(_names(c)) | set(_names(t)) <= fields]


def _merged(rules: list[tuple[Term, Term]], term: Any) -> list[dict[str, Any]]:
    """`rules` as few ``if``/``then`` schemas as they can be written with (each doubles a generator's work).

    One per condition (its consequences in an ``allOf``); a condition and its negation (``in`` /
    ``not_in`` the same values, ``sent`` / ``none`` of one field) as one ``if``/``then``/``else``; a
    field that, when sent, must be none of some values, without a condition.
    """
    by_condition: dict[str, tuple[Term, list[Term]]] = {}
    for cond, then in rules:
        by_condition.setdefault(repr(cond), (cond, []))[1].append(then)
    stated: list[dict[str, Any]] = []
    done: set[str] = set()
    for key, (cond, thens) in by_condition.items():
        if key in done:
            continue
        if cond[0] == "always":
            stated.extend(term(t) for t in thens)
            continue
        if cond[0] == "sent" and all(t[0] == "not_in" and t[1] == cond[1] for t in thens):
            stated.extend(term(t) for t in thens)  # "f, when sent, is none of": null is none of them
            continue
        rule = {"if": term(cond), "then": _all([term(t) for t in thens])}
        if cond[0] in ("in", "sent"):
            negation = repr(("not_in", *cond[1:]) if cond[0] == "in" else ("none", [cond[1]]))
            if negation in by_condition:
                rule["else"] = _all([term(t) for t in by_condition[negation][1]])
                done.add(negation)
        stated.append(rule)
    return stated


def _all(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    return schemas[0] if len(schemas) == 1 else {"allOf": schemas}


def on_body(rules: list[tuple[Term, Term]]) -> list[dict[str, Any]]:
    """`rules` as ``if``/``then`` schemas of a JSON body."""
    return _merged(rules, _body_term)


def _inference_term(term: Term, roles: list[str], is_role: Any) -> dict[str, Any]:
    kind = term[0]
    names = (
        list(term[1])
        if kind in ("none", "rank3", "matrix", "binary")
        else []
        if kind in ("preset", "fitted_on_scores")
        else [term[1]]
    )
    if not any(name in roles for name in names):  # options: the same rule inside `parameters`
        return (
            _field("parameters", _body_term(term))
            if kind in ("sent", "in")
            else {"properties": {"parameters": {"anyOf": [{"type": "null"}, _body_term(term)]}}}
        )
    if kind == "sent":
        return _field("inputs", {"contains": is_role(names)})
    if kind == "none":
        inputs = {"properties": {"inputs": {"items": {"not": is_role([n for n in names if n in roles])}}}}
        options = [n for n in names if n not in roles]
        if not options:
            return inputs
        return {"allOf": [inputs, _inference_term(("none", options), roles, is_role)]}
    if kind == "binary":  # each input filling one of `names` has a binary shape
        binary = {"properties": {"shape": _BINARY["properties"]["shape"]}}
        return {"properties": {"inputs": {"items": {"if": is_role(names), "then": binary}}}}
    # rank3, matrix
    dims = {"minItems": 3} if kind == "rank3" else {"minItems": 2, "maxItems": 2}
    shaped = {"allOf": [is_role(names), {"properties": {"shape": dims}}]}
    return _field("inputs", {"contains": shaped})


def on_inference(rules: list[tuple[Term, Term]], roles: list[str], is_role: Any) -> list[dict[str, Any]]:
    """`rules` as ``if``/``then`` schemas of an inference request whose inputs fill `roles`."""
    return _merged(rules, lambda term: _inference_term(term, roles, is_role))
