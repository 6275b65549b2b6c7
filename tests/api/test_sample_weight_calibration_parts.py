"""`sample_weight` on reliability bins, the Brier decomposition and the bootstrap over HTTP (#20).

References: repeated rows (integer weights), dropped rows (zero weights), scikit-learn's
``calibration_curve`` and ``brier_score_loss(sample_weight=)``, and a NumPy reimplementation of the
documented weighted bootstrap.
"""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from tests.conftest import assert_problem

SVG_NS = "{http://www.w3.org/2000/svg}"
BRIER = ["brier_reliability", "brier_resolution", "brier_uncertainty", "brier"]
BRIER += ["brier_within_bin_variance", "brier_within_bin_covariance"]


def _post(client, **body):
    response = client.post("/v1/calibration", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    "options",
    [{}, {"target": "classwise", "n_bins": 6}, {"preset": "netcal"}, {"binning": "quantile", "n_bins": 5}],
)
def test_weighted_bins_and_brier_terms_equal_repeated_rows(client, rng, options):
    logits = 2 * rng.standard_normal((90, 3))
    labels = rng.integers(0, 3, size=90)
    s = rng.integers(0, 4, size=90)
    metrics = ["reliability", "brier", "ece"]
    body = {"logits": logits.tolist(), "labels": labels.tolist(), "metrics": metrics, **options}
    got = _post(client, **body, sample_weight=s.tolist())
    repeated = _post(
        client,
        **{**body, "logits": np.repeat(logits, s, axis=0).tolist(), "labels": np.repeat(labels, s).tolist()},
    )
    for name in BRIER + ["ece"]:
        assert got["metrics"][name] == pytest.approx(repeated["metrics"][name], rel=1e-9, abs=1e-12), name
    for a, b in zip(got["reliability"], repeated["reliability"], strict=True):
        assert a["weight_sum"] == b["count"] and "weight_sum" not in b  # only with sample_weight
        assert sum(a["count"]) == 90 and a["group"] == b["group"]
        for field in ("confidence", "accuracy", "gap", "wilson_low", "wilson_high"):
            x = np.array(a[field], dtype=float)  # null (empty bin) reads as NaN
            np.testing.assert_allclose(x, np.array(b[field], dtype=float), rtol=1e-9, atol=1e-12)
    assert got["convention"]["sample_weight"] is True


def test_zero_weights_equal_dropped_rows(client, rng):
    probs = softmax(rng.standard_normal((70, 4)), axis=1)
    labels = rng.integers(0, 4, size=70)
    s = rng.uniform(0.2, 3, size=70)
    s[::4] = 0.0
    kept = s > 0
    body = {"metrics": ["reliability", "brier", "calibration_error"], "n_bins": 7}
    got = _post(client, probs=probs.tolist(), labels=labels.tolist(), sample_weight=s.tolist(), **body)
    dropped = _post(
        client,
        probs=probs[kept].tolist(),
        labels=labels[kept].tolist(),
        sample_weight=s[kept].tolist(),
        **body,
    )
    for name, value in dropped["metrics"].items():
        if value is None:
            assert got["metrics"][name] is None, name
        else:
            assert got["metrics"][name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    ours, theirs = got["reliability"][0], dropped["reliability"][0]
    assert ours["weight_sum"] == pytest.approx(theirs["weight_sum"], rel=1e-12)
    for field in ("confidence", "accuracy", "wilson_low", "wilson_high"):
        x, y = np.array(ours[field], dtype=float), np.array(theirs[field], dtype=float)
        np.testing.assert_allclose(x, y, rtol=1e-12)
    assert sum(ours["count"]) == 70 and sum(theirs["count"]) == int(kept.sum())


def test_weighted_reliability_matches_sklearn_calibration_curve(client, rng):
    p = rng.uniform(0, 1, size=120)
    y = (rng.random(120) < p**2).astype(int)
    s = rng.integers(0, 4, size=120)
    got = _post(
        client, probs=p.tolist(), labels=y.tolist(), sample_weight=s.tolist(), preset="sklearn", n_bins=6
    )
    rel = got["reliability"][0]
    prob_true, prob_pred = calibration_curve(np.repeat(y, s), np.repeat(p, s), n_bins=6)
    filled = [i for i, w in enumerate(rel["weight_sum"]) if w > 0]
    np.testing.assert_allclose([rel["accuracy"][i] for i in filled], prob_true, rtol=1e-12)
    np.testing.assert_allclose([rel["confidence"][i] for i in filled], prob_pred, rtol=1e-12)


def test_weighted_bootstrap_follows_the_documented_rule(client, rng):
    """Rows drawn uniformly (default_rng(seed).integers, rows in confidence order), statistic weighted m·s."""
    n, resamples, seed = 70, 50, 11
    p = rng.uniform(0, 1, size=n)
    y = (rng.random(n) < p).astype(int)
    s = rng.uniform(0, 2, size=n)
    got = _post(
        client,
        probs=p.tolist(),
        labels=y.tolist(),
        sample_weight=s.tolist(),
        metrics=["brier"],
        bootstrap={"n": resamples, "seed": seed, "level": 0.8},
    )
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n), dtype=np.int32)
    order = np.argsort(p, kind="stable")
    values = []
    for r in range(resamples):
        m = np.zeros(n)
        m[order] = np.bincount(draws[r], minlength=n)
        values.append(brier_score_loss(y, p, sample_weight=m * s))
    low, high = np.percentile(values, [10, 90])
    interval = got["bootstrap"]["intervals"]["brier"]
    assert (interval["low"], interval["high"]) == pytest.approx((low, high), rel=1e-12)
    assert "m·s" in got["bootstrap"]["method"]


def _drawn(svg: str) -> list[str]:
    """The bars, gaps, whiskers and histogram of a diagram (not its caption)."""
    root = ET.fromstring(svg)
    shapes = [
        ET.tostring(e, encoding="unicode") for e in root.iter() if e.tag in (f"{SVG_NS}rect", f"{SVG_NS}line")
    ]
    return [re.sub(r"\s+", " ", s) for s in shapes]


def test_weighted_diagram_draws_the_repeated_rows(client, rng):
    p = rng.uniform(0, 1, size=80)
    y = (rng.random(80) < p).astype(int)
    s = rng.integers(0, 3, size=80)
    body = {"probs": p.tolist(), "labels": y.tolist(), "n_bins": 8}
    weighted = client.post("/v1/reliability-diagram", json={**body, "sample_weight": s.tolist()})
    repeated = client.post(
        "/v1/reliability-diagram",
        json={**body, "probs": np.repeat(p, s).tolist(), "labels": np.repeat(y, s).tolist()},
    )
    plain = client.post("/v1/reliability-diagram", json=body)
    assert weighted.status_code == repeated.status_code == 200
    assert _drawn(weighted.text) == _drawn(repeated.text) != _drawn(plain.text)
    assert "sample_weight: weighted bins" in weighted.text and "smooth_ece" not in weighted.text


def test_ordering_metrics_with_weights_say_why(client):
    body = {"probs": [0.2, 0.7, 0.9], "labels": [0, 1, 1], "sample_weight": [1.0, 2.0, 0.5]}
    problem = assert_problem(
        client.post("/v1/calibration", json={**body, "metrics": ["smooth_ece"]}), 422, "#/sample_weight"
    )
    assert "no peer" in problem["detail"] and "order" in problem["detail"]
