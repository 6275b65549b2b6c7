"""`classes` with soft `targets` and with `ignore_index` on every endpoint that takes classes (#20).

The rule: `ignore_index` is compared with the label as sent, before `classes` maps names to
columns (PyTorch compares it with the target as given). References: torch's
``cross_entropy(ignore_index=…)`` and scikit-learn's ``log_loss(labels=…)`` on the mapped problem.
"""

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import log_loss

from tests.conftest import assert_problem

CLASSES = [10, 20, 30]


def _post(client, path, **body):
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _padded(rng, n, pad, classes=CLASSES, idx=None):
    """N raw labels from `classes`, a quarter of them `pad`; and their column indices (-100: ignored)."""
    idx = rng.integers(0, len(classes), size=n) if idx is None else idx
    raw = np.asarray(classes)[idx]
    ignored = rng.random(n) < 0.25
    raw[ignored] = pad
    return raw.tolist(), np.where(ignored, -100, idx)


@pytest.mark.parametrize("pad", [-100, 1, 99])  # 1: a column index, yet not a class name
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ignore_index_with_classes_matches_torch_on_the_mapped_problem(client, rng, pad, reduction):
    logits = rng.standard_normal((120, 3))
    raw, mapped = _padded(rng, 120, pad)
    got = _post(
        client,
        "/v1/cross-entropy",
        logits=logits.tolist(),
        labels=raw,
        classes=CLASSES,
        ignore_index=pad,
        reduction=reduction,
    )
    want = torch.nn.functional.cross_entropy(
        torch.tensor(logits), torch.tensor(mapped), ignore_index=-100, reduction=reduction
    ).numpy()
    if reduction == "none":
        np.testing.assert_allclose(got["losses"], want, rtol=1e-12, atol=1e-15)
    else:
        assert got["loss"] == pytest.approx(float(want), rel=1e-12)
    assert got["n_ignored"] == int(np.count_nonzero(mapped == -100))
    assert got["convention"]["ignore_index"] == pad
    assert got["convention"]["classes"] == CLASSES


def test_ignore_index_with_classes_on_probabilities_matches_log_loss_of_the_kept_rows(client, rng):
    probs = softmax(rng.standard_normal((150, 3)), axis=1)
    raw, mapped = _padded(rng, 150, -1)
    got = _post(
        client, "/v1/cross-entropy", probs=probs.tolist(), labels=raw, classes=CLASSES, ignore_index=-1
    )
    kept = mapped != -100
    names = np.asarray(raw)[kept]
    assert got["loss"] == pytest.approx(log_loss(names, probs[kept], labels=CLASSES), rel=1e-12)
    assert got["accuracy"] == pytest.approx(np.mean(probs[kept].argmax(axis=1) == mapped[kept]), abs=1e-15)


def test_ignore_index_naming_a_class_drops_that_class_as_torch_does(client, rng):
    """classes = [0, 1, 2] (names equal to indices): the same answer as plain index labels."""
    logits = rng.standard_normal((80, 3))
    labels = rng.integers(0, 3, size=80).tolist()
    body = {"logits": logits.tolist(), "labels": labels, "ignore_index": 1}
    named = _post(client, "/v1/cross-entropy", **body, classes=[0, 1, 2])
    plain = _post(client, "/v1/cross-entropy", **body)
    assert named["loss"] == plain["loss"]
    assert named["n_ignored"] == plain["n_ignored"] == labels.count(1)
    want = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels), ignore_index=1)
    assert named["loss"] == pytest.approx(float(want), rel=1e-12)


def test_every_label_ignored_with_classes_follows_torch(client, rng):
    logits = rng.standard_normal((4, 3)).tolist()
    body = {"logits": logits, "labels": [-100] * 4, "classes": CLASSES, "ignore_index": -100}
    mean = _post(client, "/v1/cross-entropy", **body)
    assert mean["loss"] == "NaN" and mean["n"] == 0 and mean["n_ignored"] == 4
    assert _post(client, "/v1/cross-entropy", **body, reduction="sum")["loss"] == 0.0


@pytest.mark.parametrize(
    "path", ["/v1/cross-entropy", "/v1/calibration", "/v1/temperature", "/v1/recalibrate"]
)
def test_string_classes_with_ignore_index_is_a_problem(client, path):
    body = {
        "probs": [[0.3, 0.7], [0.6, 0.4]],
        "labels": ["a", "b"],
        "classes": ["a", "b"],
        "ignore_index": -100,
    }
    if path == "/v1/recalibrate":
        body["method"] = "vector"
    assert_problem(client.post(path, json=body), 422, "#/ignore_index", "never equals a string label")


def test_a_label_outside_classes_other_than_ignore_index_is_still_a_problem(client):
    body = {"probs": [[0.3, 0.7], [0.6, 0.4]], "labels": [-100, 7], "classes": [10, 20], "ignore_index": -100}
    assert_problem(client.post("/v1/cross-entropy", json=body), 422, "#/labels/1", "not one of `classes`")


def test_calibration_with_classes_and_ignore_index_equals_the_mapped_request(client, rng):
    probs = softmax(2 * rng.standard_normal((300, 3)), axis=1)
    raw, mapped = _padded(rng, 300, 20)  # 20 is a class: its rows are dropped too
    mapped = np.where(np.asarray(raw) == 20, -100, mapped)
    weights = rng.random(300)
    options = {
        "metrics": ["ece", "brier", "nll", "accuracy"],
        "n_bins": 10,
        "sample_weight": weights.tolist(),
    }
    named = _post(
        client,
        "/v1/calibration",
        probs=probs.tolist(),
        labels=raw,
        classes=CLASSES,
        ignore_index=20,
        **options,
    )
    plain = _post(
        client, "/v1/calibration", probs=probs.tolist(), labels=mapped.tolist(), ignore_index=-100, **options
    )
    assert named["metrics"] == plain["metrics"]
    assert named["n_ignored"] == plain["n_ignored"] == int(np.count_nonzero(mapped == -100))
    kept = mapped != -100
    assert named["metrics"]["nll"] == pytest.approx(
        log_loss(mapped[kept], probs[kept], labels=[0, 1, 2], sample_weight=weights[kept]), rel=1e-12
    )
    assert named["convention"]["ignore_index"] == 20


def test_every_label_ignored_on_calibration_names_the_value_sent(client):
    body = {"probs": [[0.3, 0.7], [0.6, 0.4]], "labels": [1, 1], "classes": [5, 1], "ignore_index": 1}
    assert_problem(client.post("/v1/calibration", json=body), 422, "#/labels", r"ignore_index \(1\)")


@pytest.mark.parametrize(
    ("path", "extra"), [("/v1/temperature", {}), ("/v1/recalibrate", {"method": "vector"})]
)
def test_fits_with_classes_and_ignore_index_equal_the_fit_on_the_kept_rows(client, rng, path, extra):
    logits = 3 * rng.standard_normal((200, 3))
    drawn = (logits / 2 + rng.gumbel(size=logits.shape)).argmax(axis=1)  # informative: T near 2
    raw, mapped = _padded(rng, 200, 1, idx=drawn)
    named = _post(client, path, logits=logits.tolist(), labels=raw, classes=CLASSES, ignore_index=1, **extra)
    kept = mapped != -100
    plain = _post(client, path, logits=logits[kept].tolist(), labels=mapped[kept].tolist(), **extra)
    assert named["parameters"] == plain["parameters"]
    assert named["before"] == plain["before"] and named["after"] == plain["after"]
    assert named["n_ignored"] == int(np.count_nonzero(~kept))
    if path == "/v1/temperature":  # torch's NLL at the fitted temperature, on the mapped problem
        t = named["parameters"]["temperature"]
        want = torch.nn.functional.cross_entropy(
            torch.tensor(logits / t), torch.tensor(mapped), ignore_index=-100
        )
        assert named["after"]["nll"] == pytest.approx(float(want), rel=1e-9)


def _soft(rng, n, k):
    return softmax(rng.standard_normal((n, k)), axis=1)


def test_soft_targets_with_classes_match_torch_and_equal_the_unnamed_request(client, rng):
    logits = rng.standard_normal((60, 3))
    targets = _soft(rng, 60, 3)
    body = {"logits": logits.tolist(), "targets": targets.tolist()}
    named = _post(client, "/v1/cross-entropy", **body, classes=["bird", "cat", "dog"])
    plain = _post(client, "/v1/cross-entropy", **body)
    want = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(targets))
    assert named["loss"] == plain["loss"] == pytest.approx(float(want), rel=1e-12)
    assert named["convention"]["classes"] == ["bird", "cat", "dog"]
    assert named["convention"]["truth"] == "targets"


def test_binary_soft_targets_with_classes_and_pos_label(client, rng):
    p = rng.random(50) * 0.98 + 0.01
    t = rng.random(50)
    body = {"probs": p.tolist(), "targets": t.tolist(), "classes": ["ham", "spam"], "pos_label": "ham"}
    got = _post(client, "/v1/cross-entropy", **body)
    want = torch.nn.functional.binary_cross_entropy(torch.tensor(p), torch.tensor(t))
    assert got["loss"] == pytest.approx(float(want), rel=1e-12)
    assert got["convention"]["pos_label"] == "ham"
    bad = body | {"pos_label": "eggs"}
    assert_problem(client.post("/v1/cross-entropy", json=bad), 422, "#/pos_label", "not one of `classes`")


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/cross-entropy", {}),
        ("/v1/temperature", {}),
        ("/v1/recalibrate", {"method": "vector"}),
        ("/v1/apply", {"temperature": 1.5}),
    ],
)
def test_soft_targets_with_a_class_count_mismatch_name_both_counts(client, rng, path, extra):
    body = {"logits": rng.standard_normal((4, 3)).tolist(), "targets": _soft(rng, 4, 3).tolist()}
    body |= {"classes": ["a", "b"], **extra}
    assert_problem(
        client.post(path, json=body), 422, "#/classes", "declares 2 classes but the predictions have 3"
    )


@pytest.mark.parametrize(
    ("path", "extra"),
    [("/v1/temperature", {}), ("/v1/recalibrate", {"method": "vector"}), ("/v1/apply", {"temperature": 1.5})],
)
def test_fits_and_apply_take_classes_with_soft_targets(client, rng, path, extra):
    body = {
        "logits": (2 * rng.standard_normal((100, 3))).tolist(),
        "targets": _soft(rng, 100, 3).tolist(),
        **extra,
    }
    named = _post(client, path, **body, classes=[3, 1, 2])
    plain = _post(client, path, **body)
    for key in ("parameters", "before", "after", "metrics"):
        assert named.get(key) == plain.get(key)
    assert named["convention"]["classes"] == [3, 1, 2]
    if path == "/v1/apply":  # the soft NLL after T = 1.5, as torch computes it
        want = torch.nn.functional.cross_entropy(
            torch.tensor(body["logits"], dtype=torch.float64) / 1.5,
            torch.tensor(body["targets"], dtype=torch.float64),
        )
        assert named["metrics"]["nll"] == pytest.approx(float(want), rel=1e-9)


def test_multilabel_cross_entropy_takes_classes_naming_the_columns(client, rng):
    logits = rng.standard_normal((30, 3))
    targets = (rng.random((30, 3)) < 0.5).astype(float)
    body = {"multilabel": True, "logits": logits.tolist(), "targets": targets.tolist()}
    named = _post(client, "/v1/cross-entropy", **body, classes=["x", "y", "z"])
    want = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(logits), torch.tensor(targets))
    assert named["loss"] == pytest.approx(float(want), rel=1e-12)
    assert named["convention"]["classes"] == ["x", "y", "z"]
    bad = body | {"classes": ["x", "y"]}
    assert_problem(
        client.post("/v1/cross-entropy", json=bad), 422, "#/classes", "2 classes but the predictions have 3"
    )


@pytest.mark.parametrize("extra", [{"classes": [5, 6, 7]}, {"classes": [0, 1, 2], "pos_label": 1}])
def test_sequences_refuse_classes_rather_than_ignore_them(client, extra):
    """B×T×K cross-entropy used to score B×T labels as indices and echo no classes."""
    body = {"logits": [[[0.1, 0.2, 0.3], [0.3, 0.1, 0.0]]], "labels": [[0, 1]], **extra}
    assert_problem(client.post("/v1/cross-entropy", json=body), 422, "#/classes", "B×T×K")
