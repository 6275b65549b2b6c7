"""Issue 21: every form schemathesis builds a generator from, built here on demand, not by a draw.

schemathesis 4.32.5 canonicalises a body's schema with jsonschema_rs 0.60.3 and leaves an ``allOf``
standing where a branch is a pointer; it intersects such an ``allOf`` (following the pointers, each
``oneOf`` branch with the rest) when it builds the generator. Where jsonschema_rs cannot spell the
intersection (``UnsupportedResult``), the contract test stops with "Failed to generate test cases for
this API operation: result is not supported in canonical form" - but in CI only for the draws that
reach that form: a negative case builds its generator from a *mutated* schema (a keyword of one
node moved under ``not``), chosen by the draw. So the contract test passed alone and failed in the
full suite's draw on POST /v2/models/recalibrate/infer (negating its rules across fields).

This test builds, with schemathesis' own builder, the positive form of every operation's JSON body
and the negative forms it was seen to fail on: the ``allOf`` or ``contains`` of each mutation target
at most :data:`DEPTH` steps from the body, moved under ``not`` alone, as ``negate_constraints``
does. A failure names the operation, the target's walk and the keyword. Not covered (too many to
build in a test): deeper targets, the other keywords (``anyOf``, ``oneOf``, ``not``, ...), several
keywords or targets negated at once, type changes and removed ``required`` names (schemathesis'
other mutations).
"""

import sys
from copy import deepcopy
from pathlib import Path

import pytest
import schemathesis
from schemathesis.core.errors import InvalidSchema
from schemathesis.core.jsonschema import BUNDLE_STORAGE_KEY
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.jsonschema.builder import build
from schemathesis.generation.jsonschema.context import Alphabet
from schemathesis.generation.jsonschema.strategy import DECLINED
from schemathesis.specs.openapi.negative.mutations import (
    DEPENDENCIES,
    _materialize_one,
    compute_mutation_targets,
    is_negatable_keyword,
)

ROOT = Path(__file__).resolve().parents[2]
#: Steps from the body (a property, an item, a pointer followed, a branch) a negated target may be:
#: 3 reaches the rules across fields that stopped CI (~3 min); 4 adds the role counts (~4.3 min).
DEPTH = 3
#: Keywords whose negation leaves an ``allOf`` over pointers for the builder to intersect: the rules
#: across fields and a role's count (negating a single ``anyOf`` rule builds; all of them, 560
#: builds, take too long for a test).
STRUCTURAL = ("allOf", "contains")
#: Components negated wherever they sit (beyond DEPTH too), with these keywords: an inference
#: input (4 steps into a /v2 request, 5 into a /v1 one) once held the narrow floats' ranges per
#: `datatype` as an ``allOf`` that, negated, stopped the generator on cross-entropy's inference
#: requests and a monitor's observations (restated as one whole object per datatype:
#: service.api.openapi.values.state_inference_input).
DEEP = {"InferenceInput": ("allOf", "anyOf", "oneOf")}
#: What the document's JSON Schema dialect canonicalises as (OpenAPI 3.1: draft 2020-12).
DRAFT = 20

SCHEMA = schemathesis.openapi.from_path(ROOT / "openapi" / "openapi.json")
BODIES = {
    operation.label: body.optimized_schema
    for result in SCHEMA.get_all_operations()
    for operation in [result.ok()]
    for body in operation.body
    if body.media_type == "application/json"
}


def _cannot_build(schema: object, positive: bool = False) -> str | None:
    """schemathesis' reason it cannot build a generator from `schema`, but a branch it routes around.

    A declined negative form ("does not support this part") costs one case, not the operation; a
    declined positive form would leave the operation without schema-valid requests, so no
    acceptance check would ever run on it: that is a failure.
    """
    try:
        build(schema, draft=DRAFT, formats={}, alphabet=Alphabet())
    except DECLINED as declined:
        return f"declined: {declined}" if positive else None
    except InvalidSchema as error:
        return str(error)
    return None


def _negated(body: dict, descriptor: object, keyword: str) -> dict:
    """`body` with `keyword` of the target `descriptor` names moved under ``not`` (as schemathesis does)."""
    mutated = deepcopy(body)
    target = _materialize_one(mutated, descriptor, mutated.get(BUNDLE_STORAGE_KEY, {}))
    assert target is not None
    node = target.schema
    barred = {keyword: node.pop(keyword)}
    barred.update({k: node[k] for k in DEPENDENCIES.get(keyword, ()) if k in node})
    node["not"] = {"allOf": [node.pop("not"), barred]} if "not" in node else barred
    return mutated


def _negations(body: dict) -> list[tuple[object, str]]:
    found = []
    for descriptor in compute_mutation_targets(body):
        target = _materialize_one(body, descriptor, body.get(BUNDLE_STORAGE_KEY, {}))  # (reads only)
        if target is None:
            continue
        deep = DEEP.get(target.schema.get("title"), ())
        if len(descriptor.walk) > DEPTH:
            found.extend((descriptor, keyword) for keyword in deep if keyword in target.schema)
            continue
        for keyword, value in target.schema.items():
            if keyword in deep:
                found.append((descriptor, keyword))
                continue
            if keyword in STRUCTURAL and is_negatable_keyword(
                keyword, value, location=ParameterLocation.BODY, allow_extra_parameters=False
            ):
                found.append((descriptor, keyword))
    return found


@pytest.mark.parametrize("label", sorted(BODIES))
def test_every_generator_form_of_a_body_builds(label):
    body = BODIES[label]
    failures = []
    reason = _cannot_build(body, positive=True)
    if reason is not None:
        failures.append(f"positive: {reason}")
    for descriptor, keyword in _negations(body):
        reason = _cannot_build(_negated(body, descriptor, keyword))
        if reason is not None:
            walk = "/".join(
                f"{s.keyword}" + ("" if s.selector is None else f"/{s.selector}") for s in descriptor.walk
            )
            failures.append(f"not {keyword} at /{walk}: {reason}")
    assert not failures, f"{label}: " + "; ".join(failures)


def test_a_declined_positive_form_fails_and_a_declined_negative_one_does_not(monkeypatch):
    """schemathesis declining a body's positive form leaves the operation without valid requests."""
    from schemathesis.generation.jsonschema.strategy import UnsupportedSchema

    def declines(*args, **kwargs):
        raise UnsupportedSchema.from_reason("this part of it")

    monkeypatch.setattr(sys.modules[__name__], "build", declines)
    assert _cannot_build({}, positive=True).startswith("declined: ")
    assert _cannot_build({}) is None
