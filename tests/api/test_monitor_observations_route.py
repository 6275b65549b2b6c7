"""The observations route: a small batch held up by another thread waits on the loop; binary bodies' keys."""

import threading
import time

import numpy as np
import scipy.special

from service.api.routes import monitor_observations

from .monitoring import body, monitor_client, observe


def test_a_small_batch_waits_on_the_loop_for_a_thread_of_this_process(tmp_path, rng, monkeypatch):
    pooled = []
    real = monitor_observations.in_pool

    def counted(request, work):  # the real pool, counted
        pooled.append(1)
        return real(request, work)

    monkeypatch.setattr(monitor_observations, "in_pool", counted)
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 3}).raise_for_status()
        store = client.app.state.monitors.get()
        started, release = threading.Event(), threading.Event()

        def slow(cur):  # another thread's write (a large batch, late labels) holding the lock
            started.set()
            release.wait(5)
            cur.execute("SELECT 1").fetchall()

        thread = threading.Thread(target=store.group_commit.run, args=(slow,))
        thread.start()
        started.wait(5)
        timer = threading.Timer(0.3, release.set)
        timer.start()
        fields = {"logits": rng.standard_normal((4, 3)), "labels": rng.integers(0, 3, 4)}
        try:
            start = time.monotonic()
            answer = observe(client, "m", fields)
            waited = time.monotonic() - start
        finally:
            release.set()
            thread.join()
            timer.join()
        assert answer.status_code == 200, answer.text
        assert waited >= 0.25  # written once the other write let go
        assert pooled == []  # and not by a thread of its own
        totals = client.get("/v1/monitors/m").json()["totals"]
        expected = -scipy.special.log_softmax(fields["logits"], axis=1)[np.arange(4), fields["labels"]].mean()
        assert totals["n"] == 4
        np.testing.assert_allclose(totals["cross_entropy"], expected, rtol=1e-12)


def test_a_small_batch_waits_on_the_loop_no_longer_than_the_stores_busy_timeout(tmp_path, rng):
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 3}).raise_for_status()
        store = client.app.state.monitors.get()
        store.group_commit.timeout_s = 0.2  # (5 s by default)
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store._writer:  # a long write of this process (a compaction)
                held.set()
                release.wait(10)

        thread = threading.Thread(target=hold)
        thread.start()
        held.wait(5)
        fields = {"logits": rng.standard_normal((4, 3)), "labels": rng.integers(0, 3, 4)}
        try:
            start = time.monotonic()
            answer = observe(client, "m", fields)
            waited = time.monotonic() - start
        finally:
            release.set()
            thread.join()
        assert answer.status_code == 503, answer.text  # as a write waiting in the pool would get
        assert "locked" in answer.json()["detail"]
        assert 0.35 <= waited < 3  # the timeout on the loop, then in the pool
        assert client.get("/v1/monitors/m").json()["totals"]["n"] == 0


def test_a_binary_body_resent_with_its_key_replays_wherever_its_buffer_lies(tmp_path, rng):
    """Parsing moves a binary body's tensors in place to align them, by an amount that depends on
    where its buffer happens to lie: the key's fingerprint is of the bytes as sent."""
    fields = {"logits": rng.standard_normal((32, 4)), "labels": rng.integers(0, 4, 32)}
    content, headers = body(fields, "binary")
    headers = {**headers, "Idempotency-Key": "k"}
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 4}).raise_for_status()
        first = client.post("/v1/monitors/m/observations", content=content, headers=headers)
        assert first.status_code == 200, first.text
        kept = []
        for size in range(1, 25):  # buffers of other sizes in between: the next body lies elsewhere
            kept.append(bytearray(size * 40))
            again = client.post("/v1/monitors/m/observations", content=content, headers=headers)
            assert again.status_code == 200, again.text
            assert again.headers["idempotent-replayed"] == "true"
            assert again.content == first.content
        assert client.get("/v1/monitors/m").json()["totals"]["n"] == 32
