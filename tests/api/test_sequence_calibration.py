"""/v1/calibration with B×T×K token sequences: top-1 calibration over the scored positions."""

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from tests.conftest import assert_problem

URL = "/v1/calibration"


def _batch(rng, b=4, t=30, k=9):
    z = 2.0 * rng.standard_normal((b, t, k))
    y = np.where(rng.random((b, t)) < 0.6, z.argmax(-1), rng.integers(0, k, (b, t)))
    y[0, :3] = -100
    mask = np.ones((b, t), np.int64)
    mask[1, -5:] = 0
    return z, y, mask


def _flat(z, y, mask):
    keep = (mask.astype(bool) & (y != -100)).ravel()
    return z.reshape(-1, z.shape[-1])[keep], y.ravel()[keep]


@pytest.mark.parametrize(
    "convention",
    [
        {},
        {"binning": "quantile", "n_bins": 10},  # HELM's equal-mass 10 bins
        {"n_bins": 10, "norm": "l2", "closed": "left"},
        {"preset": "netcal"},
        {"preset": "guo"},
    ],
)
def test_sequence_answer_equals_the_flattened_rows(client, rng, convention):
    z, y, mask = _batch(rng)
    seq = client.post(
        URL,
        json={
            "logits": z.tolist(),
            "labels": y.tolist(),
            "mask": mask.tolist(),
            "ignore_index": -100,
            **convention,
        },
    )
    assert seq.status_code == 200, seq.text
    zf, yf = _flat(z, y, mask)
    flat = client.post(URL, json={"logits": zf.tolist(), "labels": yf.tolist(), **convention}).json()
    got = seq.json()
    assert got["n"] == len(yf) and got["n_ignored"] == y.size - len(yf) and got["n_classes"] == 9
    assert got["convention"]["form"] == "sequence" and got["convention"]["target"] == "top_label"
    for name, value in flat["metrics"].items():
        if name.startswith("brier") or name == "ace_nixon":
            assert got["metrics"].get(name) is None
        elif value is not None:
            assert got["metrics"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    if flat.get("reliability"):
        assert got["reliability"][0]["count"] == flat["reliability"][0]["count"]


def test_sequence_ece_matches_torchmetrics(client, rng):
    z, y, mask = _batch(rng)
    zf, yf = _flat(z, y, mask)
    body = client.post(
        URL,
        json={
            "logits": z.tolist(),
            "labels": y.tolist(),
            "mask": mask.tolist(),
            "ignore_index": -100,
            "preset": "torchmetrics",
            "metrics": ["ece", "mce", "nll", "accuracy"],
            "top_k": [1, 3],
        },
    ).json()
    probs = torch.softmax(torch.from_numpy(zf), -1)
    target = torch.from_numpy(yf)
    for norm, name in (("l1", "ece"), ("max", "mce")):
        ref = multiclass_calibration_error(probs, target, num_classes=9, n_bins=15, norm=norm)
        assert body["metrics"][name] == pytest.approx(float(ref), abs=1e-6)
    nll = torch.nn.functional.cross_entropy(torch.from_numpy(zf), target)
    assert body["metrics"]["nll"] == pytest.approx(float(nll), rel=1e-12)
    assert body["metrics"]["accuracy"] == pytest.approx(float((probs.argmax(-1) == target).double().mean()))
    top3 = (torch.topk(probs, 3).indices == target[:, None]).any(-1).double().mean()
    assert body["top_k_accuracy"]["3"] == pytest.approx(float(top3))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"metrics": ["ece", "ace_nixon"]}, "metrics"),
        ({"target": "positive_class"}, "target"),
        ({"bootstrap": {"n": 10}}, "bootstrap"),
        ({"sample_weight": [1.0] * 4}, "sample_weight"),
    ],
)
def test_sequence_options_without_a_sequence_form_are_422(client, rng, extra, field):
    z, y, _ = _batch(rng)
    response = client.post(
        URL, json={"logits": z.tolist(), "labels": y.tolist(), "ignore_index": -100, **extra}
    )
    assert_problem(response, 422, f"#/{field}")


def test_mask_on_rows_is_422(client):
    response = client.post(URL, json={"logits": [[0.0, 1.0]], "labels": [1], "mask": [[1]]})
    assert_problem(response, 422, "#/mask")


def test_reliability_diagram_of_the_top1_token(client, rng):
    z, y, mask = _batch(rng)
    body = {"logits": z.tolist(), "labels": y.tolist(), "mask": mask.tolist(), "ignore_index": -100}
    ece = client.post(URL, json={**body, "metrics": ["ece"]}).json()["metrics"]["ece"]
    zf, yf = _flat(z, y, mask)
    flat_ece = client.post(
        URL, json={"logits": zf.tolist(), "labels": yf.tolist(), "metrics": ["ece"]}
    ).json()
    assert ece == pytest.approx(flat_ece["metrics"]["ece"], rel=1e-12)
    response = client.post("/v1/reliability-diagram", json=body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
    assert f"ece {ece:.4f}" in response.text and f"N = {len(yf)}" in response.text
