"""The calibration answer written from plain documents is byte for byte what its result model writes.

``POST /v1/calibration`` prints its N×K and binary answers from dicts
(:mod:`service.api.routes.calibration_document`) instead of building ``CalibrationResult``.
Identity: reading an answer into the model and printing the model gives the same bytes — field
order, JSON types (an integer field never printed as 2.0, a float never as 2), non-finite values
and the fields left out (``weight_sum`` without sample_weight) all included.
"""

import numpy as np
import pytest

from service.api.schemas.calibration import CalibrationResult

rng = np.random.default_rng(7)
LOGITS = (2 * rng.standard_normal((40, 4))).tolist()
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
LABELS = rng.integers(0, 4, 40).tolist()
BINARY = {"probs": [0.2, 0.4, 0.6, 0.8, 1.0, 0.1, 0.3], "labels": [0, 1, 0, 1, 0, 0, 1]}

BODIES = {
    "defaults": {"probs": PROBS.tolist(), "labels": LABELS},
    "logits, sklearn preset": {"logits": LOGITS, "labels": LABELS, "preset": "sklearn"},
    "torchmetrics preset in float32": {"logits": LOGITS, "labels": LABELS, "preset": "torchmetrics"},
    "binary, half Brier": {**BINARY, "n_bins": 5, "closed": "left", "min_bin_count": 2},
    "classwise (per_class)": {"probs": PROBS.tolist(), "labels": LABELS, "target": "classwise"},
    "marginal l2": {"probs": PROBS.tolist(), "labels": LABELS, "target": "marginal", "norm": "l2"},
    "sample_weight (weight_sum)": {
        "probs": PROBS.tolist(),
        "labels": LABELS,
        "sample_weight": rng.uniform(0.5, 2, 40).tolist(),
    },
    "top_k, base 2, a subset of metrics": {
        "logits": LOGITS,
        "labels": LABELS,
        "top_k": [1, 2],
        "base": 2,
        "metrics": ["ece", "nll", "reliability"],
    },
    "quantile bins": {"logits": LOGITS, "labels": LABELS, "binning": "quantile", "n_bins": 6},
    "edges": {"logits": LOGITS, "labels": LABELS, "edges": [0.0, 0.25, 0.5, 1.0]},
    "ignore_index": {"logits": LOGITS, "labels": [-100, *LABELS[1:]], "ignore_index": -100},
    "class names": {"logits": LOGITS, "labels": ["abcd"[i] for i in LABELS], "classes": list("abcd")},
    "bootstrap": {"logits": LOGITS, "labels": LABELS, "bootstrap": {"n": 20, "seed": 3}},
    "two rows (undefined tests)": {"probs": [[0.5, 0.5], [0.5, 0.5]], "labels": [0, 1]},
}


@pytest.mark.parametrize("name", list(BODIES))
def test_the_answer_is_what_the_result_model_prints(client, name):
    response = client.post("/v1/calibration", json=BODIES[name])
    assert response.status_code == 200, response.text
    model = CalibrationResult.model_validate_json(response.content)
    assert model.model_dump_json().encode() == response.content


@pytest.mark.parametrize(("bootstrap", "threaded"), [({}, True), ({"n": 5}, True), (None, False)])
def test_a_small_body_asking_a_bootstrap_still_goes_to_a_thread(bootstrap, threaded):
    from service.api.formats.arrays import ArrayReader
    from service.api.formats.inputs import Body
    from service.api.routes.calibration import asks_bootstrap

    fields = {"probs": [[0.5, 0.5]], "labels": [0], "bootstrap": bootstrap}
    assert asks_bootstrap(Body(fields, ArrayReader(100, False))) is threaded
    assert asks_bootstrap(Body({"probs": [[0.5, 0.5]], "labels": [0]}, ArrayReader(100, False))) is False
