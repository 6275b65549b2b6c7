"""Monitors give exactly what the scoring routes give on the same rows, however the rows arrive."""

import math
import time

import numpy as np
import pytest
import scipy.optimize
import scipy.special
from scipy.spatial.distance import jensenshannon

from .monitoring import FORMATS, monitor_client, observe

RTOL = 1e-12


def _close(a, b):
    assert a == pytest.approx(b, rel=RTOL, abs=1e-15)


def _reference(client, key, values, labels, **options):
    """/v1/calibration and /v1/cross-entropy on all rows at once."""
    fields = {key: values.tolist(), "labels": labels.tolist(), **options}
    calibration = client.post("/v1/calibration", json=fields).json()["metrics"]
    ce = client.post("/v1/cross-entropy", json={key: values.tolist(), "labels": labels.tolist()}).json()
    ce2 = client.post(
        "/v1/cross-entropy", json={key: values.tolist(), "labels": labels.tolist(), "base": 2}
    ).json()
    return calibration, ce["loss"], ce2["loss"]


def _only_point(client, name, start, **params):
    """The one point with rows in the 2 h block from `start` (a multiple of 2 h: points align to steps)."""
    query = {"from": start, "to": start + 7200, "step": "2h", **params}
    result = client.get(f"/v1/monitors/{name}/metrics", params=query)
    assert result.status_code == 200, result.text
    points = [p for p in result.json()["points"] if p["n"]]
    assert len(points) == 1, points
    return result.json(), points[0]


@pytest.mark.parametrize(
    ("key", "binary", "k"),
    [("logits", False, 5), ("probs", False, 4), ("probs", True, 2), ("logits", True, 2)],
)
def test_batches_in_every_format_equal_scoring_all_rows_at_once(tmp_path, rng, key, binary, k):
    n = 240
    if key == "logits":
        values = 3 * rng.standard_normal(n if binary else (n, k))
    else:
        values = rng.dirichlet(np.ones(k) * 0.7, size=n)
        values = values[:, 1] if binary else values
        values[:7] = np.round(values[:7] * 15) / 15 if binary else values[:7]  # confidences on edges
    labels = rng.integers(0, k, size=n)
    start = (int(time.time()) // 7200 - 1) * 7200  # the last whole 2 h block: no bucket edge splits it
    times = start + rng.uniform(0, 7199, size=n)
    with monitor_client(tmp_path) as client:
        spec = {"binary": True} if binary else {"n_classes": k}
        assert client.put("/v1/monitors/m", json=spec).status_code == 201
        cuts = np.sort(rng.choice(np.arange(1, n), size=11, replace=False))
        late = {}
        for i, rows in enumerate(np.split(np.arange(n), cuts)):
            sent = labels[rows].copy()
            hidden = rng.random(rows.size) < 0.3  # labelled later, by id
            sent[hidden] = -1
            ids = [f"row-{r}" if h else None for r, h in zip(rows, hidden, strict=True)]
            late.update({f"row-{r}": int(labels[r]) for r in rows[hidden]})
            fields = {key: values[rows], "labels": sent, "ids": ids, "timestamps": times[rows]}
            answer = observe(client, "m", fields, FORMATS[i % 4])
            assert answer.status_code == 200, answer.text
            assert answer.json()["n_pending"] == int(hidden.sum())
        joined = client.post("/v1/monitors/m/labels", json={"ids": list(late), "labels": list(late.values())})
        assert joined.json()["joined"] == len(late)
        calibration, nll, nll_bits = _reference(client, key, values, labels)
        for closed in ("right", "left"):
            result, point = _only_point(client, "m", start, closed=closed)
            if closed == "right":
                _close(point["ece"], calibration["ece"])
                _close(point["mce"], calibration["mce"])
            else:
                left = client.post(
                    "/v1/calibration",
                    json={key: values.tolist(), "labels": labels.tolist(), "closed": "left"},
                ).json()["metrics"]
                _close(point["ece"], left["ece"])
        assert point["n"] == point["n_labelled"] == n
        _close(point["cross_entropy"], nll)
        _close(point["accuracy"], calibration["accuracy"])
        _close(point["brier"], calibration["brier"])
        if not binary:
            _close(point["mean_confidence"], calibration["mean_confidence"])
        _, bits = _only_point(client, "m", start, base="2")
        _close(bits["cross_entropy"], nll_bits)
        assert result["convention"]["target"] == ("positive_class" if binary else "top_label")


def test_series_points_equal_scoring_the_rows_of_each_step(tmp_path, rng):
    n, k = 300, 3
    logits = rng.standard_normal((n, k))
    labels = rng.integers(0, k, size=n)
    hour = 3600
    end = math.floor(time.time() / hour) * hour  # a whole hour ago, and before
    times = end - rng.uniform(1, 3 * hour - 1, size=n)
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/s", json={"n_classes": k})
        for rows in np.array_split(np.arange(n), 5):
            observe(
                client,
                "s",
                {"logits": logits[rows], "labels": labels[rows], "timestamps": times[rows]},
                "tensor",
            )
        result = client.get(
            "/v1/monitors/s/metrics", params={"from": end - 3 * hour, "to": end, "step": "1h"}
        ).json()
        assert [p["start"] for p in result["points"]] == [end - 3 * hour, end - 2 * hour, end - hour]
        for point in result["points"]:
            rows = (times >= point["start"]) & (times < point["end"])
            calibration, nll, _ = _reference(client, "logits", logits[rows], labels[rows])
            assert point["n"] == rows.sum()
            _close(point["ece"], calibration["ece"])
            _close(point["cross_entropy"], nll)
            _close(point["brier"], calibration["brier"])


def test_late_labels_fold_into_the_bucket_of_the_prediction(tmp_path, rng):
    logits = rng.standard_normal((6, 3))
    labels = rng.integers(0, 3, size=6)
    then = time.time() - 1800  # half an hour ago
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/late", json={"n_classes": 3, "bucket_s": 60})
        ids = [f"p{i}" for i in range(6)]
        observe(client, "late", {"logits": logits, "ids": ids, "timestamps": [then] * 6})
        before = client.get("/v1/monitors/late/metrics", params={"window": "1h", "step": "60"}).json()
        counted = [p for p in before["points"] if p["n"]]
        assert len(counted) == 1 and counted[0]["n_labelled"] == 0 and counted[0]["cross_entropy"] is None
        answer = client.post(
            "/v1/monitors/late/labels",
            json={"ids": [*ids[:4], "p0", "never-sent"], "labels": [*labels[:4].tolist(), 1, 0]},
        ).json()
        assert answer == {"monitor": "late", "joined": 4, "unknown": 1, "duplicate": 1, "expired": 0}
        after = client.get("/v1/monitors/late/metrics", params={"window": "1h", "step": "60"}).json()
        counted = [p for p in after["points"] if p["n"] or p["n_labelled"]]
        assert len(counted) == 1 and counted[0]["start"] == before_start(counted, then)
        assert counted[0]["n"] == 6 and counted[0]["n_labelled"] == 4
        expected = -scipy.special.log_softmax(logits[:4], axis=1)[np.arange(4), labels[:4]].mean()
        _close(counted[0]["cross_entropy"], expected)
        again = client.post("/v1/monitors/late/labels", json={"ids": ["p0"], "labels": [0]}).json()
        assert again["unknown"] == 1 and again["joined"] == 0


def before_start(points, then):
    start = math.floor(then / 60) * 60
    assert points[0]["start"] == start
    return start


def test_temperature_refit_matches_scipy_and_scales_expected_accuracy(tmp_path, rng):
    k, n = 4, 400
    logits = 3 * rng.standard_normal((n, k))  # over-confident: T > 1
    labels = np.array([rng.choice(k, p=p) for p in scipy.special.softmax(logits / 3, axis=1)])
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/t", json={"n_classes": k, "reservoir_size": 1000})
        observe(client, "t", {"logits": logits, "labels": labels}, "binary")
        fit = client.post("/v1/monitors/t/temperature", params={"window": "1h"}).json()

        def nll(t):
            return -scipy.special.log_softmax(logits / t, axis=1)[np.arange(n), labels].mean()

        best = scipy.optimize.minimize_scalar(
            nll, bounds=(0.05, 50), method="bounded", options={"xatol": 1e-10}
        )
        assert fit["n"] == n and fit["converged"]
        assert fit["temperature"] == pytest.approx(best.x, rel=1e-6)
        assert client.get("/v1/monitors/t").json()["temperature"] == fit["temperature"]
        client.put("/v1/monitors/t", json={"n_classes": k, "retention_s": 86400})  # an update keeps the fit
        assert client.get("/v1/monitors/t").json()["temperature"] == fit["temperature"]


def test_expected_accuracy_after_temperature(tmp_path, rng):
    k = 3
    train = 2 * rng.standard_normal((300, k))
    labels = rng.integers(0, k, size=300)
    fresh = 2 * rng.standard_normal((40, k))
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/e", json={"n_classes": k})
        observe(client, "e", {"logits": train, "labels": labels}, "json")
        t = client.post("/v1/monitors/e/temperature").json()["temperature"]
        future = time.time() + 120  # a bucket of its own
        observe(client, "e", {"logits": fresh, "timestamps": [future] * 40}, "npz")
        result = client.get(
            "/v1/monitors/e/metrics", params={"to": future + 60, "window": "120", "step": "60"}
        )
        point = [p for p in result.json()["points"] if p["n"]][-1]
        assert point["n"] == 40 and point["n_labelled"] == 0
        _close(point["mean_confidence"], scipy.special.softmax(fresh, axis=1).max(axis=1).mean())
        _close(
            point["expected_accuracy_calibrated"], scipy.special.softmax(fresh / t, axis=1).max(axis=1).mean()
        )


def test_drift_is_scipy_jensen_shannon_squared(tmp_path, rng):
    k = 4
    now = time.time()
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/d", json={"n_classes": k})
        ref_logits, cur_logits = rng.standard_normal((200, k)), rng.standard_normal((150, k)) + [0, 1, 0, 0]
        ref_labels, cur_labels = rng.integers(0, k, 200), rng.integers(0, 2, 150)
        observe(client, "d", {"logits": ref_logits, "labels": ref_labels, "timestamps": [now - 5400] * 200})
        observe(client, "d", {"logits": cur_logits, "labels": cur_labels, "timestamps": [now - 600] * 150})
        drift = client.get("/v1/monitors/d/drift", params={"window": "1h"}).json()
        assert drift["n"] == 150 and drift["n_reference"] == 200
        p, q = np.bincount(cur_labels, minlength=k), np.bincount(ref_labels, minlength=k)
        _close(drift["label_js"], jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2)
        p, q = np.bincount(cur_logits.argmax(1), minlength=k), np.bincount(ref_logits.argmax(1), minlength=k)
        _close(drift["predicted_js"], jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2)


def test_reliability_diagram_of_a_window(tmp_path, rng):
    logits = rng.standard_normal((100, 3))
    labels = rng.integers(0, 3, size=100)
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/r", json={"n_classes": 3})
        observe(client, "r", {"logits": logits, "labels": labels})
        svg = client.get("/v1/monitors/r/reliability-diagram", params={"n_bins": 10})
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        ece = client.post(
            "/v1/calibration", json={"logits": logits.tolist(), "labels": labels.tolist(), "n_bins": 10}
        ).json()["metrics"]["ece"]
        assert f"ece {ece:.4f}" in svg.text


def test_segments_are_queried_apart_and_together(tmp_path, rng):
    k = 3
    logits, labels = rng.standard_normal((90, k)), rng.integers(0, k, size=90)
    segment = np.array(["a", "b", "c"])[rng.integers(0, 3, size=90)]
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/seg", json={"n_classes": k})
        for name in ("a", "b", "c"):
            rows = segment == name
            observe(
                client, "seg", {"logits": logits[rows], "labels": labels[rows], "segment": name}, "tensor"
            )
        assert client.get("/v1/monitors/seg").json()["totals"]["segments"] == ["a", "b", "c"]
        for name in ("a", None):
            rows = segment == name if name else np.ones(90, bool)
            params = {"step": "2h"} | ({"segment": name} if name else {})
            _, point = _only_point(client, "seg", **params)
            calibration, nll, _ = _reference(client, "logits", logits[rows], labels[rows])
            assert point["n"] == rows.sum()
            _close(point["ece"], calibration["ece"])
            _close(point["cross_entropy"], nll)


def test_compaction_into_hours_keeps_every_hourly_value(tmp_path, rng):
    k, n = 4, 400
    logits, labels = rng.standard_normal((n, k)), rng.integers(0, k, size=n)
    hour = 3600
    end = math.floor(time.time() / hour) * hour - 2 * 86400  # two days ago: old enough to be coarsened
    times = end - rng.uniform(0, 3 * hour, size=n)
    params = {"from": end - 3 * hour, "to": end, "step": "1h", "n_bins": 20}
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/old", json={"n_classes": k})
        for rows in np.array_split(np.arange(n), 8):
            observe(
                client, "old", {"logits": logits[rows], "labels": labels[rows], "timestamps": times[rows]}
            )
        before = client.get("/v1/monitors/old/metrics", params=params).json()["points"]
        merged = client.app.state.monitors.get().compact(time.time())
        assert merged > 0
        after = client.get("/v1/monitors/old/metrics", params=params).json()["points"]
        for b, a in zip(before, after, strict=True):
            assert (a["n"], a["n_labelled"]) == (b["n"], b["n_labelled"])
            for key in ("cross_entropy", "accuracy", "brier", "ece", "mce", "mean_confidence"):
                _close(a[key], b[key])
