"""The observations route's fast path: a cached config the store checks, and small writes on the event loop.

Another store on the same file stands for another worker process or replica changing a monitor
between two batches: the route's cached config must never decide what is written or refused.
"""

import sqlite3
import threading
import time

import numpy as np
import scipy.special

from service.monitors import TEMPERED
from service.store import DATABASE_FILE, MonitorConfig, SqliteStore

from ..conftest import assert_problem
from .monitoring import monitor_client, observe


def other_store(tmp_path) -> SqliteStore:
    """The same database through a store of its own (another process's view)."""
    return SqliteStore(tmp_path / DATABASE_FILE, merge=lambda blobs: blobs[0])


def batch(rng, n: int, k: int) -> dict[str, np.ndarray]:
    return {"logits": rng.standard_normal((n, k)), "labels": rng.integers(0, k, n)}


def test_a_monitor_recreated_elsewhere_with_another_k_takes_its_batches(tmp_path, rng):
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 3}).raise_for_status()
        assert observe(client, "m", batch(rng, 8, 3)).status_code == 200  # the config is cached now
        other = other_store(tmp_path)
        try:
            assert other.delete_monitor("m")
            other.put_monitor(MonitorConfig("m", n_classes=4, binary=False, class_names=None))
        finally:
            other.close()
        fields = batch(rng, 8, 4)
        answer = observe(client, "m", fields)
        assert answer.status_code == 200, answer.text
        assert answer.json()["n"] == 8
        totals = client.get("/v1/monitors/m").json()["totals"]
        expected = -scipy.special.log_softmax(fields["logits"], axis=1)[np.arange(8), fields["labels"]].mean()
        np.testing.assert_allclose(totals["cross_entropy"], expected, rtol=1e-12)
        assert_problem(observe(client, "m", batch(rng, 8, 3)), 422, match="must be N×4")


def test_a_temperature_fitted_elsewhere_is_applied_to_the_next_batch(tmp_path, rng):
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 3}).raise_for_status()
        assert observe(client, "m", batch(rng, 8, 3)).status_code == 200
        store = client.app.state.monitors.get()
        assert TEMPERED not in store.segments("m")
        other = other_store(tmp_path)
        try:
            other.set_temperature("m", 2.0)
        finally:
            other.close()
        assert observe(client, "m", batch(rng, 8, 3)).status_code == 200
        assert TEMPERED in store.segments("m")  # written with the stored temperature, not the cached none


def test_a_longer_retention_set_elsewhere_admits_older_timestamps(tmp_path, rng):
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 3, "retention_s": 3600}).raise_for_status()
        assert observe(client, "m", batch(rng, 4, 3)).status_code == 200
        other = other_store(tmp_path)
        try:
            longer = MonitorConfig("m", n_classes=3, binary=False, class_names=None, retention_s=86400)
            other.put_monitor(longer)
        finally:
            other.close()
        fields = {**batch(rng, 4, 3), "timestamps": np.full(4, time.time() - 7200)}
        answer = observe(client, "m", fields)
        assert answer.status_code == 200, answer.text


def test_a_monitor_deleted_elsewhere_is_404_then_recreated_takes_batches(tmp_path, rng):
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 3}).raise_for_status()
        assert observe(client, "m", batch(rng, 4, 3)).status_code == 200
        other = other_store(tmp_path)
        try:
            assert other.delete_monitor("m")
            assert_problem(observe(client, "m", batch(rng, 4, 3)), 404, match="no monitor named 'm'")
            other.put_monitor(MonitorConfig("m", n_classes=3, binary=False, class_names=None))
        finally:
            other.close()
        assert observe(client, "m", batch(rng, 4, 3)).status_code == 200
        assert client.get("/v1/monitors/m").json()["totals"]["n"] == 4


def test_a_small_batch_waits_in_the_pool_while_another_process_writes(tmp_path, rng):
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 3}).raise_for_status()
        locker = sqlite3.connect(tmp_path / DATABASE_FILE, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN IMMEDIATE")  # the event loop must not wait for this: the pool does
        timer = threading.Timer(0.3, lambda: (locker.execute("ROLLBACK"), locker.close()))
        timer.start()
        try:
            start = time.monotonic()
            answer = observe(client, "m", batch(rng, 4, 3))
            waited = time.monotonic() - start
        finally:
            timer.join()
        assert answer.status_code == 200, answer.text
        assert waited >= 0.25  # committed after the other writer let go, not before
        assert client.get("/v1/monitors/m").json()["totals"]["n"] == 4


def test_a_small_batch_waits_in_the_pool_while_another_thread_writes(tmp_path, rng):
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 3}).raise_for_status()
        store = client.app.state.monitors.get()
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store._writer:  # a write of this process in progress (a large batch, a compaction)
                held.set()
                release.wait(5)

        thread = threading.Thread(target=hold)
        thread.start()
        held.wait(5)
        threading.Timer(0.3, release.set).start()
        try:
            answer = observe(client, "m", batch(rng, 4, 3))
        finally:
            release.set()
            thread.join()
        assert answer.status_code == 200, answer.text
        assert client.get("/v1/monitors/m").json()["totals"]["n"] == 4
