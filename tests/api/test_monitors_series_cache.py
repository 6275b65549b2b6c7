"""The series path keeps each stored blob's sums between queries: still exactly the scoring routes' values.

Every check runs on SQLite and on PostgreSQL, with the cache on (the default) and the same app
answering before and after late labels, compaction and segment filters change the rows.
"""

import math
import time

import numpy as np
import pytest

from service.monitors.sums_cache import SumsCache

from .monitoring import monitor_client, observe

RTOL = 1e-12
HOUR = 3600


def _close(a, b):
    assert a == pytest.approx(b, rel=RTOL, abs=1e-15)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("postgres_url")}


def _check(client, name, params, logits, labels, times, segments, segment=None):
    """Each point equals /v1/calibration and /v1/cross-entropy on the labelled rows of its step."""
    answer = client.get(
        f"/v1/monitors/{name}/metrics", params={**params, **({"segment": segment} if segment else {})}
    )
    assert answer.status_code == 200, answer.text
    mine = np.ones(len(times), bool) if segment is None else segments == segment
    for point in answer.json()["points"]:
        step = mine & (times >= point["start"]) & (times < point["end"])
        labelled = step & (labels >= 0)
        assert (point["n"], point["n_labelled"]) == (step.sum(), labelled.sum())
        if not labelled.any():
            assert point["cross_entropy"] is None
            continue
        fields = {"logits": logits[labelled].tolist(), "labels": labels[labelled].tolist()}
        calibration = client.post("/v1/calibration", json={**fields, "n_bins": params["n_bins"]}).json()
        ce = client.post("/v1/cross-entropy", json=fields).json()["loss"]
        _close(point["cross_entropy"], ce)
        for key in ("ece", "mce", "brier", "accuracy"):
            _close(point[key], calibration["metrics"][key])
    return answer.json()["points"]


def test_late_labels_compaction_and_segments_after_cached_answers(tmp_path, rng, backend):
    k, n = 4, 240
    logits = 2 * rng.standard_normal((n, k))
    labels = rng.integers(0, k, size=n)
    segments = np.array(["a", "b"])[rng.integers(0, 2, size=n)]
    end = math.floor(time.time() / HOUR) * HOUR
    times = end - rng.uniform(1, 3 * HOUR - 1, size=n)
    late = rng.random(n) < 0.4  # sent without labels, labelled after the first answers
    ids = np.array([f"r{i}" for i in range(n)])
    params = {"from": end - 3 * HOUR, "to": end, "step": "1h", "n_bins": 12}
    with monitor_client(tmp_path, **backend) as client:
        client.put("/v1/monitors/c", json={"n_classes": k, "bucket_s": 60})
        for name in ("a", "b"):
            for rows in np.array_split(np.flatnonzero(segments == name), 4):
                sent = np.where(late[rows], -1, labels[rows])
                fields = {"logits": logits[rows], "labels": sent, "timestamps": times[rows]}
                fields |= {"ids": ids[rows].tolist(), "segment": name}
                assert observe(client, "c", fields, "tensor").status_code == 200
        known = np.where(late, -1, labels)
        for _ in range(2):  # the second answer comes from the cache: the same values
            _check(client, "c", params, logits, known, times, segments)
        cache: SumsCache = client.app.state.monitor_sums_cache
        held = len(cache)
        _check(client, "c", params, logits, known, times, segments)
        assert len(cache) == held > 0  # nothing new to decode

        joined = client.post(
            "/v1/monitors/c/labels", json={"ids": ids[late].tolist(), "labels": labels[late].tolist()}
        )
        assert joined.json()["joined"] == late.sum()
        _check(client, "c", params, logits, labels, times, segments)  # old buckets gained rows
        for segment in ("a", "b"):
            _check(client, "c", params, logits, labels, times, segments, segment)

        _check_window(client, "c", end - 3 * HOUR, end, logits, labels, segments, "a")
        held = client.get("/v1/monitors/c").json()["totals"]  # every row, from the same cached sums
        everything = {"logits": logits.tolist(), "labels": labels.tolist()}
        assert (held["n"], held["n_labelled"]) == (n, n)
        _close(held["cross_entropy"], client.post("/v1/cross-entropy", json=everything).json()["loss"])
        _close(
            held["accuracy"], client.post("/v1/calibration", json=everything).json()["metrics"]["accuracy"]
        )
        assert held["first_bucket"] == min(times) // 60 * 60 and held["last_bucket"] == max(times) // 60 * 60

        assert client.app.state.monitors.get().compact(time.time()) > 0  # rows of a bucket merged
        _check(client, "c", params, logits, labels, times, segments)
        _check(client, "c", params, logits, labels, times, segments, "b")
        _check_window(client, "c", end - 3 * HOUR, end, logits, labels, segments, None)


def _check_window(client, name, start, end, logits, labels, segments, segment):
    """The window's reliability bins and caption equal /v1/calibration's on its rows (and merge_stats')."""
    from service.core import merge_stats
    from service.monitors import query

    store = client.app.state.monitors.get()
    config = store.get_monitor(name)
    cache = client.app.state.monitor_sums_cache
    summary = query.window_summary(store, config, start, end, segment, n_bins=12, closed="left", cache=cache)
    mine = np.ones(len(labels), bool) if segment is None else segments == segment
    fields = {"logits": logits[mine].tolist(), "labels": labels[mine].tolist()}
    reference = client.post("/v1/calibration", json={**fields, "n_bins": 12, "closed": "left"}).json()
    bins = reference["reliability"][0]
    rel = summary.reliability
    np.testing.assert_array_equal(rel.count, bins["count"])
    for key in ("confidence", "accuracy", "wilson_low", "wilson_high"):
        want = np.array([np.nan if v is None else v for v in bins[key]])
        np.testing.assert_allclose(getattr(rel, key), want, rtol=RTOL, atol=1e-15)
    _close(summary.metrics.ece[0], reference["metrics"]["ece"])
    _close(summary.metrics.mce[0], reference["metrics"]["mce"])
    rows = [r for r in store.read_stats(name, start, end) if segment in (None, r[1])]
    merged = merge_stats([r[2] for r in rows]).reliability(12, closed="left")
    np.testing.assert_allclose(rel.confidence, merged.confidence, rtol=RTOL, atol=1e-15)
    svg = client.get(
        f"/v1/monitors/{name}/reliability-diagram",
        params={"window": "4h", **({"segment": segment} if segment else {})},
    )
    assert svg.status_code == 200 and f"N = {mine.sum()} labelled" in svg.text


@pytest.mark.parametrize("cache_mb", [0.002, 0])  # ~2 KB: a few blobs; 0: no cache (summed per point)
def test_a_cache_too_small_for_the_window_evicts_and_stays_exact(tmp_path, rng, cache_mb):
    k, n = 3, 120
    logits, labels = rng.standard_normal((n, k)), rng.integers(0, k, size=n)
    end = math.floor(time.time() / HOUR) * HOUR
    times = end - rng.uniform(1, 2 * HOUR - 1, size=n)
    params = {"from": end - 2 * HOUR, "to": end, "step": "30m", "n_bins": 10}
    with monitor_client(tmp_path, monitor_cache_mb=cache_mb) as client:
        client.put("/v1/monitors/s", json={"n_classes": k})
        for rows in np.array_split(np.arange(n), 12):
            observe(client, "s", {"logits": logits[rows], "labels": labels[rows], "timestamps": times[rows]})
        for _ in range(2):
            _check(client, "s", params, logits, labels, times, None)
        cache: SumsCache = client.app.state.monitor_sums_cache
        assert cache.size <= cache.max_bytes and len(cache) < 12


def test_sums_of_each_blob_add_up_to_the_sums_of_the_union(rng):
    from service.core import Distribution, MonitorStats, merge_stats

    blobs = [
        MonitorStats.summarise(
            Distribution.from_logits(rng.standard_normal((m, 5))), rng.integers(-1, 5, m)
        ).to_bytes()
        for m in rng.integers(1, 30, size=20)
    ]
    cache = SumsCache(1 << 20)
    first = cache.sums(blobs[:12], n_bins=20, closed="left")
    both = cache.sums(blobs, n_bins=20, closed="left")
    assert (first.decoded, both.decoded) == (12, 8)
    np.testing.assert_array_equal(both.rows[:12], first.rows)
    from service.core.monitoring.series import sums_metrics

    m = sums_metrics(both.rows.sum(axis=0, keepdims=True), 20, n_classes=5, binary=False)
    s = merge_stats(blobs)
    assert (m.n[0], m.n_labelled[0]) == (s.n_predictions, s.n_labelled)
    _close(m.ece[0], s.calibration_errors(20, closed="left")["ece"])
    _close(m.cross_entropy[0], s.cross_entropy())
    _close(m.brier[0], s.brier())


def test_blobs_of_different_k_do_not_add_up_even_when_one_is_cached(rng):
    from service.core import Distribution, InputError, MonitorStats

    def blob(k):
        return MonitorStats.summarise(
            Distribution.from_logits(rng.standard_normal((3, k))), [0, 1, 0]
        ).to_bytes()

    cache = SumsCache(1 << 20)
    three, four = blob(3), blob(4)
    cache.sums([three], n_bins=15, closed="right")
    with pytest.raises(InputError, match="share K"):
        cache.sums([three, four], n_bins=15, closed="right")


def test_repeated_blobs_and_two_binnings_share_one_budget(rng):
    """A blob listed twice is decoded and held once; each binning's rows equal ``group_sums``'."""
    from service.core import Distribution, MonitorStats
    from service.core.monitoring.series import group_sums

    blobs = [
        MonitorStats.summarise(
            Distribution.from_logits(rng.standard_normal((m, 4))), rng.integers(0, 4, m)
        ).to_bytes()
        for m in rng.integers(1, 20, size=10)
    ]
    asked = [*blobs, blobs[3], blobs[0]]  # two repeats
    cache = SumsCache(1 << 20)
    for n_bins, closed in ((15, "right"), (12, "left")):
        got = cache.sums(asked, n_bins=n_bins, closed=closed)
        want = group_sums(asked, np.arange(len(asked)), len(asked), n_bins=n_bins, closed=closed)
        np.testing.assert_array_equal(got.rows, want.table)
        assert (got.decoded, got.n_classes, got.binary) == (len(asked), 4, False)
        again = cache.sums(asked[::-1], n_bins=n_bins, closed=closed)
        np.testing.assert_array_equal(again.rows, want.table[::-1])
        assert again.decoded == 0
    assert len(cache) == 2 * len(blobs)
    row_bytes = 8 * (8 + 4 * 15 + 1) + 8 * (8 + 4 * 12 + 1)  # the sums and the kind column
    assert cache.size == 2 * sum(map(len, blobs)) + len(blobs) * (row_bytes + 2 * 200)
    small = SumsCache(cache.size // 2)  # room for about half: the oldest go, the answer stays exact
    for n_bins, closed in ((15, "right"), (12, "left")):
        got = small.sums(asked, n_bins=n_bins, closed=closed)
        want = group_sums(asked, np.arange(len(asked)), len(asked), n_bins=n_bins, closed=closed)
        np.testing.assert_array_equal(got.rows, want.table)
        assert 0 < small.size <= small.max_bytes
