"""What the OpenAPI document states beyond FastAPI's: rules, examples, security and the binary header.

- The "exactly one of" rules the service enforces (`logits` | `probs`, `labels` | `targets`,
  `parameters` | `temperature`, ...) as ``oneOf`` of ``required`` in the request-body schemas (a
  field sent as null counts as not sent, as the service reads it).
- A request example for every scoring endpoint (:mod:`service.api.openapi.examples`).
- The API-key schemes (HTTP Bearer, ``X-API-Key``) on every /v1 and /v2 operation but /v2's
  health probes, so Swagger UI's Authorize sends the key.
- The ``Inference-Header-Content-Length`` header of binary-extension bodies as a parameter.
"""

from typing import Any

from .across import BODY_ONLY, DIAGRAM_RULES, RULES, applicable, on_body
from .examples import V1
from .inference import MARK, STRING_CLASSES, narrow
from .logprobs import state_documents
from .sequences import state_sequence_forms
from .values import state_values

DIAGRAM = "/v1/reliability-diagram"
#: Per request-body schema: groups of fields of which exactly one must be sent (not null).
EXACTLY_ONE: dict[str, list[tuple[str, ...]]] = {
    "CrossEntropyBody": [("logits", "probs"), ("labels", "targets")],
    "DivergenceBody": [("p_probs", "p_logits"), ("q_probs", "q_logits")],
    "CalibrationBody": [("logits", "probs"), ("labels", "targets")],
    # (a temperature takes no raw `scores`: they apply to the isotonic, Platt and sigmoid maps)
    "TemperatureBody": [("logits", "probs"), ("labels", "targets")],
    "RecalibrateBody": [("logits", "probs", "scores"), ("labels", "targets")],
    "ApplyBody": [("logits", "probs", "scores"), ("parameters", "temperature")],
    "ObservationsBody": [("logits", "probs")],
    "LogprobsBody": [("responses", "response")],
}
#: Per request-body schema: groups of fields of which at most one may be sent.
AT_MOST_ONE: dict[str, list[tuple[str, ...]]] = {
    # apply takes `ignore_index` with B×T×K sequences only, and sequences take no `classes`
    "ApplyBody": [("labels", "targets"), ("classes", "ignore_index")],
    "LogprobsBody": [("texts", "bytes"), ("texts", "words"), ("ranges", "context_length")],
}

SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from XENT_API_KEYS as `Authorization: Bearer <key>` (when keys are set).",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same key as an `X-API-Key` header.",
    },
}
UNAUTHORIZED = {
    "description": "API keys are configured and none valid was sent (`WWW-Authenticate: Bearer`).",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
}
HEADER_LENGTH_PARAMETER = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "description": "Binary tensor extension: the length in bytes of the JSON header at the start of the "
    "body; the raw tensors follow it. Required with `application/octet-stream` bodies; ignored with "
    "`application/json` ones (on /v2 a body with the header and no Content-Type, as tritonclient sends "
    "it, is the binary extension).",
    "schema": {"type": "integer", "minimum": 0},
}


def _sent(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def _rules(name: str) -> list[dict[str, Any]]:
    """The exactly-one-of and at-most-one-of rules of the request-body schema `name`."""
    rules: list[dict[str, Any]] = [{"oneOf": [_sent(f) for f in g]} for g in EXACTLY_ONE.get(name, [])]
    return rules + [{"not": {"allOf": [_sent(f) for f in g]}} for g in AT_MOST_ONE.get(name, [])]


_STRING_LABELS = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string"},
    "description": "With string `classes`: a length-N list of names from them.",
}


def _type_labels_as_classes(schema: dict[str, Any]) -> None:
    """`labels` are names from string `classes` (a list of strings), else integers or a tensor."""
    labels = schema["properties"]["labels"]["anyOf"][0]
    labels["anyOf"] = [*labels["anyOf"], _STRING_LABELS]
    labels["description"] = "Length-N list of integers, or a tensor object; with string `classes`, names."
    # "not strings" is "integers" where those are the forms (a tensor object has no `items`)
    rule = {
        "if": STRING_CLASSES,
        "then": {
            "properties": {
                "labels": {"anyOf": [{"type": "null"}, {"type": "array", "items": {"type": "string"}}]}
            }
        },
        "else": {"properties": {"labels": {"anyOf": [{"type": "null"}, {"items": {"type": "integer"}}]}}},
    }
    schema["allOf"] = [*schema.get("allOf", []), rule]


def add_rules(schemas: dict[str, Any]) -> None:
    """State the exactly-one-of and at-most-one-of rules in the request-body schemas."""
    for name in EXACTLY_ONE.keys() | AT_MOST_ONE.keys():
        schemas[name]["allOf"] = _rules(name)
    state_documents(schemas, ("LogprobsBody", "SequencesBody"))
    state_sequence_forms(schemas, _rules("LogprobsBody"))
    for name, rules in RULES.items():  # options across fields (:mod:`.across`)
        schema = schemas[name]
        stated = on_body(applicable(rules + BODY_ONLY.get(name, []), set(schema.get("properties", {}))))
        schema["allOf"] = [*schema.get("allOf", []), *stated]
    for name, schema in schemas.items():
        properties = schema.get("properties", {}).keys()
        if {"pos_label", "classes"} <= properties:  # `pos_label` picks one of `classes`: it needs them
            needs = {"anyOf": [{"properties": {"pos_label": {"type": "null"}}}, _sent("classes")]}
            schema["allOf"] = [*schema.get("allOf", []), needs]
        if {"classes", "labels"} <= properties:
            _type_labels_as_classes(schema)
        excluded = ("classes", "ignore_index") in AT_MOST_ONE.get(name, [])
        if {"classes", "ignore_index"} <= properties and not excluded:  # an int never equals a string label
            # `classes` are all integers or all strings: "not strings" is "integers", which a generator
            # takes more cheaply than a `not` over the items.
            integers = {"anyOf": [{"type": "null"}, {"items": {"type": "integer"}}]}
            schema["allOf"] = [
                *schema.get("allOf", []),
                {"if": _sent("ignore_index"), "then": {"properties": {"classes": integers}}},
            ]


def narrow_inference_requests(schema: dict[str, Any]) -> None:
    """State each endpoint's roles and options in its inference-request schema (:mod:`.inference`)."""
    components = schema.get("components", {}).get("schemas", {})
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            json_body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            body = json_body.get("schema", {})
            for candidate in [body, *body.get("oneOf", [])]:
                if MARK in candidate:
                    name = candidate[MARK]["body"]
                    groups, at_most = EXACTLY_ONE.get(name, []), AT_MOST_ONE.get(name, [])
                    rules = RULES.get(name, []) + (DIAGRAM_RULES if path == DIAGRAM else [])
                    narrow(candidate, components, groups, at_most, oip=path.startswith("/v2/"), rules=rules)
                elif path == DIAGRAM and "$ref" in candidate:  # the diagram's own rules on its JSON body
                    candidate["allOf"] = [{"$ref": candidate.pop("$ref")}, *on_body(DIAGRAM_RULES)]


def complete(schema: dict[str, Any]) -> None:
    """Add rules, examples, security and the binary header to the FastAPI-built `schema`, in place."""
    components = schema.setdefault("components", {})
    add_rules(components.get("schemas", {}))
    state_values(components.get("schemas", {}))
    narrow_inference_requests(schema)
    components["securitySchemes"] = SECURITY_SCHEMES
    security: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
    for path, item in schema.get("paths", {}).items():
        guarded = path.startswith("/v1/") or (path.startswith("/v2") and not path.startswith("/v2/health/"))
        for method, operation in item.items():
            if guarded:
                operation["security"] = security
                operation["responses"].setdefault("401", UNAUTHORIZED)
            body = operation.get("requestBody", {}).get("content", {})
            endpoint = path.removeprefix("/v1/")
            if endpoint in V1 and "application/json" in body and "example" not in body["application/json"]:
                body["application/json"]["example"] = V1[endpoint]
            if method != "post" or "application/octet-stream" not in body:
                continue
            operation.setdefault("parameters", []).append(HEADER_LENGTH_PARAMETER)
