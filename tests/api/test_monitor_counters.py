"""The monitors' Prometheus counters (one process): their sums are the statistics of the rows recorded."""

import numpy as np
import pytest
import scipy.special
from prometheus_client.parser import text_string_to_metric_families

from .monitoring import monitor_client


def samples(text: str, monitor: str) -> dict[tuple[str, str], float]:
    """``{(sample name, bin or ""): value}`` of one monitor's series, summed over segments."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if (
                name.startswith("xent_monitor_")
                and name.endswith("_total")
                and sample.labels["monitor"] == monitor
            ):
                key = (name, sample.labels.get("bin", ""))
                out[key] = out.get(key, 0.0) + sample.value
    return out


def test_counters_add_up_ingested_and_late_labelled_rows(tmp_path, rng):
    n, k = 90, 3
    logits = 2 * rng.standard_normal((n, k))
    labels = rng.integers(0, k, size=n)
    late = rng.random(n) < 0.4
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": k})
        before = samples(client.get("/metrics").text, "m")
        assert (
            before[("xent_monitor_samples_total", "")] == 0
            and before[("xent_monitor_bin_count_total", "1.0")] == 0
        )
        sent = np.where(late, -1, labels)
        ids = [f"r{i}" if late[i] else None for i in range(n)]
        body = {"logits": logits.tolist(), "labels": sent.tolist(), "ids": ids, "segment": "v2"}
        assert client.post("/v1/monitors/m/observations", json=body).status_code == 200
        mid = samples(client.get("/metrics").text, "m")
        assert mid[("xent_monitor_labelled_total", "")] == n - late.sum()
        rows = np.flatnonzero(late)
        joined = client.post(
            "/v1/monitors/m/labels", json={"ids": [f"r{i}" for i in rows], "labels": labels[rows].tolist()}
        )
        assert joined.json()["joined"] == rows.size
        got = samples(client.get("/metrics").text, "m")
    # independently: scipy's softmax, equal-width bins closed on the right
    p = scipy.special.softmax(logits, axis=1)
    nll = scipy.special.logsumexp(logits, axis=1) - logits[np.arange(n), labels]
    conf, correct = p.max(1), (p.argmax(1) == labels).astype(float)
    onehot = np.eye(k)[labels]
    assert got[("xent_monitor_samples_total", "")] == n
    assert got[("xent_monitor_labelled_total", "")] == n
    assert got[("xent_monitor_correct_total", "")] == correct.sum()
    assert got[("xent_monitor_nll_nats_total", "")] == pytest.approx(nll.sum(), rel=1e-12)
    assert got[("xent_monitor_confidence_total", "")] == pytest.approx(conf.sum(), rel=1e-12)
    assert got[("xent_monitor_brier_total", "")] == pytest.approx(((p - onehot) ** 2).sum(), rel=1e-12)
    bins = np.clip(np.ceil(conf * 10).astype(int) - 1, 0, 9)
    for b in range(10):
        edge = f"{(b + 1) / 10:.1f}"
        inside = bins == b
        assert got[("xent_monitor_bin_count_total", edge)] == inside.sum()
        assert got[("xent_monitor_bin_confidence_total", edge)] == pytest.approx(
            conf[inside].sum(), rel=1e-12
        )
        assert got[("xent_monitor_bin_correct_total", edge)] == correct[inside].sum()


def test_language_model_counters_add_up_the_sequences_written_once(tmp_path, rng):
    """Chat completions with bytes, then B×T×K logits without: sums against scipy and the logprobs sent."""
    b, t, k = 5, 7, 9
    logits = 2 * rng.standard_normal((b, t, k))
    labels = rng.integers(0, k, size=(b, t))
    lp = rng.uniform(-5.0, -0.1, size=12)
    n_bytes = rng.integers(1, 6, size=12)
    tokens = [
        {"token": "x", "logprob": float(v), "bytes": [120] * int(n)} for v, n in zip(lp, n_bytes, strict=True)
    ]
    docs = [
        {"choices": [{"logprobs": {"content": tokens[:4]}}]},
        {"choices": [{"logprobs": {"content": tokens[4:]}}]},
    ]
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/lm", json={"n_classes": 2})
        before = samples(client.get("/metrics").text, "lm")
        assert (
            before[("xent_monitor_lm_tokens_total", "")] == 0 == before[("xent_monitor_lm_bytes_total", "")]
        )
        headers = {"Idempotency-Key": "chat-1"}
        for _ in range(2):  # the retry replays and counts nothing
            answer = client.post("/v1/monitors/lm/sequences", json={"responses": docs}, headers=headers)
            assert answer.status_code == 200, answer.text
        body = {"logits": logits.tolist(), "labels": labels.tolist(), "segment": "v2"}
        assert client.post("/v1/monitors/lm/sequences", json=body).status_code == 200
        got = samples(client.get("/metrics").text, "lm")
    nll = -scipy.special.log_softmax(logits, axis=-1)[np.arange(b)[:, None], np.arange(t), labels]
    assert got[("xent_monitor_lm_sequences_total", "")] == 2 + b
    assert got[("xent_monitor_lm_tokens_total", "")] == 12 + b * t
    assert got[("xent_monitor_lm_nll_nats_total", "")] == pytest.approx(nll.sum() - lp.sum(), rel=1e-12)
    assert got[("xent_monitor_lm_bytes_total", "")] == n_bytes.sum()  # the logits brought none
    assert got[("xent_monitor_lm_byte_nll_nats_total", "")] == pytest.approx(-lp.sum(), rel=1e-12)
    assert got[("xent_monitor_lm_words_total", "")] == 0 == got[("xent_monitor_lm_word_nll_nats_total", "")]


def test_an_event_loop_s_increments_are_held_then_added_within_flush_s():
    import asyncio

    from prometheus_client import CollectorRegistry

    from service.core import Distribution, MonitorStats
    from service.monitors.counters import FLUSH_S, MonitorCounters

    registry = CollectorRegistry()
    counters = MonitorCounters(registry)
    stats = MonitorStats.summarise(Distribution.from_logits(np.array([[2.0, 0.0], [0.0, 1.0]])), [0, 0])
    labels = {"monitor": "m", "segment": "s"}

    def value(name: str) -> float | None:
        return registry.get_sample_value(name, labels)

    async def run() -> list[float | None]:
        counters.add("m", [("s", stats)])
        counters.add("m", [("s", stats)])
        seen = [value("xent_monitor_samples_total")]  # held: not added yet
        await asyncio.sleep(3 * FLUSH_S)
        seen.append(value("xent_monitor_samples_total"))
        counters.add("m", [("s", stats)])
        counters.flush()  # a scrape adds what is held at once
        seen += [value("xent_monitor_samples_total"), value("xent_monitor_correct_total")]
        await asyncio.sleep(3 * FLUSH_S)  # the timer finds nothing more to add
        return [*seen, value("xent_monitor_samples_total")]

    assert asyncio.run(run()) == [None, 4.0, 6.0, 3.0, 6.0]


def test_the_increments_of_statistics_held_together_are_their_increments_added_one_by_one(rng):
    from service.core import Distribution, MonitorStats
    from service.monitors.counters import _values

    rows = []
    for k, n in ((4, 30), (4, 1), (4, 200), (4, 7)):
        logits = 3 * rng.standard_normal((n, k))
        labels = np.where(rng.random(n) < 0.3, -1, rng.integers(0, k, n)) if n > 1 else None
        rows.append(MonitorStats.summarise(Distribution.from_logits(logits), labels))
    alone = sum(_values([stats]) for stats in rows)
    together = _values(rows)
    assert together[[0, 2, 4]].tolist() == alone[[0, 2, 4]].tolist()  # counts: exact
    assert together[6:16].tolist() == alone[6:16].tolist() and together[26:].tolist() == alone[26:].tolist()
    np.testing.assert_allclose(together, alone, rtol=1e-13, atol=0)


def test_bin_sums_of_several_histograms_equal_one_bincount_over_all_their_cells(rng):
    """Runs of one bin are added along the cells, in any order of cells (`_coarse_sums`)."""
    from service.core.monitoring.fine_histogram import N_CELLS, FineHistogram, coarse_table
    from service.monitors.counters import N_BINS, _coarse_sums

    hists = []
    for size in (40, 1, 0, 300, 5):
        cells = np.sort(rng.choice(N_CELLS, size, replace=False))
        count = rng.integers(1, 5, size)
        hists.append(FineHistogram(cells, count, rng.random(size) * count, rng.integers(0, 2, size) * 1.0))
    unsorted = np.array([5040, 0, 2520])
    hists.append(FineHistogram(unsorted, np.array([1, 2, 3]), np.ones(3), np.ones(3)))
    cells = np.concatenate([h.cells for h in hists])
    index = coarse_table(N_BINS, "right")[cells]
    expected = [
        np.bincount(index, weights=np.concatenate([getattr(h, name) for h in hists]), minlength=N_BINS)
        for name in ("weights", "conf", "hits")
    ]
    got = _coarse_sums(hists)
    assert got[:N_BINS].tolist() == expected[0].tolist()  # counts: exact
    assert got[2 * N_BINS :].tolist() == expected[2].tolist()  # outcomes (0/1): exact
    np.testing.assert_allclose(got[N_BINS : 2 * N_BINS], expected[1], rtol=1e-14, atol=0)
    assert _coarse_sums([FineHistogram.empty()]).tolist() == [0.0] * (3 * N_BINS)


def test_a_thread_s_increments_are_held_for_the_bound_loop_and_added_by_its_timer():
    import asyncio
    import threading

    from prometheus_client import CollectorRegistry

    from service.core import Distribution, MonitorStats
    from service.monitors.counters import FLUSH_S, MonitorCounters

    registry = CollectorRegistry()
    counters = MonitorCounters(registry)
    stats = MonitorStats.summarise(Distribution.from_logits(np.array([[2.0, 0.0], [0.0, 1.0]])), [0, 0])

    def value() -> float | None:
        return registry.get_sample_value("xent_monitor_samples_total", {"monitor": "m", "segment": "s"})

    def from_thread() -> None:
        thread = threading.Thread(target=counters.add, args=("m", [("s", stats)]))
        thread.start()
        thread.join()

    async def run() -> list[float | None]:
        counters.bind(asyncio.get_running_loop())
        from_thread()
        seen = [value()]  # held for the loop: nothing added by the thread
        counters.flush()  # a scrape right after the answer, the loop not run since: held already
        seen.append(value())
        from_thread()
        await asyncio.sleep(FLUSH_S * 4)  # the window's timer, started on the loop, adds them
        seen.append(value())
        counters.bind(None)
        from_thread()  # unbound: added at once
        return [*seen, value()]

    assert asyncio.run(run()) == [None, 2.0, 4.0, 6.0]


def test_a_write_committed_in_a_thread_is_counted_by_the_scrape_that_follows_its_answer(tmp_path, rng):
    from service.client.encoding import encode_binary

    n, k = 5_000, 4  # a body past the on-loop bound: prepared and committed in the scoring pool
    logits = rng.standard_normal((n, k)).astype(np.float32)
    labels = rng.integers(0, k, n)
    encoded = encode_binary({"logits": logits, "labels": labels})
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": k})
        for i in range(1, 6):
            answer = client.post(
                "/v1/monitors/m/observations", content=encoded.content, headers=encoded.headers
            )
            assert answer.status_code == 200, answer.text
            got = samples(client.get("/metrics").text, "m")
            assert got[("xent_monitor_samples_total", "")] == i * n
            assert got[("xent_monitor_labelled_total", "")] == i * n
    nll = -scipy.special.log_softmax(logits.astype(np.float64), axis=1)[np.arange(n), labels]
    assert got[("xent_monitor_nll_nats_total", "")] == pytest.approx(5 * nll.sum(), rel=1e-6)
