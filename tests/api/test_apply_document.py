"""``POST /v1/apply`` with the truth: the answer printed from plain documents is what ApplyResult prints.

Identity: reading the answer into the result model and printing the model gives the same bytes
(field order, JSON types, the per-sample `probs` included), for each kind of input and truth.
"""

import numpy as np
import pytest

from service.api.schemas.recalibration import ApplyResult

rng = np.random.default_rng(11)
LOGITS = (2 * rng.standard_normal((30, 3))).tolist()
LABELS = rng.integers(0, 3, 30).tolist()
PROBS = (np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)).tolist()
TARGETS = rng.dirichlet(np.ones(3), 30).tolist()

BODIES = {
    "logits and labels": {"logits": LOGITS, "labels": LABELS, "temperature": 1.7},
    "probs and soft targets, base 2": {"probs": PROBS, "targets": TARGETS, "temperature": 0.8, "base": 2},
    "binary logits": {"logits": rng.standard_normal(20).tolist(), "labels": [0, 1] * 10, "temperature": 2},
    "sample_weight": {
        "logits": LOGITS,
        "labels": LABELS,
        "temperature": 1.2,
        "sample_weight": rng.uniform(0.1, 3, 30).tolist(),
    },
    "class names": {
        "logits": LOGITS,
        "labels": ["xyz"[i] for i in LABELS],
        "classes": list("xyz"),
        "parameters": {"method": "temperature", "temperature": 1.5},
    },
    "float32 logits (a tensor object)": {
        "logits": {"shape": [30, 3], "datatype": "FP32", "data": np.ravel(LOGITS).tolist()},
        "labels": LABELS,
        "temperature": 1.1,
    },
}


@pytest.mark.parametrize("name", list(BODIES))
def test_the_scored_apply_is_what_the_result_model_prints(client, name):
    response = client.post("/v1/apply", json=BODIES[name])
    assert response.status_code == 200, response.text
    assert response.json()["metrics"] is not None
    model = ApplyResult.model_validate_json(response.content)
    assert model.model_dump_json().encode() == response.content


def test_a_fitted_map_applied_is_scored_as_the_fit_scored_it(client):
    fit = client.post("/v1/recalibrate", json={"logits": LOGITS, "labels": LABELS, "method": "vector"})
    assert fit.status_code == 200, fit.text
    applied = client.post(
        "/v1/apply", json={"logits": LOGITS, "labels": LABELS, "parameters": fit.json()["parameters"]}
    )
    assert applied.status_code == 200, applied.text
    assert ApplyResult.model_validate_json(applied.content).model_dump_json().encode() == applied.content
    assert applied.json()["metrics"] == fit.json()["after"]  # the fit's own "after", on the fitting batch
