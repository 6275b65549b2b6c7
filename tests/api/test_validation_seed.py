"""A recalibration's out-of-sample check takes numpy.random.default_rng's seeds: non-negative.

A negative `validation.seed` was schema-valid and a 500 (default_rng raised ValueError); the
contract test met it on POST /v1/recalibrate. Now it is refused, as `bootstrap.seed` is.
"""

import pytest

from tests.conftest import assert_problem

L = [[1.0, 0.0], [0.0, 2.0], [0.5, 0.1], [0.2, 0.9]]


@pytest.mark.parametrize("path", ["/v1/recalibrate", "/v1/temperature"])
@pytest.mark.parametrize("validation", [{"folds": 2, "seed": -1}, {"holdout": 0.5, "seed": -5}])
def test_a_negative_seed_is_refused_naming_it(client, path, validation):
    body = {"logits": L, "labels": [0, 1, 0, 1], "validation": validation}
    response = client.post(path, json={**body, "method": "temperature"} if "recalibrate" in path else body)
    assert_problem(response, 422)
    assert "`validation.seed` must be greater than or equal to 0" in response.json()["detail"]


def test_the_same_folds_with_a_seed_are_answered_and_the_seed_decides_them(client):
    answers = [
        client.post("/v1/temperature", json={"logits": L, "labels": [0, 1, 0, 1], "validation": v})
        for v in ({"folds": 2, "seed": 3}, {"folds": 2, "seed": 3})
    ]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    assert answers[0].json()["validation"] == answers[1].json()["validation"]  # same seed, same folds
    assert answers[0].json()["validation"]["seed"] == 3
