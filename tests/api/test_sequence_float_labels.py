"""B×T labels sent as floats holding integers (JSON 1.0, an FP32/FP16/BF16/FP64 tensor) read as the
integers they hold, as N-row labels are and as the document allows; a fraction is still refused."""

import math

import numpy as np
import pytest

from tests.conftest import assert_problem

PROBS = [[[0.7, 0.3], [0.2, 0.8]], [[0.6, 0.4], [0.5, 0.5]]]
LABELS = [[0, 1], [1, 0]]


def _expected_nll() -> float:
    """Mean -log p of the labelled class over the four positions, by hand."""
    picked = [PROBS[b][t][LABELS[b][t]] for b in range(2) for t in range(2)]
    return -sum(math.log(p) for p in picked) / len(picked)


def _float_labels(datatype: str | None) -> object:
    if datatype is None:
        return [[float(v) for v in row] for row in LABELS]
    return {"datatype": datatype, "shape": [2, 2], "data": [float(v) for row in LABELS for v in row]}


@pytest.mark.parametrize("datatype", [None, "FP64", "FP32", "FP16", "BF16"])
def test_float_labels_are_read_as_integers(client, datatype):
    response = client.post("/v1/cross-entropy", json={"probs": PROBS, "labels": _float_labels(datatype)})
    assert response.status_code == 200, response.text
    assert response.json()["loss"] == pytest.approx(_expected_nll(), rel=1e-12)
    calibration = client.post("/v1/calibration", json={"probs": PROBS, "labels": _float_labels(datatype)})
    assert calibration.status_code == 200, calibration.text
    as_ints = client.post("/v1/calibration", json={"probs": PROBS, "labels": LABELS})
    assert calibration.json()["metrics"] == as_ints.json()["metrics"]
    accuracy = np.mean([np.argmax(PROBS[b][t]) == LABELS[b][t] for b in range(2) for t in range(2)])
    assert calibration.json()["metrics"]["accuracy"] == pytest.approx(accuracy)


def test_fractional_float_labels_are_refused(client):
    response = client.post("/v1/cross-entropy", json={"probs": PROBS, "labels": [[0, 1], [0.5, 0]]})
    assert_problem(response, 422, match="must hold integers")
