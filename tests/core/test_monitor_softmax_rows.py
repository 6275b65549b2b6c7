"""The blocked pass of a large batch (softmax_rows) and float32 fine cells, against the definitions.

The reference is plain NumPy written here from the definitions: ``p = exp(z - lse)`` in the
logits' dtype (``/v1/calibration``'s probabilities), the first maximum of each row, the Brier
score as ``Σ_k (p_k - 1[y = k])²`` in float64, the fine cell from the edges by two binary
searches, and per-cell sums by ``np.add.at``.
"""

from fractions import Fraction

import numpy as np
import pytest

from service.core import Distribution, MonitorStats
from service.core.logsumexp import BLOCK_BYTES, softmax_summary
from service.core.monitoring import softmax_rows as rows_module
from service.core.monitoring import stats as stats_module
from service.core.monitoring.fine_histogram import FINE_BINS, FINE_EDGES, N_CELLS, fine_cells
from service.core.monitoring.softmax_rows import softmax_rows

#: Blocks smaller than the default (512 KiB): the values must not depend on the size.
SMALL_BLOCK_BYTES = 120 << 10


def logits(n: int, k: int, dtype: type, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits with tied rows, tied top pairs, rows past the dtype's range, -inf entries; labels."""
    rng = np.random.default_rng(seed)
    z = 3 * rng.standard_normal((n, k))
    z[::7] = 0.0  # uniform rows: every class tied, confidence 1/K (0.5, 0.25, 0.125 on fine edges)
    z[1::11, 1] = z[1::11, 0]  # the top pair tied sometimes
    z[2::13, 1] = z[2::13, 0] + 1e-7  # tied after rounding only
    z = z.astype(dtype)
    big = np.finfo(dtype).max
    z[3::17, 0], z[3::17, -1] = big, -big  # z - max overflows: p = 0 there
    z[5::19, -1] = -np.inf  # (no validation: -inf is p = 0)
    z[6::23] = np.round(z[6::23])
    y = rng.integers(0, k, n)
    y[3::17] = y[5::19] = 0  # labels on the top class there: finite losses
    return z, y


def reference_rows(z: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row values from the definitions, the log-normaliser taken from the fused pass."""
    summary = Distribution.from_logits(z, validate=False).summarise()
    with np.errstate(over="ignore"):
        p = np.exp(z - summary.lse[:, None])
    onehot = np.eye(z.shape[1])[y]
    return {
        "predicted": p.argmax(axis=1),
        "top": p.max(axis=1),
        "brier": ((p.astype(np.float64) - onehot) ** 2).sum(axis=1),
        "positive": p[:, 1],
    }


def reference_cells(conf: np.ndarray) -> np.ndarray:
    """Cell 2j on edge j, 2f + 1 strictly inside fine bin f: edges below plus edges at or below, minus 1."""
    c = conf.astype(np.float64)
    return FINE_EDGES.searchsorted(c, side="left") + FINE_EDGES.searchsorted(c, side="right") - 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [2, 3, 10, 50])
def test_rows_match_the_definitions(dtype, k):
    n = 7000 if k < 50 else 3000  # more than one block for small K
    z, y = logits(n, k, dtype, seed=k)
    summary = Distribution.from_logits(z, validate=False).summarise()
    got = softmax_rows(z, summary, y)
    assert got is not None
    want = reference_rows(z, y)
    np.testing.assert_array_equal(got.predicted, want["predicted"])  # ties: the first maximum
    assert got.top.dtype == dtype and got.top.tobytes() == want["top"].tobytes()
    assert got.brier is not None
    np.testing.assert_allclose(got.brier, want["brier"], rtol=1e-12, atol=1e-15)
    if k == 2:
        assert got.positive is not None and got.positive.tobytes() == want["positive"].tobytes()
    else:
        assert got.positive is None
    assert softmax_rows(z, summary, None).brier is None  # type: ignore[union-attr]


def test_a_row_gets_the_same_values_in_any_batch():
    """No lone last row in a block or a piece of squares (a K×1 column would be added in another order)."""
    rng = np.random.default_rng(1)
    z = (-5 * np.arange(10) + 3 * rng.standard_normal((80_000, 10))).astype(np.float32)
    y = np.zeros(80_000, np.intp)  # p² over ~70 binades: their float64 sum depends on the order
    rows, part = rows_module.SCRATCH_BYTES // (10 * 4), rows_module.SCRATCH_BYTES // (10 * 8)
    lone = [m * rows + part + 1 for m in range(24)] + [m * rows + 1 for m in range(1, 9)]
    for n in lone:  # the last row alone in its piece of squares, or in its block
        a = Distribution.from_logits(z[:n], validate=False)
        b = Distribution.from_logits(z[: n + 7], validate=False)
        short = softmax_rows(z[:n], a.summarise(), y[:n])
        long = softmax_rows(z[: n + 7], b.summarise(), y[: n + 7])
        assert short is not None and long is not None and short.brier is not None and long.brier is not None
        assert short.brier.tobytes() == long.brier[:n].tobytes()
        assert short.top.tobytes() == long.top[:n].tobytes()


def test_float32_cells_by_the_rational_edges():
    """No float32 lies between j / 2520 and fl(j / 2520): the premise of the float32 cells."""
    exact = 0
    for j, edge in enumerate(FINE_EDGES.tolist()):
        q, e = Fraction(j, FINE_BINS), Fraction(edge)
        if q == e:
            exact += 1
            continue
        low, high = min(q, e), max(q, e)
        nearest = np.float32(float(q))
        for c in (np.nextafter(nearest, np.float32(-1)), nearest, np.nextafter(nearest, np.float32(2))):
            assert not low <= Fraction(float(c)) <= high, j
    assert exact == 9  # the multiples of 315: k / 8


def test_float32_cells_match_the_edges():
    edges32 = FINE_EDGES.astype(np.float32)
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [
            edges32,
            np.nextafter(edges32, np.float32(2)),
            np.nextafter(edges32, np.float32(-1)),
            rng.random(50_000, dtype=np.float32),
            np.array([0.0, 1.0, 0.5, 0.125, 1e-45, 1e-38, 1 - 2**-24], np.float32),
        ]
    )
    values = values[(values >= 0) & (values <= 1)]
    cells = fine_cells(values)
    np.testing.assert_array_equal(cells, reference_cells(values))
    assert cells.min() == 0 and cells.max() == N_CELLS - 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [2, 10, 50])
@pytest.mark.parametrize("labelled", ["all", "some", "none"])
def test_large_batch_stats_match_the_definitions(dtype, k, labelled):
    n = 6000
    z, y = logits(n, k, dtype, seed=100 + k)
    if labelled == "some":
        y[::4] = -1
    labels = None if labelled == "none" else y
    stats = MonitorStats.summarise(Distribution.from_logits(z, validate=False), labels)
    mask = np.zeros(n, bool) if labels is None else y >= 0
    ref = reference_rows(z, np.where(mask, y, 0))
    assert stats.n_predictions == n and stats.n_labelled == int(mask.sum())
    np.testing.assert_array_equal(stats.predicted_counts, np.bincount(ref["predicted"], minlength=k))
    np.testing.assert_allclose(stats.confidence_sum, ref["top"].astype(np.float64).sum(), rtol=1e-12)
    if labels is None:
        return
    correct = ref["predicted"][mask] == y[mask]
    assert stats.correct == int(correct.sum())
    np.testing.assert_array_equal(stats.label_counts, np.bincount(y[mask], minlength=k))
    np.testing.assert_allclose(stats.brier_sum, ref["brier"][mask].sum(), rtol=1e-12)
    for hist, conf, outcome in [
        (stats.top, ref["top"][mask], correct),
        *([(stats.positive, ref["positive"][mask], y[mask] == 1)] if k == 2 else []),
    ]:
        cells = reference_cells(conf)
        count, sums, hits = (np.zeros(N_CELLS, t) for t in (np.int64, np.float64, np.float64))
        np.add.at(count, cells, 1)
        np.add.at(sums, cells, conf.astype(np.float64))
        np.add.at(hits, cells, outcome.astype(np.float64))
        used = np.flatnonzero(count)
        assert hist is not None
        np.testing.assert_array_equal(hist.cells, used)
        np.testing.assert_array_equal(hist.count, count[used])
        np.testing.assert_allclose(hist.conf, sums[used], rtol=1e-12)
        np.testing.assert_array_equal(hist.hits, hits[used])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [2, 10, 33])
def test_the_blocked_pass_equals_the_nxk_path(monkeypatch, dtype, k):
    """Every count and cell as the N×K path (probabilities, row_argmax, brier_rows); Brier to rounding."""
    z, y = logits(5000, k, dtype, seed=7 * k)
    y[::5] = -1
    fast = MonitorStats.summarise(Distribution.from_logits(z, validate=False), y)
    monkeypatch.setattr(stats_module, "NARROW_K", 0)  # no row is narrow: the N×K path
    slow = MonitorStats.summarise(Distribution.from_logits(z, validate=False), y)
    for name in MonitorStats.__dataclass_fields__:
        a, b = getattr(fast, name), getattr(slow, name)
        if name == "brier_sum":
            assert a == pytest.approx(b, rel=1e-14)
        elif name in ("top", "positive"):
            assert (a is None) == (b is None)
            for part in ("cells", "count", "conf", "hits") if a is not None else ():
                assert getattr(a, part).tobytes() == getattr(b, part).tobytes(), (name, part)
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
        else:
            assert a == b or (a != a and b != b), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [3, 10, 63])
def test_the_log_sum_exp_pass_gives_the_same_values_in_smaller_blocks(dtype, k):
    """The monitor's smaller blocks (under xent serve's mmap threshold) change no value of the pass."""
    z, y = logits(20_000, k, dtype, seed=k)
    rows = SMALL_BLOCK_BYTES // (k * np.dtype(dtype).itemsize)
    for n in (rows + 1, 3 * rows + 1, 20_000):
        default = softmax_summary(z[:n], top=True, entropy=True, labels=y[:n])
        small = softmax_summary(z[:n], top=True, entropy=True, labels=y[:n], block_bytes=SMALL_BLOCK_BYTES)
        for name in ("shift", "log_norm", "top", "entropy", "picked"):
            a, b = getattr(default, name), getattr(small, name)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (n, name)
        assert default.spans == small.spans


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [2, 10, 33])
@pytest.mark.parametrize("block_bytes", [None, SMALL_BLOCK_BYTES])  # the default (512 KiB) and smaller
def test_rows_fed_by_the_log_sum_exp_pass_are_the_pass_of_their_own(dtype, k, block_bytes):
    """RowsPass fed by softmax_summary's blocks: softmax_rows' values and the summary's, bit for bit."""
    z, y = logits(40_000, k, dtype, seed=3 * k)
    rows = (block_bytes or BLOCK_BYTES) // (k * np.dtype(dtype).itemsize)
    for n in (rows - 1, rows + 1, 3 * rows + 1, 40_000):  # one block, a lone last row, several
        n = min(n, 40_000)
        feed = rows_module.RowsPass(z[:n], y[:n])
        fed = softmax_summary(
            z[:n], top=False, entropy=False, labels=y[:n], block_bytes=block_bytes, each=feed
        )
        alone = softmax_summary(z[:n], top=False, entropy=False, labels=y[:n], block_bytes=block_bytes)
        for name in ("shift", "log_norm", "picked"):
            assert getattr(fed, name).tobytes() == getattr(alone, name).tobytes(), (n, name)
        assert fed.spans == alone.spans
        got, want = feed.result(), softmax_rows(z[:n], alone, y[:n])
        assert got is not None and want is not None
        for name in ("predicted", "top", "brier", "positive"):
            a, b = getattr(got, name), getattr(want, name)
            assert (a is None) == (b is None) and (a is None or a.tobytes() == b.tobytes()), (n, name)


def test_a_summary_cached_before_gets_the_rows_of_a_pass_of_their_own(monkeypatch):
    z, y = logits(9000, 10, np.float32, seed=5)
    fresh = MonitorStats.summarise(Distribution.from_logits(z, validate=False), y, validate=False)
    alone = []
    monkeypatch.setattr(stats_module, "softmax_rows", lambda *args: alone.append(1) or softmax_rows(*args))
    dist = Distribution.from_logits(z, validate=False)
    dist.summarise(labels=y)  # cached: the statistics' pass feeds no block
    cached = MonitorStats.summarise(dist, y, validate=False)
    assert alone == [1] and fresh.to_bytes() == cached.to_bytes()


def test_each_is_refused_where_no_block_could_feed_it():
    z = np.zeros((10, 10))
    with pytest.raises(ValueError, match="each"):
        softmax_summary(z, each=lambda *args: None)
