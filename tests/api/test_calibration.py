import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import brier_score_loss, log_loss

from tests.conftest import assert_problem

GOLDEN = {"probs": [0.2, 0.4, 0.6, 0.8, 1.0, 0.1, 0.3], "labels": [0, 1, 0, 1, 0, 0, 1], "n_bins": 5}


@pytest.mark.parametrize(
    ("preset", "expected"),
    [("torchmetrics", 3.0 / 7), ("sklearn", 3.4 / 7), ("netcal", 1.4 / 7), ("guo", 3.4 / 7), (None, 3.4 / 7)],
)
def test_golden_case_under_every_preset(client, preset, expected):
    response = client.post("/v1/calibration", json={**GOLDEN, "preset": preset, "metrics": ["ece"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metrics"]["ece"] == pytest.approx(expected, abs=1e-12)
    assert body["convention"]["preset"] == preset
    assert body["convention"]["target"] == "positive_class"
    assert body["metrics"]["mce"] is None


def test_convention_is_echoed(client):
    response = client.post(
        "/v1/calibration",
        json={**GOLDEN, "closed": "left", "norm": "l2", "bin_weighting": "uniform", "min_bin_count": 2},
    )
    conv = response.json()["convention"]
    assert conv["closed"] == "left" and conv["norm"] == "l2" and conv["bin_weighting"] == "uniform"
    assert conv["binning"] == "uniform" and conv["edge_rule"] == "exact" and conv["n_bins"] == 5
    assert conv["min_bin_count"] == 2 and conv["n_excluded_bins"] == 3  # bins holding one pair
    assert conv["brier_scale"] == "half" and conv["form"] == "binary" and conv["input"] == "probs"
    assert "two-sided" in conv["p_values"]


def test_logits_and_probs_agree(client, rng):
    logits = 2 * rng.standard_normal((200, 4))
    labels = rng.integers(0, 4, size=200)
    probs = softmax(logits, axis=1)
    a = client.post("/v1/calibration", json={"logits": logits.tolist(), "labels": labels.tolist()}).json()
    b = client.post("/v1/calibration", json={"probs": probs.tolist(), "labels": labels.tolist()}).json()
    for name, value in a["metrics"].items():
        assert value == pytest.approx(b["metrics"][name], rel=1e-9, abs=1e-12), name
    assert a["metrics"]["nll"] == pytest.approx(log_loss(labels, probs), rel=1e-9)
    assert a["metrics"]["brier"] == pytest.approx(brier_score_loss(labels, probs, labels=range(4)), rel=1e-9)
    assert a["convention"]["target"] == "top_label" and a["convention"]["brier_scale"] == "sum"


def test_binary_logits_and_tensor_objects(client, rng):
    z = rng.standard_normal(100)
    y = rng.integers(0, 2, size=100)
    tensor = {"shape": [100], "datatype": "FP64", "data": z.tolist()}
    a = client.post("/v1/calibration", json={"logits": tensor, "labels": y.tolist()}).json()
    p = 1 / (1 + np.exp(-z))
    b = client.post("/v1/calibration", json={"probs": p.tolist(), "labels": y.tolist()}).json()
    assert a["metrics"]["ece"] == pytest.approx(b["metrics"]["ece"], abs=1e-12)
    assert a["metrics"]["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_nll_in_bits(client):
    body = client.post("/v1/calibration", json={**GOLDEN, "base": 2, "metrics": ["nll"]}).json()
    nats = client.post("/v1/calibration", json={**GOLDEN, "metrics": ["nll"]}).json()
    assert body["metrics"]["nll"] == pytest.approx(nats["metrics"]["nll"] / np.log(2), rel=1e-12)
    assert body["convention"]["unit"] == "bits"


def test_classwise_reliability_per_class(client, rng):
    probs = rng.dirichlet(np.ones(3), size=300)
    labels = rng.integers(0, 3, size=300)
    body = client.post(
        "/v1/calibration",
        json={"probs": probs.tolist(), "labels": labels.tolist(), "target": "classwise", "n_bins": 4},
    ).json()
    assert [r["group"] for r in body["reliability"]] == [0, 1, 2]
    assert len(body["per_class"]["ece"]) == 3
    assert body["metrics"]["ece"] == pytest.approx(np.mean(body["per_class"]["ece"]), abs=1e-12)
    assert sum(body["reliability"][0]["count"]) == 300


def test_explicit_edges_and_quantile_binning(client, rng):
    p = rng.uniform(size=400)
    y = (rng.uniform(size=400) < p).astype(int)
    edges = [0, 0.25, 0.5, 0.75, 1]
    data = {"probs": p.tolist(), "labels": y.tolist()}
    a = client.post("/v1/calibration", json={**data, "edges": edges}).json()
    b = client.post("/v1/calibration", json={**data, "n_bins": 4}).json()
    assert a["convention"]["binning"] == "edges" and a["metrics"]["ece"] == b["metrics"]["ece"]
    q = client.post(
        "/v1/calibration",
        json={"probs": p.tolist(), "labels": y.tolist(), "binning": "quantile", "n_bins": "sqrt"},
    ).json()
    assert q["convention"]["n_bins"] == 20
    assert set(q["reliability"][0]["count"]) == {20}


def test_bootstrap_intervals(client, rng):
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p).astype(int)
    data = {"probs": p.tolist(), "labels": y.tolist()}
    body = client.post(
        "/v1/calibration",
        json={
            "probs": p.tolist(),
            "labels": y.tolist(),
            "metrics": ["ece", "brier", "ace_nixon", "smooth_ece"],
            "bootstrap": {"n": 200, "seed": 1},
        },
    ).json()
    intervals = body["bootstrap"]["intervals"]
    murphy = {"brier_reliability", "brier_resolution", "brier_uncertainty"}
    murphy |= {"brier_within_bin_variance", "brier_within_bin_covariance"}
    smooth = {"smooth_ece", "smooth_ece_sigma"}
    assert set(intervals) == {"ece", "brier", "ace_nixon"} | murphy | smooth
    for name in ("ace_nixon", "brier_reliability", "brier_uncertainty", "smooth_ece"):
        assert intervals[name]["low"] <= body["metrics"][name] <= intervals[name]["high"], name
    assert intervals["brier"]["low"] <= body["metrics"]["brier"] <= intervals["brier"]["high"]
    again = client.post(
        "/v1/calibration",
        json={**data, "metrics": ["ece"], "bootstrap": {"n": 200, "seed": 1}},
    ).json()
    assert again["bootstrap"]["intervals"]["ece"] == intervals["ece"]


@pytest.mark.parametrize(
    ("extra", "pointer", "match"),
    [
        ({"preset": "netcal", "closed": "right"}, "#/closed", "fixed by preset 'netcal'"),
        ({"preset": "torchmetrics", "binning": "quantile"}, "#/binning", "fixed by preset"),
        ({"preset": "sklearn", "edges": [0, 1]}, "#/edges", "fixed by preset"),
        ({"preset": "pytorch"}, "#/preset", "preset"),
        ({"metrics": ["ace"]}, "#/metrics/0", "metrics"),
        ({"n_bins": 0}, "#/n_bins", "n_bins"),
        ({"n_bins": "log"}, "#/n_bins", "n_bins"),
        ({"edges": [0, 0.5, 0.5, 1]}, "#/edges/2", "must increase strictly"),
        ({"edges": [0.1, 1]}, "#/edges", "must start at 0 and end at 1"),
        ({"binning": "edges"}, "#/edges", "is required with binning"),
        ({"binning": "quantile", "edges": [0, 1]}, "#/edges", 'applies to binning "edges"'),
        ({"level": 1}, "#/level", "level"),
        ({"bootstrap": {"n": 0}}, "#/bootstrap/n", "bootstrap"),
        ({"bootstrap": {"n": 10, "level": 0}}, "#/bootstrap/level", "bootstrap"),
        ({"bootstrap": {"runs": 10}}, "#/bootstrap/runs", "bootstrap"),
        ({"min_bin_count": 0}, "#/min_bin_count", "min_bin_count"),
        ({"targets": [0.5] * 7}, "#/targets", "targets"),
        ({"brier_scale": "third"}, "#/brier_scale", "brier_scale"),
    ],
)
def test_bad_options_are_problems(client, extra, pointer, match):
    assert_problem(client.post("/v1/calibration", json={**GOLDEN, **extra}), 422, pointer, match)


def test_bad_arrays_are_problems(client):
    post = client.post
    bad_label = {**GOLDEN, "labels": [0, 1, 2, 1, 0, 0, 1]}
    assert_problem(post("/v1/calibration", json=bad_label), 422, "#/labels/2")
    assert_problem(post("/v1/calibration", json={**GOLDEN, "labels": [0, 1]}), 422, "#/labels", "as many")
    assert_problem(post("/v1/calibration", json={"probs": GOLDEN["probs"]}), 422, "#/labels")
    three = {"probs": [[0.2, 0.3, 0.5]], "labels": [0], "target": "positive_class"}
    assert_problem(post("/v1/calibration", json=three), 422, "#/target", "two classes")
    assert_problem(post("/v1/calibration", json={"probs": [[0.2, 0.3]], "labels": [0]}), 422, "#/probs/0")
    assert_problem(post("/v1/calibration", json={"labels": [0]}), 422, "#/logits", "exactly one")
    assert_problem(post("/v1/calibration", json={**GOLDEN, "probs": [0.2, "x", 0.6, 0.8, 1, 0.1, 0.3]}), 422)
    assert_problem(post("/v1/calibration", content=b"{", headers={"content-type": "application/json"}), 400)


def test_reliability_size_is_bounded(client, rng):
    probs = rng.dirichlet(np.ones(30), size=40)
    body = {"probs": probs.tolist(), "labels": [0] * 40, "target": "classwise", "n_bins": 10_000}
    assert_problem(client.post("/v1/calibration", json=body), 422, "#/metrics", "reliability bins")
    body["metrics"] = ["ece"]
    assert client.post("/v1/calibration", json=body).status_code == 200


def test_netcal_preset_on_an_fp32_tensor_matches_netcal(client):
    """Issue #20, disagreement 3, over HTTP: FP32 probabilities, quantile bins, a sample threshold."""
    from netcal.metrics import ACE, ECE, MCE

    rng = np.random.default_rng(3)
    logits = 6 * rng.standard_normal((400, 4))
    probs = softmax(logits, axis=1).astype(np.float32)
    labels = rng.integers(0, 4, size=400)
    body = {
        "probs": {"shape": [400, 4], "datatype": "FP32", "data": probs.ravel().tolist()},
        "labels": labels.tolist(),
        "preset": "netcal",
        "binning": "quantile",
        "n_bins": 10,
        "min_bin_count": 2,
    }
    response = client.post("/v1/calibration", json=body)
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["convention"]["dtype"] == "float32" and got["convention"]["input_dtype_means"]
    kwargs = {"bins": 10, "equal_intervals": False, "sample_threshold": 2}
    for name, metric in (("ece", ECE), ("mce", MCE), ("ace_netcal", ACE)):
        assert got["metrics"][name] == pytest.approx(metric(**kwargs).measure(probs, labels), abs=1e-12), name
