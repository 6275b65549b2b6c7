"""Issue 21, rough edges: one wording for every 422 ("`field` rule; got value"), one pointer per field,
and a trailing slash answered with problem+json, not a bare 307."""

import re

import numpy as np
import pytest

from tests.conftest import assert_problem

L = [[1.0, 0.0]]

CASES = {
    "validator message": (
        "/v1/calibration",
        {"logits": L, "labels": [0], "n_bins": 0},
        "#/n_bins",
        '`n_bins` must be an integer in [1, 10000] or "sqrt" / "cube_root"; got 0',
    ),
    "union of a bound and a literal": (
        "/v1/cross-entropy",
        {"logits": L, "labels": [0], "eps": 2},
        "#/eps",
        "`eps` must be less than 1 or 'auto'; got 2",
    ),
    "unknown field": ("/v1/cross-entropy", {"logits": L, "labels": [0], "foo": 2}, "#/foo", None),
    "discriminator": (
        "/v1/apply",
        {"logits": L, "parameters": {"method": "x"}},
        "#/parameters/method",
        "`parameters.method` must be one of 'temperature', 'vector', 'matrix', 'platt', 'beta', "
        "'isotonic', 'histogram', 'sigmoid'; got 'x'",
    ),
    "missing field of a union member": (
        "/v1/apply",
        {"logits": L, "parameters": {"method": "platt", "a": 1.0}},
        "#/parameters/b",
        "`parameters.b` is required",
    ),
    "list item": (
        "/v1/calibration",
        {"logits": L, "labels": [0], "metrics": ["ece", "x"]},
        "#/metrics/1",
        None,
    ),
    "neither of a pair": (
        "/v1/cross-entropy",
        {"labels": [0]},
        "#/logits",
        "`logits` or `probs` is required (exactly one of the two); got neither",
    ),
    "both of a pair": (
        "/v1/cross-entropy",
        {"logits": L, "probs": L, "labels": [0]},
        "#/probs",
        "`probs` must not be sent with `logits` (exactly one of the two); got both",
    ),
    "both of parameters and temperature": (
        "/v1/apply",
        {"logits": L, "temperature": 1.0, "parameters": {"method": "temperature", "temperature": 1.0}},
        "#/temperature",
        "`temperature` must not be sent with `parameters` (exactly one of the two); got both",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_422_reads_field_rule_got_value(client, case):
    path, body, pointer, detail = CASES[case]
    problem = assert_problem(client.post(path, json=body), 422, pointer=pointer)
    if detail is not None:
        assert problem["detail"] == detail
    assert len(problem["errors"]) == 1 and problem["errors"][0]["detail"] == problem["detail"]
    text = problem["detail"]
    assert not re.search(r"Value error|Input should|Extra inputs|Field required|constrained-|literal\[", text)
    field = re.match(r"`([^`]+)`", text).group(1)
    assert text.count(f"`{field}`") == 1, text  # the field is named once


def test_an_index_is_named_as_the_core_names_it(client):
    problem = assert_problem(
        client.post("/v1/calibration", json={"logits": L, "labels": [0], "metrics": ["x"]}), 422
    )
    assert problem["detail"].startswith("`metrics[0]` must be 'calibration_error', ")
    assert problem["detail"].endswith("; got 'x'")


def test_an_inference_request_option_points_into_its_parameters(client):
    body = {
        "inputs": [
            {"name": "logits", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 0.0]},
            {"name": "labels", "shape": [1], "datatype": "INT64", "data": [0]},
        ],
        "parameters": {"eps": 2},
    }
    for path in ("/v1/cross-entropy", "/v2/models/cross-entropy/infer"):
        problem = assert_problem(client.post(path, json=body), 422, pointer="#/parameters/eps")
        assert problem["detail"] == "`eps` must be less than 1 or 'auto'; got 2"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/cross-entropy/"), ("GET", "/docs/"), ("GET", "/v2/models/apply/"), ("GET", "/healthz/")],
)
def test_a_trailing_slash_is_a_problem_naming_the_route(client, method, path):
    response = client.request(method, path, json={} if method == "POST" else None, follow_redirects=False)
    problem = assert_problem(response, 404)
    assert problem["detail"] == f"no route {path}; the route is {path[:-1]}, without the trailing slash"
    assert "location" not in response.headers


def test_a_level_next_to_one_is_scored_not_a_500(client):
    """Found by schemathesis: level 0.9999999999999999 made 0.5 + level/2 round to 1 (inv_cdf raised)."""
    from statistics import NormalDist

    body = {"probs": [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], "labels": [0, 1, 1], "level": 0.9999999999999999}
    response = client.post("/v1/calibration", json=body)
    assert response.status_code == 200, response.text
    bins = response.json()["reliability"][0]
    z = -NormalDist().inv_cdf((1 - 0.9999999999999999) / 2)  # the upper quantile, from the lower tail
    for k, n, low, high in zip(
        np.round(np.array(bins["accuracy"], dtype=float) * bins["count"]), bins["count"],
        bins["wilson_low"], bins["wilson_high"], strict=True,
    ):  # fmt: skip
        if n == 0:
            continue
        p, d = k / n, 1 + z * z / n  # the Wilson score interval, closed form
        centre, half = (p + z * z / (2 * n)) / d, z / d * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        np.testing.assert_allclose([low, high], [centre - half, centre + half], rtol=1e-12)


def test_fp16_labels_are_read_without_an_overflow_warning(client):
    """Found by schemathesis: comparing float16 labels with 2**53 overflowed (a 500 under -W error)."""
    body = {"labels": {"data": [0.0, 1.0], "datatype": "FP16", "shape": [2]}, "probs": [0.2, 0.9]}
    as_ints = client.post("/v1/calibration", json={**body, "labels": [0, 1]}).json()
    response = client.post("/v1/calibration", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["metrics"] == as_ints["metrics"]
