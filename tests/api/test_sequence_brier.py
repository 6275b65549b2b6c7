"""/v1/calibration on B×T×K sequences: the K-way Brier score of the scored positions."""

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import brier_score_loss

from tests.api.test_payloads import binary_request
from tests.api.test_sequence_calibration import _batch, _flat

URL = "/v1/calibration"


@pytest.mark.parametrize(("scale", "half"), [("auto", False), ("sum", False), ("half", True)])
def test_sequence_brier_matches_sklearn_and_the_flattened_rows(client, rng, scale, half):
    z, y, mask = _batch(rng)
    options = {"metrics": ["brier", "ece"], "brier_scale": scale}
    seq = client.post(
        URL,
        json={
            "logits": z.tolist(),
            "labels": y.tolist(),
            "mask": mask.tolist(),
            "ignore_index": -100,
            **options,
        },
    ).json()
    zf, yf = _flat(z, y, mask)
    flat = client.post(URL, json={"logits": zf.tolist(), "labels": yf.tolist(), **options}).json()
    expected = brier_score_loss(yf, softmax(zf, -1), labels=list(range(9)), scale_by_half=half)
    assert seq["metrics"]["brier"] == pytest.approx(expected, rel=1e-12)
    assert seq["metrics"]["brier"] == pytest.approx(flat["metrics"]["brier"], rel=1e-12)
    assert seq["metrics"]["ece"] == pytest.approx(flat["metrics"]["ece"], rel=1e-12)
    assert seq["convention"]["brier_scale"] == flat["convention"]["brier_scale"]
    for name in ("brier_reliability", "brier_resolution", "brier_uncertainty"):  # binned class-wise
        assert seq["metrics"][name] == pytest.approx(flat["metrics"][name], rel=1e-9), name


def test_sequence_brier_of_probabilities_in_blocks(client, rng, monkeypatch):
    from service.core.language import blocks

    monkeypatch.setattr(blocks, "SEQUENCE_BLOCK_BYTES", 7 * 9 * 8)  # blocks straddle sequences
    z, y, mask = _batch(rng)
    p = softmax(z, -1)
    body = {"probs": p.tolist(), "labels": y.tolist(), "mask": mask.tolist(), "ignore_index": -100}
    seq = client.post(URL, json=body | {"metrics": ["brier"]}).json()
    pf, yf = _flat(p, y, mask)
    expected = brier_score_loss(yf, pf, labels=list(range(9)), scale_by_half=False)
    assert seq["metrics"]["brier"] == pytest.approx(expected, rel=1e-12)


def test_sequence_brier_of_bf16_logits_equals_float32_on_the_same_values(client, rng):
    z, y, _ = _batch(rng)
    bf16 = torch.from_numpy(z).to(torch.bfloat16)
    answers = []
    for values, datatype in (
        (bf16.view(torch.int16).numpy().view(np.uint16), "BF16"),
        (bf16.float().numpy(), "FP32"),
    ):
        blob, headers = binary_request(
            [("logits", values, datatype), ("labels", y, "INT64")],
            parameters={"ignore_index": -100, "metrics": ["brier"]},
        )
        answer = client.post(URL, content=blob, headers=headers)
        assert answer.status_code == 200, answer.text
        answers.append(answer.json()["metrics"]["brier"])
    assert answers[0] == answers[1]
    zf, yf = _flat(bf16.double().numpy(), y, np.ones_like(y))
    assert answers[0] == pytest.approx(brier_score_loss(yf, softmax(zf, -1), labels=list(range(9))), rel=1e-5)
