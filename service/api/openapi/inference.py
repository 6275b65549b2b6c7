"""An endpoint's OIP inference request, stated as precisely as JSON Schema allows.

The generic ``InferenceRequest`` takes any input names and any ``parameters``. For an endpoint
the document narrows it (:func:`narrow`): each input's role (``parameters.role``, else its
``name``) is one of the endpoint's array fields, at most once; each "exactly one of" group of
roles (``logits`` | ``probs``, ...) is filled exactly once (``contains`` with
``minContains``/``maxContains``); ``parameters`` holds only the endpoint's options, typed as in
its JSON body and, on /v2, ``binary_data_output``. (An object or list option may also come as its
JSON text, as OIP parameters are scalars: said in the description, not in the schema, since no
schema can say which strings are valid JSON.) What JSON Schema cannot say (``data`` matching
``shape``, labels below K) stays in the endpoint's description and its 422s.

Little is copied per endpoint: an option is a ``$ref`` to its field in the JSON body's component
(``#/components/schemas/CrossEntropyBody/properties/eps``), and the inputs' rules are one component
per body (``CrossEntropyInferenceInputs``) that /v1 and /v2 share. ``InferenceRequest``'s own fields
and the rules across fields are spelled out in each request: behind a pointer, a negative case
negating them stopped schemathesis' generator (tests/contract/test_generator_forms.py).
"""

from collections.abc import Sequence
from copy import deepcopy
from typing import Any

from .across import RULES, applicable, on_inference
from .values import role_values

INFERENCE_REQUEST = "#/components/schemas/InferenceRequest"
#: Marks a schema to narrow: the request-body component whose fields it serves, and its roles.
MARK = "x-xent-inference-request"


def marker(body: str, roles: tuple[str, ...]) -> dict[str, Any]:
    """A placeholder for `body`'s inference request with `roles`, narrowed by :func:`narrow`."""
    return {"$ref": INFERENCE_REQUEST, MARK: {"body": body, "roles": list(roles)}}


#: An input's parameters that name no role (absent, or null): its `name` is its role.
_NO_ROLE_VALUES: dict[str, Any] = {
    "anyOf": [
        {"type": "null"},
        {"not": {"required": ["role"]}},
        {"properties": {"role": {"type": "null"}}},
    ],
}


def _is_role(roles: list[str]) -> dict[str, Any]:
    """An input whose role is one of `roles`: ``parameters.role``, or its name when that is absent/null."""
    by_parameter = {
        "required": ["parameters"],
        "properties": {"parameters": {"required": ["role"], "properties": {"role": {"enum": roles}}}},
    }
    # spelled out, not a pointer to NO_ROLE: a ``not`` over a pointer (the rules' negations, schemathesis'
    # negative mutations) leaves an ``allOf`` schemathesis 4.32.5 intersects only when a draw reaches it,
    # and there jsonschema_rs 0.60.3 raises "result is not supported in canonical form"
    by_name = {"properties": {"name": {"enum": roles}, "parameters": _NO_ROLE_VALUES}}
    return {"anyOf": [by_parameter, by_name]}


#: A tensor of a JSON body: it carries its `data`, and so no `binary_data_size` (a shared component).
IN_JSON = "InferenceInputInJson"
_IN_JSON: dict[str, Any] = {
    "description": "An input of a JSON inference request: its values in `data`, no `binary_data_size` "
    "(that is the binary extension's).",
    "required": ["data"],
    "properties": {
        "data": {"not": {"type": "null"}},
        "parameters": {
            "anyOf": [
                {"type": "null"},
                {"not": {"required": ["binary_data_size"]}},
                {"properties": {"binary_data_size": {"type": "null"}}},
            ]
        },
    },
}


def _role_values(roles: list[str], body: str) -> dict[str, Any]:
    """An input filling one of `roles`, with its values as the role reads them (:mod:`.values`)."""
    special = {r: extra for r in roles if (extra := role_values(r, body)) is not None}
    if not special:
        return _is_role(roles)
    others = [r for r in roles if r not in special]
    branches = [{"allOf": [_is_role([r]), extra]} for r, extra in special.items()]
    return {"anyOf": branches + ([_is_role(others)] if others else [])}


#: `classes` sent as names (strings): labels are then names, which no numeric tensor holds.
STRING_CLASSES: dict[str, Any] = {
    "required": ["classes"],
    "properties": {"classes": {"type": "array", "items": {"type": "string"}}},
}


def _counted(roles: list[str], least: int) -> dict[str, Any]:
    return {"contains": _is_role(roles), "minContains": least, "maxContains": 1}


def _sent(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def narrow(
    schema: dict[str, Any],
    components: dict[str, Any],
    groups: list[tuple[str, ...]],
    at_most_one: list[tuple[str, ...]],
    oip: bool,
    rules: Sequence[tuple[Any, Any]] = (),
) -> None:
    """Replace a :func:`marker` `schema` in place by its narrowed inference request.

    `groups` are the body's "exactly one of" groups, `at_most_one` its "at most one of" groups,
    `rules` its rules across fields (:mod:`.across`).
    """
    mark = schema.pop(MARK)
    body = components[mark["body"]]
    # The roles the JSON body has a field for: the route reads its array fields from one list, but
    # refuses those its body lacks (/v1/temperature's raw `scores`: "apply to methods ... only").
    roles: list[str] = [r for r in mark["roles"] if r in body.get("properties", {})]
    # Each option refers to its field in the JSON body's component: typed once in the document.
    at = f"#/components/schemas/{mark['body']}/properties"
    options = {name: {"$ref": f"{at}/{name}"} for name in body.get("properties", {}) if name not in roles}
    if oip:
        options["binary_data_output"] = {"type": "boolean"}
    role_groups = [list(g) for g in groups if set(g) <= set(roles)]
    option_groups = [g for g in groups if not set(g) & set(roles)]
    optional_groups = [list(g) for g in at_most_one if set(g) <= set(roles)]
    grouped = {r for g in role_groups + optional_groups for r in g}
    # The inputs' rules are the same on /v1 and /v2: one component per body, referred to by both.
    inputs_name = f"{mark['body'].removesuffix('Body')}InferenceInputs"
    components[IN_JSON] = _IN_JSON
    components[inputs_name] = {
        "description": f"The inputs of an inference request for {mark['body']}'s fields: each fills one "
        "of its roles (`parameters.role`, else `name`), each role at most once, one of each "
        '"exactly one of" group.',
        "type": "array",
        "items": {"allOf": [_role_values(roles, mark["body"]), {"$ref": f"#/components/schemas/{IN_JSON}"}]},
        "allOf": [_counted(g, 1) for g in role_groups]
        + [_counted(g, 0) for g in optional_groups]
        + [_counted([r], 1 if r in body.get("required", []) else 0) for r in roles if r not in grouped],
    }
    inputs = {"$ref": f"#/components/schemas/{inputs_name}"}
    parameters: dict[str, Any] = {"type": "object", "properties": options, "additionalProperties": False}
    narrowed: dict[str, Any] = {"properties": {"inputs": inputs, "parameters": parameters}}
    required = [name for name in body.get("required", []) if name not in roles]
    if required:
        parameters["required"] = required
    if option_groups:
        parameters["allOf"] = [{"oneOf": [_sent(f) for f in g]} for g in option_groups]
    # `pos_label` picks one of `classes`: it needs them (`classes: null` too is refused). Not on
    # /v1/calibration's inference request: with it there, schemathesis 4.32.5 declines the body ("does
    # not support this part of it", tests/contract/test_generator_forms.py); the contract hooks repair it
    if {"pos_label", "classes"} <= options.keys() and (oip or mark["body"] != "CalibrationBody"):
        needs = {"if": _sent("pos_label"), "then": _sent("classes")}
        parameters["allOf"] = [*parameters.get("allOf", []), needs]
    if required or option_groups:  # a required option: `parameters` is required
        narrowed["required"] = ["parameters"]
    else:
        narrowed["properties"]["parameters"] = {"anyOf": [parameters, {"type": "null"}]}
    fields = set(body.get("properties", {}))
    shared = [r for r in rules if r in RULES.get(mark["body"], [])]
    if applicable(shared, fields):  # the body's rules across fields, spelled out on each request
        # (not a pointer to one component: negated whole by a negative case, a pointer there leaves
        # an intersection jsonschema_rs 0.60.3 cannot spell, tests/contract/test_generator_forms.py)
        narrowed["allOf"] = [{"allOf": on_inference(applicable(shared, fields), roles, _is_role)}]
    if "classes" in options and "labels" in roles:  # names are strings: no tensor holds them
        names = {
            "if": {"required": ["parameters"], "properties": {"parameters": STRING_CLASSES}},
            "then": {"properties": {"inputs": {"items": {"not": _is_role(["labels"])}}}},
        }
        narrowed["allOf"] = [*narrowed.get("allOf", []), names]
    own = applicable([r for r in rules if r not in shared], fields)
    if own:
        narrowed["allOf"] = [*narrowed.get("allOf", []), *on_inference(own, roles, _is_role)]
    # InferenceRequest spelled out, not ``allOf[$ref, narrowed]``: with the pointer, schemathesis 4.32.5
    # folds the two only when a draw reaches them, and a negative case negating the rules there stops
    # with "result is not supported in canonical form" (tests/contract/test_generator_forms.py)
    request = components[schema.pop("$ref").rsplit("/", 1)[-1]]
    schema["allOf"] = [{k: deepcopy(v) for k, v in request.items() if k != "description"}, narrowed]
