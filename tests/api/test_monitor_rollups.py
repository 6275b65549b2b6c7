"""A series read through hourly rollups equals the scoring routes on its rows, and the raw-row read.

On SQLite and PostgreSQL: rows over 30 hours in two segments, 40 % of them labelled late (their
rows land in old, already rolled-up hours), then roll-up, compaction (minutes older than a day
into hours) and steps on and off the hours' grid. Each point equals POST /v1/calibration and
/v1/cross-entropy on the labelled rows of its step (tests/api/test_monitors_series_cache.py's
check), and equals the same series read from the raw rows only.
"""

import math
import time

import numpy as np
import pytest

from service.monitors import query

from .monitoring import monitor_client, observe
from .test_monitors_series_cache import _check, _close

HOUR = 3600


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("postgres_url")}


class RawRows:
    """The store with rollups switched off: every series reads raw rows."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def read_hours(self, name, start, end, step, digests=False):
        return None


def _same_as_raw(client, name, start, end, step):
    """The series through rollups (their blobs with 12 bins, their stored digests with the default
    15) equals the one over raw rows, point by point; the rows it read with the default binning."""
    store = client.app.state.monitors.get()
    config = store.get_monitor(name)
    for n_bins in (12, 15):
        rolled = query.series(store, config, start, end, step, None, n_bins=n_bins)
        raw = query.series(RawRows(store), config, start, end, step, None, n_bins=n_bins)
        assert rolled.starts == raw.starts
        for field in ("n", "n_labelled"):
            np.testing.assert_array_equal(getattr(rolled.metrics, field), getattr(raw.metrics, field))
        for field in ("cross_entropy", "accuracy", "brier", "ece", "mce", "mean_confidence"):
            want = getattr(raw.metrics, field)
            np.testing.assert_allclose(getattr(rolled.metrics, field), want, rtol=1e-12, atol=1e-15)
    for n_bins, closed in ((15, "right"), (12, "left")):  # a window's bins: the dashboard's diagram
        window = query.window_summary(store, config, start, end, None, n_bins=n_bins, closed=closed)
        plain = query.window_summary(RawRows(store), config, start, end, None, n_bins=n_bins, closed=closed)
        np.testing.assert_array_equal(window.reliability.count, plain.reliability.count)
        for field in ("confidence", "accuracy", "wilson_low", "wilson_high"):
            got, want = getattr(window.reliability, field), getattr(plain.reliability, field)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(window.metrics.ece, plain.metrics.ece, rtol=1e-12, atol=1e-15)
    return store.read_hours(name, start, end, step, digests=True)


def test_rollups_equal_the_scoring_routes_and_raw_rows(tmp_path, rng, backend):
    k, n = 4, 600
    logits = 2 * rng.standard_normal((n, k))
    labels = rng.integers(0, k, size=n)
    segments = np.array(["a", "b"])[rng.integers(0, 2, size=n)]
    now = time.time()
    start = math.floor(now / HOUR) * HOUR - 30 * HOUR
    times = rng.uniform(start, now - 1, size=n)
    late = rng.random(n) < 0.4
    ids = np.array([f"r{i}" for i in range(n)])
    hourly = {"from": start, "to": now, "step": "1h", "n_bins": 12}
    off_grid = {"from": start + 600, "to": now, "step": "90m", "n_bins": 12}
    with monitor_client(tmp_path, compaction_interval_s=86_400, **backend) as client:
        client.put("/v1/monitors/c", json={"n_classes": k, "bucket_s": 60})
        for name in ("a", "b"):
            for rows in np.array_split(np.flatnonzero(segments == name), 6):
                sent = np.where(late[rows], -1, labels[rows])
                fields = {"logits": logits[rows], "labels": sent, "timestamps": times[rows]}
                fields |= {"ids": ids[rows].tolist(), "segment": name}
                assert observe(client, "c", fields, "tensor").status_code == 200
        store = client.app.state.monitors.get()
        known = np.where(late, -1, labels)
        _check(client, "c", hourly, logits, known, times, segments)  # nothing rolled up: raw rows

        assert store.roll_up(now) > 0
        for params in (hourly, off_grid):
            _check(client, "c", params, logits, known, times, segments)
        end = math.ceil(now / 60) * 60
        read = _same_as_raw(client, "c", start, end, HOUR)
        assert len(read.digests) == 2 * 30  # one digest per whole hour and segment, no blob
        assert len(read.rows) == len(store.read_stats("c", start + 30 * HOUR, end))  # the last hour's
        for params in (hourly, off_grid):  # the default 15 bins: the digests
            _check(client, "c", {**params, "n_bins": 15}, logits, known, times, segments)

        joined = client.post(
            "/v1/monitors/c/labels", json={"ids": ids[late].tolist(), "labels": labels[late].tolist()}
        )
        assert joined.json()["joined"] == late.sum()  # into old, rolled-up hours: read raw
        for params in (hourly, off_grid):
            _check(client, "c", params, logits, labels, times, segments)
        _same_as_raw(client, "c", start, end, HOUR)
        _same_as_raw(client, "c", start + 600, end, 5400)

        assert store.compact(time.time()) > 0  # rolls the late rows up, merges rows, coarsens old hours
        for params in (hourly, {**hourly, "step": "1d"}, {**hourly, "n_bins": 15}):  # (not 90 min:
            _check(client, "c", params, logits, labels, times, segments)  # it would cut hourly rows)
        _check(client, "c", hourly, logits, labels, times, segments, "b")
        _check(client, "c", {**hourly, "n_bins": 15}, logits, labels, times, segments, "a")
        _same_as_raw(client, "c", start, end, HOUR)
        _same_as_raw(client, "c", start, end, 2 * HOUR)
        _same_as_raw(client, "c", start + 600, end, 5400)

        held = client.get("/v1/monitors/c").json()["totals"]
        everything = {"logits": logits.tolist(), "labels": labels.tolist()}
        assert (held["n"], held["n_labelled"]) == (n, n)
        _close(held["cross_entropy"], client.post("/v1/cross-entropy", json=everything).json()["loss"])


@pytest.mark.parametrize("binary", [True, False])
def test_a_binary_monitor_through_stored_sums_equals_raw_rows(tmp_path, rng, binary):
    """The positive-class target of a binary monitor's digests, and the temperature-scaled rows."""
    n = 400
    values = 3 * rng.standard_normal(n if binary else (n, 3))
    labels = rng.integers(0, 2 if binary else 3, size=n)
    now = time.time()
    start = math.floor(now / HOUR) * HOUR - 6 * HOUR
    times = rng.uniform(start, now - 1, size=n)
    with monitor_client(tmp_path, compaction_interval_s=86_400) as client:
        client.put("/v1/monitors/p", json={"binary": True} if binary else {"n_classes": 3})
        for rows in np.array_split(np.arange(n), 8):
            fields = {"logits": values[rows], "labels": labels[rows], "timestamps": times[rows]}
            assert observe(client, "p", fields).status_code == 200
        store = client.app.state.monitors.get()
        assert store.roll_up(now) == len(store.read_stats("p", 0, 2**40))
        end = math.ceil(now / 60) * 60
        assert len(_same_as_raw(client, "p", start, end, HOUR).digests) == 6
        fields = {"logits": values.tolist(), "labels": labels.tolist()}  # (binary: 1-D logits)
        reference = client.post("/v1/calibration", json=fields).json()["metrics"]
        answer = client.get("/v1/monitors/p/metrics", params={"from": start, "to": now})  # one point
        (point,) = answer.json()["points"]
        assert point["n_labelled"] == n
        for key in ("ece", "brier", "accuracy"):
            _close(point[key], reference[key])
