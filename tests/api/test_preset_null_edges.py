"""`edges: null` is the document's default: with a calibration `preset` it is not "sent", so not refused.

A preset fixes the edges; an explicit null was refused ("`edges` is fixed by preset"), on the JSON
body and in an inference request's parameters, although the document gives null as the default
(met by CI's contract draws). The answer equals the preset's alone.
"""

import pytest

L = [[1.0, 0.0], [0.0, 2.0], [0.3, 0.1], [2.0, 0.5]]
LABELS = [0, 1, 1, 0]


@pytest.mark.parametrize("preset", ["netcal", "sklearn"])
def test_null_edges_with_a_preset_answer_as_the_preset_alone(client, preset):
    alone = client.post("/v1/calibration", json={"logits": L, "labels": LABELS, "preset": preset})
    with_null = client.post(
        "/v1/calibration", json={"logits": L, "labels": LABELS, "preset": preset, "edges": None}
    )
    assert alone.status_code == with_null.status_code == 200, with_null.text
    assert with_null.json()["metrics"] == alone.json()["metrics"]
    inputs = [
        {"name": "logits", "shape": [4, 2], "datatype": "FP64", "data": [v for row in L for v in row]},
        {"name": "labels", "shape": [4], "datatype": "INT64", "data": LABELS},
    ]
    parameters = {"preset": preset, "edges": None}
    oip = client.post("/v2/models/calibration/infer", json={"inputs": inputs, "parameters": parameters})
    assert oip.status_code == 200, oip.text
    outputs = {o["name"]: o["data"] for o in oip.json()["outputs"]}
    assert outputs["metrics.ece"] == [alone.json()["metrics"]["ece"]]


def test_edges_sent_with_a_preset_are_still_refused(client):
    body = {"logits": L, "labels": LABELS, "preset": "netcal", "edges": [0.0, 0.5, 1.0]}
    response = client.post("/v1/calibration", json=body)
    assert response.status_code == 422
    assert "is fixed by preset 'netcal'" in response.json()["detail"]
