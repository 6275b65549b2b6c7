"""Scratch buffers lent by the calling thread (service.core.scratch): reused, never shared."""

import threading

import numpy as np

from service.core import scratch
from service.core.logsumexp import softmax_summary
from service.core.monitoring.softmax_rows import RowsPass


def address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def test_a_buffer_given_back_is_lent_again_to_the_thread():
    with scratch.borrowed((1000, np.float32), (10, bool)) as (a, b):
        assert (a.shape, a.dtype, b.shape, b.dtype) == ((1000,), np.float32, (10,), np.bool_)
        first = address(a)
    other = np.empty(1000, np.float32)  # would take the memory of a buffer freed on return
    with scratch.borrowed((800, np.float32)) as (again,):  # a smaller request fits the same buffer
        assert address(again) == first != address(other) and again.shape == (800,)


def test_nested_borrowers_never_share_a_buffer():
    with (
        scratch.borrowed((500, np.float64), (500, np.float64)) as (a, b),
        scratch.borrowed((500, np.float64)) as (c,),
    ):
        assert not np.shares_memory(a, b) and not np.shares_memory(a, c) and not np.shares_memory(b, c)


def test_each_thread_lends_its_own():
    seen: dict[str, int] = {}

    def borrow(name: str) -> None:
        with scratch.borrowed((4096, np.float64)) as (a,):
            seen[name] = address(a)
            barrier.wait()  # both hold theirs at once

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=borrow, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["a"] != seen["b"]


def test_a_thread_keeps_a_bounded_number_of_buffers_none_too_large():
    def kept() -> int:
        return sum(len(pool) for pool in scratch._free().values())

    with scratch.borrowed(*[(100 + i, np.int16) for i in range(scratch.KEPT + 3)]):
        pass
    assert len(scratch._free()[np.dtype(np.int16).str]) == scratch.KEPT
    before = kept()
    with scratch.borrowed((scratch.MAX_KEPT_BYTES // 8 + 1, np.float64)):
        pass
    assert kept() == before


def test_passes_in_several_threads_at_once_give_the_values_of_one_alone():
    rng = np.random.default_rng(0)
    batches = [
        (3 * rng.standard_normal((20_000, k))).astype(dtype)
        for k, dtype in ((10, np.float32), (7, np.float64))
    ]
    labels = [rng.integers(0, z.shape[1], z.shape[0]) for z in batches]

    def run(i: int) -> tuple[bytes, bytes]:
        z, y = batches[i % 2], labels[i % 2]
        feed = RowsPass(z, y)
        summary = softmax_summary(z, top=False, entropy=False, labels=y, each=feed)
        rows = feed.result()
        assert rows is not None and rows.brier is not None
        return (
            summary.log_norm.tobytes() + summary.picked.tobytes(),
            rows.top.tobytes() + rows.brier.tobytes(),
        )

    alone = [run(0), run(1)]
    got: dict[int, list[tuple[bytes, bytes]]] = {}

    def many(t: int) -> None:
        got[t] = [run(i + t) for i in range(6)]

    threads = [threading.Thread(target=many, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for t, results in got.items():
        for i, result in enumerate(results):
            assert result == alone[(i + t) % 2]
