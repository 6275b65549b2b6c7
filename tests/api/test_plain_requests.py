"""Plain requests (a route's arrays and nothing else): the plain answer is the general path's, byte for byte.

``service.api.deps.Plain``: the direct layer answers a small plain request from the route's
answer to one plain request made at start, with the numbers computed by the same core calls.
Here every route's plain answer is compared with its general path's on random bodies, and
bodies that are not plain after all must be left to the general path (None).
"""

import json

import numpy as np
import pytest
from fastapi.routing import APIRoute

from service.api.deps import DirectRoute
from service.api.formats.arrays import ArrayReader
from service.api.formats.inputs import Body
from service.api.routes import routers

MAX_ELEMENTS = 10**7


def _plain_routes() -> dict[str, DirectRoute]:
    found = {}
    for router in routers():
        for route in router.routes:
            spec = getattr(getattr(route, "endpoint", None), "direct_scoring", None)
            if isinstance(route, APIRoute) and isinstance(spec, DirectRoute) and spec.plain is not None:
                found[route.path] = spec
    return found


ROUTES = _plain_routes()


def _general(spec: DirectRoute, fields: dict) -> bytes:
    """The general path's answer to `fields`: parsed as the JSON a client would send."""
    text = json.dumps(fields).encode()
    return bytes(spec.score(Body(json.loads(text), ArrayReader(MAX_ELEMENTS, False))).body)


def _body(path: str, rng: np.random.Generator, n: int, k: int, scale: float) -> dict:
    logits = rng.standard_normal((n, k)) * scale
    if path == "/v1/cross-entropy":
        return {"logits": logits.tolist(), "labels": rng.integers(0, k, n).tolist()}
    if path == "/v1/divergence":
        return {"p_logits": logits.tolist(), "q_logits": (rng.standard_normal((n, k)) * scale).tolist()}
    if path == "/v1/apply":
        return {"logits": logits.tolist(), "temperature": float(rng.uniform(0.05, 20.0))}
    raise AssertionError(f"no plain body for {path}")


def test_the_scoring_routes_answer_plain_requests():
    assert set(ROUTES) == {"/v1/cross-entropy", "/v1/divergence", "/v1/apply"}


@pytest.mark.parametrize("path", sorted(ROUTES))
@pytest.mark.parametrize(("n", "k", "scale"), [(1, 2, 1.0), (32, 10, 1.0), (7, 3, 300.0), (50, 5, 1e-8)])
def test_a_plain_answer_is_the_general_answer_byte_for_byte(path, n, k, scale):
    rng = np.random.default_rng(n * 1000 + k)
    spec = ROUTES[path]
    for _ in range(5):
        fields = _body(path, rng, n, k, scale)
        assert fields.keys() == spec.plain.fields
        plain = spec.plain.answer(json.loads(json.dumps(fields)), MAX_ELEMENTS)
        assert plain is not None, "a plain body must be answered plainly"
        assert plain[0] == _general(spec, fields)
        assert plain[1] == n


NOT_PLAIN = {
    "integer logits": lambda b: {**b, "logits": [[1, 2], [3, 4]], "labels": [0, 1]},
    "one row of logits": lambda b: {**b, "logits": [0.5, 1.5], "labels": [0, 1]},
    "ragged rows": lambda b: {**b, "logits": [[0.5, 1.5], [0.5]], "labels": [0, 1]},
    "strings": lambda b: {**b, "logits": [["0.5", "1.5"]], "labels": [0]},
    "a null": lambda b: {**b, "logits": [[0.5, None]], "labels": [0]},
    "a label out of range": lambda b: {**b, "logits": [[0.5, 1.5]], "labels": [2]},
    "fewer labels": lambda b: {**b, "logits": [[0.5, 1.5], [1.0, 2.0]], "labels": [1]},
    "a tensor object": lambda b: {**b, "labels": {"shape": [1], "datatype": "INT64", "data": [0]}},
    "one class": lambda b: {**b, "logits": [[0.5], [1.5]], "labels": [0, 0]},
}


@pytest.mark.parametrize("case", sorted(NOT_PLAIN))
def test_a_request_that_is_not_plain_after_all_goes_to_the_general_path(case):
    spec = ROUTES["/v1/cross-entropy"]
    fields = NOT_PLAIN[case]({"logits": [[0.5, 1.5]], "labels": [0]})
    assert spec.plain.answer(fields, MAX_ELEMENTS) is None


NOT_PLAIN_ELSEWHERE = {
    "/v1/divergence": [
        {"p_logits": [[0.5, 1.5]], "q_logits": [[0.5, 1.5], [1.0, 2.0]]},  # broadcast: general path
        {"p_logits": [[0.5, 1.5]], "q_logits": [[1, 2]]},
        {"p_logits": [[0.5, 1.5, 2.5]], "q_logits": [[0.5, 1.5]]},
    ],
    "/v1/apply": [
        {"logits": [[0.5, 1.5]], "temperature": 0},
        {"logits": [[0.5, 1.5]], "temperature": -1.0},
        {"logits": [[0.5, 1.5]], "temperature": "Infinity"},
        {"logits": [[0.5, 1.5]], "temperature": True},
        {"logits": [0.5, 1.5], "temperature": 1.0},
    ],
}


@pytest.mark.parametrize("path", sorted(NOT_PLAIN_ELSEWHERE))
def test_other_routes_leave_what_is_not_plain_to_the_general_path(path):
    for fields in NOT_PLAIN_ELSEWHERE[path]:
        assert ROUTES[path].plain.answer(fields, MAX_ELEMENTS) is None, fields


def test_a_plain_request_over_the_element_limit_goes_to_the_general_path():
    spec = ROUTES["/v1/cross-entropy"]
    fields = {"logits": [[0.5, 1.5], [1.0, 2.0]], "labels": [1, 0]}
    assert spec.plain.answer(fields, 6) is not None
    assert spec.plain.answer(fields, 5) is None
