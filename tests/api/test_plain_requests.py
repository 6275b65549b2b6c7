"""Plain requests (a route's arrays and nothing else): the plain answer is the general path's, byte for byte.

``service.api.deps.Plain``: the direct layer answers a small plain request from the route's
answer to one plain request made at start, with the numbers computed by the same core calls.
Here every route's plain answer is compared with its general path's on random bodies, and
bodies that are not plain after all must be left to the general path (None).
"""

import json
import warnings

import numpy as np
import orjson
import pytest
from fastapi.routing import APIRoute

from service.api.deps import DirectRoute
from service.api.formats.arrays import ArrayReader
from service.api.formats.inputs import Body
from service.api.formats.plain import numbers_only
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
    if path == "/v1/calibration":
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return {
            "probs": (probs / probs.sum(axis=1, keepdims=True)).tolist(),
            "labels": rng.integers(0, k, n).tolist(),
        }
    raise AssertionError(f"no plain body for {path}")


def test_the_scoring_routes_answer_plain_requests():
    assert set(ROUTES) == {"/v1/cross-entropy", "/v1/divergence", "/v1/apply", "/v1/calibration"}


@pytest.mark.parametrize("path", sorted(ROUTES))
@pytest.mark.parametrize(("n", "k", "scale"), [(1, 2, 1.0), (32, 10, 1.0), (7, 3, 300.0), (50, 5, 1e-8)])
def test_a_plain_answer_is_the_general_answer_byte_for_byte(path, n, k, scale):
    rng = np.random.default_rng(n * 1000 + k)
    spec = ROUTES[path]
    for _ in range(5):
        fields = _body(path, rng, n, k, scale)
        assert fields.keys() == spec.plain.fields
        plain = _plain(spec, fields)
        assert plain is not None, "a plain body must be answered plainly"
        assert plain[0] == _general(spec, fields)
        assert plain[1] == n


@pytest.mark.parametrize("path", sorted(ROUTES))
def test_integers_among_float_logits_are_read_as_the_general_path_reads_them(path):
    rng = np.random.default_rng(7)
    spec = ROUTES[path]
    fields = _body(path, rng, 6, 4, 3.0)
    for name in ("logits", "p_logits", "q_logits"):
        if name in fields:  # whole numbers sent as JSON integers, after the first element
            fields[name] = [[row[0]] + [round(x) for x in row[1:]] for row in fields[name]]
    plain = _plain(spec, fields)
    assert plain is not None and plain[0] == _general(spec, fields)


@pytest.mark.parametrize(
    ("logits", "temperature"),
    [([[0.5, 1.5e10]], 1e-300), ([[3e38, -3e38, 0.0]], 0.5), ([[1.0, 2.0]], 1e-310)],
)
def test_plain_apply_at_extreme_temperatures_is_the_general_answer(logits, temperature):
    """z / T beyond the floats (it answered NaN): the limit, on either path, byte for byte."""
    spec = ROUTES["/v1/apply"]
    fields = {"logits": logits, "temperature": temperature}
    plain = _plain(spec, fields)
    assert plain is not None and plain[0] == _general(spec, fields)
    probs = orjson.loads(plain[0])["probs"]
    assert all(0.0 <= p <= 1.0 for row in probs for p in row) and probs[0][np.argmax(logits[0])] == 1.0


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
    "a number string after a float": lambda b: {**b, "logits": [[0.5, "1.5"]], "labels": [0]},
    "a null after a float": lambda b: {**b, "logits": [[0.5, 1.5], [None, 1.0]], "labels": [0, 1]},
    "a boolean": lambda b: {**b, "logits": [[0.5, True]], "labels": [0]},
    "a nested list": lambda b: {**b, "logits": [[0.5, [1.5]]], "labels": [0]},
    "an object as a row": lambda b: {**b, "logits": [[0.5, 1.5], {"0": 1.0, "1": 2.0}], "labels": [0, 1]},
    "a number as a row": lambda b: {**b, "logits": [[0.5, 1.5], 2.0], "labels": [0, 1]},
    # as many elements as 2×2 and more: counting them would not see it
    "a longer row after a short one": lambda b: {
        **b,
        "logits": [[0.5, 1.5], [0.5, 1.5, 2.5]],
        "labels": [0, 1],
    },
    "a non-finite logit": lambda b: {**b, "logits": [[0.5, 1e999]], "labels": [0]},
}


def _plain(spec: DirectRoute, fields: dict, max_elements: int = MAX_ELEMENTS) -> tuple[bytes, int] | None:
    """What the direct layer does with `fields` sent as JSON: the plain answer, or None (general path)."""
    text = json.dumps(fields).encode()
    if not numbers_only(text, json.loads(text)):
        return None
    return spec.plain.answer(json.loads(text), max_elements)


@pytest.mark.parametrize("case", sorted(NOT_PLAIN))
def test_a_request_that_is_not_plain_after_all_goes_to_the_general_path(case):
    spec = ROUTES["/v1/cross-entropy"]
    fields = NOT_PLAIN[case]({"logits": [[0.5, 1.5]], "labels": [0]})
    assert _plain(spec, fields) is None


NOT_PLAIN_ELSEWHERE = {
    "/v1/divergence": [
        {"p_logits": [[0.5, 1.5]], "q_logits": [[0.5, 1.5], [1.0, 2.0]]},  # broadcast: general path
        {"p_logits": [[0.5, 1.5]], "q_logits": [[1, 2]]},
        {"p_logits": [[0.5, 1.5, 2.5]], "q_logits": [[0.5, 1.5]]},
    ],
    "/v1/calibration": [
        {"probs": [[0.25, 0.5]], "labels": [0]},  # rows not summing to 1
        {"probs": [[-0.5, 1.5]], "labels": [0]},
        {"probs": [[0, 1], [1, 0]], "labels": [1, 0]},  # integers
        {"probs": [[0.25, 0.75]], "labels": [0.0]},  # labels as floats
        {"probs": [[0.25, 0.75]], "labels": [2]},
        {"probs": [[0.25, 0.75], [0.5, 0.5]], "labels": [1]},
        {"probs": [0.25, 0.75], "labels": [1, 0]},
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
        with warnings.catch_warnings():  # NumPy's overflow warnings, as on the general path
            warnings.simplefilter("ignore", RuntimeWarning)
            assert _plain(ROUTES[path], fields) is None, fields


def test_a_plain_request_over_the_element_limit_goes_to_the_general_path():
    spec = ROUTES["/v1/cross-entropy"]
    fields = {"logits": [[0.5, 1.5], [1.0, 2.0]], "labels": [1, 0]}
    assert spec.plain.answer(fields, 6) is not None
    assert spec.plain.answer(fields, 5) is None
