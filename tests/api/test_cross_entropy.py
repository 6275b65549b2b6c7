import numpy as np
import pytest
import scipy.special as sp
import torch
import torch.nn.functional as F
from sklearn.metrics import log_loss

from tests.conftest import assert_problem

URL = "/v1/cross-entropy"


def _post(client, **body):
    return client.post(URL, json=body)


def test_logits_and_labels_match_torch(client, rng):
    logits = 5 * rng.standard_normal((40, 6))
    labels = rng.integers(0, 6, size=40)
    body = _post(client, logits=logits.tolist(), labels=labels.tolist(), per_sample=True).json()
    expected = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), reduction="none").numpy()
    assert body["loss"] == pytest.approx(expected.mean(), rel=1e-12)
    np.testing.assert_allclose(body["losses"], expected, rtol=1e-12, atol=1e-14)
    assert body["n"] == 40
    assert body["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == labels))
    probs = sp.softmax(logits, axis=1)
    assert body["mean_entropy"] == pytest.approx(np.mean(-(probs * np.log(probs)).sum(1)), rel=1e-12)
    convention = body["convention"]
    assert convention["input"] == "logits"
    assert convention["form"] == "categorical"
    assert convention["base"] == "e" and convention["unit"] == "nats"
    assert convention["dtype"] == "float64"


def test_torch_options_over_http(client, rng):
    logits = 3 * rng.standard_normal((30, 4))
    labels = rng.integers(0, 4, size=30)
    labels[::5] = -100
    weights = [0.5, 1.0, 2.0, 4.0]
    body = _post(
        client,
        logits=logits.tolist(),
        labels=labels.tolist(),
        class_weights=weights,
        label_smoothing=0.1,
        ignore_index=-100,
    ).json()
    expected = F.cross_entropy(
        torch.from_numpy(logits),
        torch.from_numpy(labels),
        weight=torch.tensor(weights, dtype=torch.float64),
        label_smoothing=0.1,
        ignore_index=-100,
    ).item()
    assert body["loss"] == pytest.approx(expected, rel=1e-12)
    assert body["n"] == 24 and body["n_ignored"] == 6
    assert body["convention"]["class_weights"] is True
    assert body["convention"]["ignore_index"] == -100


def test_reduction_sum_and_none(client, rng):
    logits = rng.standard_normal((5, 3))
    labels = [0, 1, 2, 0, 1]
    expected = F.cross_entropy(torch.from_numpy(logits), torch.tensor(labels), reduction="none").numpy()
    summed = _post(client, logits=logits.tolist(), labels=labels, reduction="sum").json()
    assert summed["loss"] == pytest.approx(expected.sum(), rel=1e-12)
    assert summed["losses"] is None
    none = _post(client, logits=logits.tolist(), labels=labels, reduction="none").json()
    assert none["loss"] is None
    np.testing.assert_allclose(none["losses"], expected, rtol=1e-12)


def test_soft_targets_match_torch(client, rng):
    logits = rng.standard_normal((10, 3))
    targets = sp.softmax(rng.standard_normal((10, 3)), axis=1)
    body = _post(client, logits=logits.tolist(), targets=targets.tolist(), label_smoothing=0.2).json()
    expected = F.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(targets), label_smoothing=0.2
    ).item()
    assert body["loss"] == pytest.approx(expected, rel=1e-12)
    assert body["convention"]["truth"] == "targets"
    assert body["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == targets.argmax(1)))


def test_probs_match_sklearn_log_loss(client, rng):
    probs = sp.softmax(rng.standard_normal((50, 4)), axis=1)
    probs[0] = [0.0, 0.0, 0.0, 1.0]
    labels = rng.integers(0, 4, size=50)
    labels[0] = 1
    body = _post(client, probs=probs.tolist(), labels=labels.tolist()).json()
    assert body["loss"] == pytest.approx(log_loss(labels, probs, labels=[0, 1, 2, 3]), abs=1e-14)
    assert body["convention"]["eps"] == np.finfo(np.float64).eps
    assert body["convention"]["n_clipped"] == 3


def test_eps_zero_gives_infinity_string(client):
    body = _post(client, probs=[[0.0, 1.0], [0.5, 0.5]], labels=[0, 1], eps=0, per_sample=True).json()
    assert body["loss"] == "Infinity"
    assert body["losses"][0] == "Infinity"
    assert body["losses"][1] == pytest.approx(np.log(2))
    assert body["convention"]["eps"] == 0


def test_explicit_eps_clips_to_it(client):
    body = _post(client, probs=[[0.0, 1.0]], labels=[0], eps=1e-3).json()
    assert body["loss"] == pytest.approx(-np.log(1e-3))
    assert body["convention"]["n_clipped"] == 1


def test_binary_logits_match_torch(client, rng):
    z = 4 * rng.standard_normal(25)
    y = rng.integers(0, 2, size=25)
    body = _post(client, logits=z.tolist(), labels=y.tolist()).json()
    expected = F.binary_cross_entropy_with_logits(
        torch.from_numpy(z), torch.from_numpy(y.astype(float))
    ).item()
    assert body["loss"] == pytest.approx(expected, rel=1e-12)
    assert body["convention"]["form"] == "binary"
    assert body["accuracy"] == pytest.approx(np.mean((z > 0) == (y == 1)))


def test_binary_probs_and_soft_targets(client):
    p = [0.9, 0.2, 0.6]
    t = [1.0, 0.25, 0.5]
    body = _post(client, probs=p, targets=t, per_sample=True).json()
    expected = -(np.array(t) * np.log(p) + (1 - np.array(t)) * np.log1p(-np.array(p)))
    np.testing.assert_allclose(body["losses"], expected, rtol=1e-12)
    assert body["loss"] == pytest.approx(expected.mean(), rel=1e-12)


@pytest.mark.parametrize(("base", "divisor", "unit"), [(2, np.log(2), "bits"), (10, np.log(10), "hartleys")])
def test_base_converts_units(client, base, divisor, unit):
    body = _post(client, logits=[[0.0, 0.0]], labels=[0], base=base).json()
    assert body["loss"] == pytest.approx(np.log(2) / divisor, rel=1e-15)
    assert body["mean_entropy"] == pytest.approx(np.log(2) / divisor, rel=1e-15)
    assert body["convention"]["unit"] == unit


def test_normalize_renormalises_rows(client):
    body = _post(client, probs=[[1.0, 3.0], [0.5, 0.5]], labels=[1, 0], normalize=True).json()
    assert body["loss"] == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2)
    assert body["convention"]["n_normalized"] == 1


@pytest.mark.parametrize(
    ("datatype", "dtype"), [("FP32", "float32"), ("FP64", "float64"), ("FP16", "float32")]
)
def test_tensor_objects_keep_their_precision(client, rng, datatype, dtype):
    logits = rng.standard_normal((8, 3))
    labels = rng.integers(0, 3, size=8)
    np_type = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}[datatype]
    sent = logits.astype(np_type)
    body = _post(
        client,
        logits={"shape": [8, 3], "datatype": datatype, "data": sent.ravel().tolist()},
        labels={"shape": [8], "datatype": "INT64", "data": labels.tolist()},
    ).json()
    expected = F.cross_entropy(torch.from_numpy(sent.astype(np.float64)), torch.from_numpy(labels)).item()
    assert body["convention"]["dtype"] == dtype
    assert body["loss"] == pytest.approx(expected, rel=1e-6 if dtype == "float32" else 1e-12)


def test_tensor_object_accepts_nested_data(client):
    body = _post(
        client,
        logits={"shape": [2, 2], "datatype": "FP32", "data": [[0.0, 0.0], [0.0, 0.0]], "name": "out"},
        labels=[0, 1],
    ).json()
    assert body["loss"] == pytest.approx(np.log(2), rel=1e-6)


def test_large_k_and_single_sample(client, rng):
    logits = rng.standard_normal((1, 10_000))
    body = _post(client, logits=logits.tolist(), labels=[1234]).json()
    assert body["loss"] == pytest.approx(-sp.log_softmax(logits, axis=1)[0, 1234], rel=1e-12)
    assert body["n"] == 1


def test_extreme_logits_are_finite(client):
    body = _post(client, logits=[[1e4, -1e4], [-1e4, 1e4]], labels=[1, 1], per_sample=True).json()
    assert body["losses"] == [2e4, 0.0]


# --- bad input: every case is a 4xx problem+json naming the field --------------------------------


@pytest.mark.parametrize(
    ("body", "pointer", "match"),
    [
        (  # JSON has no NaN; a float32 overflow is the way a non-finite value arrives
            {"logits": {"shape": [1, 2], "datatype": "FP32", "data": [0.0, 1e39]}, "labels": [0]},
            "#/logits/data/1",
            "must be finite; got inf",
        ),
        ({"probs": [[0.5, 1.5]], "labels": [0]}, "#/probs/0/1", r"must lie in \[0, 1\]"),
        ({"probs": [[-0.5, 1.5]], "labels": [0]}, "#/probs/0/0", r"must lie in \[0, 1\]"),
        ({"probs": [[0.5, 0.5]] * 17 + [[0.5, 0.6]], "labels": [0] * 18}, "#/probs/17", "must sum to 1"),
        ({"logits": [[0.0, 1.0]], "labels": [2]}, "#/labels/0", r"must lie in \[0, 2\); got 2"),
        ({"logits": [[0.0, 1.0]], "labels": [0.5]}, "#/labels/0", "must hold integers"),
        ({"logits": [[0.0, 1.0], [1.0]], "labels": [0, 0]}, "#/logits/1", "ragged"),
        ({"logits": [[0.0, 1.0]], "labels": [0, 1]}, "#/labels", r"as many samples as `logits` \(1\)"),
        ({"logits": [], "labels": []}, "#/logits", "empty batch"),
        ({"logits": [[0.0], [1.0]], "labels": [0, 0]}, "#/logits", "K ≥ 2"),
        ({"logits": [[0.0, 1.0]], "probs": [[0.5, 0.5]], "labels": [0]}, "#/probs", "got both"),
        ({"labels": [0]}, "#/logits", "got neither"),
        ({"logits": [[0.0, 1.0]]}, "#/labels", "got neither"),
        ({"logits": [[0.0, 1.0]], "labels": [0], "targets": [[1.0, 0.0]]}, "#/targets", "got both"),
        ({"logits": [[0.0, 1.0]], "labels": [0], "unknown": 1}, "#/unknown", "Extra inputs"),
        ({"logits": [[0.0, 1.0]], "labels": [0], "reduction": "avg"}, "#/reduction", "mean"),
        ({"logits": [[0.0, 1.0]], "labels": [0], "label_smoothing": 1.5}, "#/label_smoothing", "less than"),
        ({"logits": [[0.0, 1.0]], "labels": [0], "base": 3}, "#/base", None),
        (
            {"logits": [[0.0, 1.0]], "labels": [0], "class_weights": [1.0]},
            "#/class_weights",
            "one weight per",
        ),
        (
            {"logits": [[0.0, 1.0]], "labels": [0], "class_weights": [1.0, -1.0]},
            "#/class_weights/1",
            "non-negative",
        ),
        ({"logits": [["a", 1.0]], "labels": [0]}, "#/logits/0/0", "must be a number; got a string"),
        ({"logits": [[True, 1.0]], "labels": [0]}, "#/logits/0/0", "got a boolean"),
        ({"logits": [[None, 1.0]], "labels": [0]}, "#/logits/0/0", "got null"),
        ({"logits": "0.5", "labels": [0]}, "#/logits", "JSON array or a tensor object"),
        ({"logits": [[0.0, 1.0]], "targets": [[0.5, 0.4]]}, "#/targets/0", "must sum to 1"),
        ({"logits": [[0.0, 1.0]], "targets": [[0.5, 0.5]], "ignore_index": 0}, "#/ignore_index", "hard"),
        (
            {"logits": [[0.0, 1.0]], "labels": [0], "class_weights": [0.0, 1.0]},
            "#/class_weights",
            "zero total weight",
        ),
        (
            {"logits": {"shape": [2, 2], "datatype": "FP32", "data": [0.0, 1.0, 2.0]}, "labels": [0, 0]},
            "#/logits/data",
            r"prod\(shape\) = 4",
        ),
        (
            {"logits": {"shape": [-1, 2], "datatype": "FP32", "data": [0.0, 1.0]}, "labels": [0]},
            "#/logits/shape",
            "non-negative integers",
        ),
        (
            {"logits": {"shape": [1, 2], "datatype": "FP8", "data": [0.0, 1.0]}, "labels": [0]},
            "#/logits/datatype",
            "must be one of",
        ),
        (
            {
                "logits": {"shape": [1, 2], "datatype": "FP32", "data": [0.0, 2.0]},
                "probs": None,
                "labels": [5],
            },
            "#/labels/0",
            r"must lie in \[0, 2\)",
        ),
        (
            {"probs": {"shape": [2, 2], "datatype": "FP64", "data": [0.5, 0.5, 0.9, 0.9]}, "labels": [0, 0]},
            "#/probs/data/2",
            "must sum to 1",
        ),
        (
            {"logits": [[0.0, 1.0]], "labels": {"shape": [1], "datatype": "INT8", "data": [300]}},
            "#/labels/data/0",
            "must fit INT8",
        ),
    ],
)
def test_bad_input_is_problem_json(client, body, pointer, match):
    assert_problem(client.post(URL, json=body), 422, pointer, match)


def test_malformed_json_is_400(client):
    response = client.post(
        URL, content=b'{"logits": [[0.0, 1.0]', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, match="not valid JSON")


@pytest.mark.parametrize("payload", [b"[1, 2]", b"", b'"text"'])
def test_non_object_body_is_400(client, payload):
    response = client.post(URL, content=payload, headers={"content-type": "application/json"})
    assert_problem(response, 400)


def test_nan_literal_is_400(client):
    response = client.post(
        URL, content=b'{"logits": [[NaN, 1.0]], "labels": [0]}', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400)


def test_number_too_large_is_400(client):
    response = client.post(
        URL,
        content=b'{"logits": [[1e999, 1.0]], "labels": [0]}',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 400, match="infinity")


def test_wrong_content_type_is_415(client):
    response = client.post(
        URL, content=b"logits=1", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert_problem(response, 415)


def test_wrong_method_is_405(client):
    assert_problem(client.get(URL), 405)


def test_unknown_path_is_404(client):
    assert_problem(client.post("/v1/nope", json={}), 404)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_every_label_ignored_follows_pytorch(client, rng, reduction, weighted):
    """Issue #20: a padded window is not an error; sum 0, none zeros, mean NaN sent as "NaN"."""
    import torch
    import torch.nn.functional as F

    logits = rng.standard_normal((4, 3))
    labels = np.full(4, -100)
    weight = np.array([1.0, 2.0, 0.5]) if weighted else None
    body = {
        "logits": logits.tolist(),
        "labels": labels.tolist(),
        "ignore_index": -100,
        "reduction": reduction,
    }
    body |= {"class_weights": weight.tolist()} if weighted else {}
    response = client.post("/v1/cross-entropy", json={**body, "top_k": [1, 2]})
    assert response.status_code == 200, response.text
    got = response.json()
    expected = F.cross_entropy(
        torch.from_numpy(logits),
        torch.from_numpy(labels),
        weight=None if weight is None else torch.from_numpy(weight),
        ignore_index=-100,
        reduction=reduction,
    ).numpy()
    assert (got["n"], got["n_ignored"]) == (0, 4)
    if reduction == "none":
        assert got["loss"] is None and got["losses"] == expected.tolist() == [0.0] * 4
    elif reduction == "sum":
        assert got["loss"] == float(expected) == 0.0
    else:
        assert np.isnan(expected) and got["loss"] == "NaN"
    assert got["accuracy"] == "NaN" and got["mean_entropy"] == "NaN"
    assert got["top_k_accuracy"] == {"1": "NaN", "2": "NaN"}
