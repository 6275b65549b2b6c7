"""`sample_weight` on /v1/recalibrate, every map: weighted fits and metrics, apply round trip (#20)."""

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from tests.api.test_recalibrate import BINARY, CATEGORICAL, binary, categorical
from tests.conftest import assert_problem


def _post(client, path, body):
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    ("options", "form"), [(o, "categorical") for o in CATEGORICAL] + [(o, "binary") for o in BINARY]
)
def test_weighted_fit_reports_weighted_metrics_and_round_trips_through_apply(client, rng, options, form):
    logits, labels = categorical(rng) if form == "categorical" else binary(rng)
    s = rng.uniform(0, 3, size=len(labels))
    payload = {"logits": logits, "labels": labels, "sample_weight": s.tolist()}
    got = _post(client, "/v1/recalibrate", payload | options | {"return_probs": True})
    assert got["converged"], got["message"]
    assert got["convention"]["sample_weight"] is True
    probs = np.array(got["probs"])
    k = 2 if form == "binary" else probs.shape[1]
    table = np.stack([1 - probs, probs], axis=1) if form == "binary" else probs
    y = np.asarray(labels)
    assert got["after"]["nll"] == pytest.approx(
        log_loss(y, table, sample_weight=s, labels=range(k)), rel=1e-9
    )
    assert got["after"]["accuracy"] == pytest.approx(accuracy_score(y, table.argmax(1), sample_weight=s))
    brier = brier_score_loss(y, probs if form == "binary" else table, sample_weight=s, labels=list(range(k)))
    assert got["after"]["brier"] == pytest.approx(brier, rel=1e-9)
    applied = _post(client, "/v1/apply", payload | {"parameters": got["parameters"]})
    assert applied["metrics"] == got["after"]
    assert applied["probs"] == got["probs"]
    unweighted = _post(client, "/v1/recalibrate", {"logits": logits, "labels": labels} | options)
    assert unweighted["parameters"] != got["parameters"]  # the weights reach the fit


@pytest.mark.parametrize("method", ["vector", "matrix", "platt", "beta", "isotonic", "histogram"])
def test_integer_weights_equal_repeated_rows(client, rng, method):
    logits, labels = binary(rng, n=300) if method in ("platt", "beta") else categorical(rng, n=300, k=3)
    s = rng.integers(0, 4, size=len(labels))
    weighted = _post(
        client,
        "/v1/recalibrate",
        {"logits": logits, "labels": labels, "sample_weight": s.tolist(), "method": method},
    )
    repeated = _post(
        client,
        "/v1/recalibrate",
        {
            "logits": np.repeat(np.asarray(logits), s, axis=0).tolist(),
            "labels": np.repeat(labels, s).tolist(),
            "method": method,
        },
    )
    assert weighted["after"] == pytest.approx(repeated["after"], rel=1e-6, abs=1e-9)
    probe = {"logits": logits[:20], "labels": labels[:20]}
    a = _post(client, "/v1/apply", probe | {"parameters": weighted["parameters"]})
    b = _post(client, "/v1/apply", probe | {"parameters": repeated["parameters"]})
    np.testing.assert_allclose(a["probs"], b["probs"], rtol=1e-6, atol=1e-9)


def test_weighted_isotonic_on_probabilities_matches_sklearn(client, rng):
    logits, labels = binary(rng)
    q = 1 / (1 + np.exp(-np.asarray(logits)))
    s = rng.uniform(0, 2, size=q.size)
    got = _post(
        client,
        "/v1/recalibrate",
        {"probs": q.tolist(), "labels": labels, "sample_weight": s.tolist(), "method": "isotonic"}
        | {"return_probs": True},
    )
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(q, labels, sample_weight=s)
    np.testing.assert_allclose(got["probs"], reference.predict(q), atol=1e-12)


def test_weights_with_ignore_index_and_validation(client, rng):
    logits, labels = categorical(rng, n=400, k=3)
    labels = np.asarray(labels)
    s = rng.uniform(0, 2, size=400)
    ignored = labels.copy()
    ignored[::5] = -100
    body = {"logits": logits, "labels": ignored.tolist(), "sample_weight": s.tolist(), "method": "vector"}
    got = _post(
        client, "/v1/recalibrate", body | {"ignore_index": -100, "validation": {"folds": 3, "seed": 0}}
    )
    kept = ignored != -100
    alone = _post(
        client,
        "/v1/recalibrate",
        {
            "logits": np.asarray(logits)[kept].tolist(),
            "labels": labels[kept].tolist(),
            "sample_weight": s[kept].tolist(),
            "method": "vector",
        },
    )
    assert got["n_ignored"] == 80
    assert got["parameters"] == alone["parameters"]
    assert got["validation"]["n_eval"] == 320
    zero_kept = np.where(kept, 0.0, 1.0)
    assert_problem(
        client.post(
            "/v1/recalibrate", json=body | {"ignore_index": -100, "sample_weight": zero_kept.tolist()}
        ),
        422,
        "#/sample_weight",
        "rows not ignored",
    )


@pytest.mark.parametrize(
    "method", ["temperature", "vector", "matrix", "platt", "beta", "isotonic", "histogram", "divergence"]
)
def test_weights_near_the_float_maximum_give_the_answer_of_their_ratios(client, rng, method):
    """Σ s·x / Σ s depends on ratios only: weights near 1e308 must not overflow their sum (or warn)."""
    logits, labels = binary(rng, n=50) if method in ("platt", "beta") else categorical(rng, n=50, k=3)
    s = rng.uniform(0.5, 1.0, size=50)
    if method == "divergence":
        p = np.exp(np.asarray(logits) - np.logaddexp.reduce(logits, axis=1, keepdims=True))
        body = {"p_probs": p.tolist(), "q_logits": np.flip(logits, axis=1).tolist()}
        small = _post(client, "/v1/divergence", body | {"sample_weight": s.tolist()})["mean"]
        huge = _post(client, "/v1/divergence", body | {"sample_weight": (s * 1e308).tolist()})["mean"]
        assert huge == pytest.approx(small, rel=1e-12)
        return
    body = {"logits": logits, "labels": labels, "method": method}
    small = _post(client, "/v1/recalibrate", body | {"sample_weight": s.tolist()})
    huge = _post(client, "/v1/recalibrate", body | {"sample_weight": (s * 1e308).tolist()})
    assert huge["after"] == pytest.approx(small["after"], rel=1e-6)
    assert huge["before"] == pytest.approx(small["before"], rel=1e-12)
