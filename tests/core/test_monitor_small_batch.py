"""The fused small-batch summary equals the general path bit for bit, and scipy / scikit-learn where it can.

The general path is :meth:`MonitorStats.summarise` with the fused kernel switched off
(``small_batch.fits_small`` patched to refuse every batch).
"""

import numpy as np
import pytest
import scipy.special
from sklearn.metrics import brier_score_loss

from service.core import Distribution, MonitorStats
from service.core.monitoring import small_batch
from service.core.monitoring.fine_histogram import FINE_BINS, fine_cells
from service.core.monitoring.small_batch import MAX_ROWS, fits_small, occupied_histogram


def general(monkeypatch, dist, labels):
    with monkeypatch.context() as patch:
        patch.setattr(small_batch, "fits_small", lambda dist: False)
        return MonitorStats.summarise(dist, labels)


def assert_same(a: MonitorStats, b: MonitorStats) -> None:
    assert type(a) is type(b) and list(vars(a)) == list(vars(b))  # the same object, however built
    for name in MonitorStats.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if name in ("top", "positive"):
            assert (x is None) == (y is None), name
            if x is None:
                continue
            assert type(x) is type(y) and list(vars(x)) == list(vars(y)), name
            for part in ("cells", "count", "conf", "hits"):
                u, v = getattr(x, part), getattr(y, part)
                assert u.dtype == v.dtype and u.tobytes() == v.tobytes(), f"{name}.{part}"
            assert x.weight is None and y.weight is None
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
        else:
            assert type(x) is type(y) and (x == y or (x != x and y != y)), (name, x, y)
    assert a.to_bytes() == b.to_bytes()


def edge_probs(rng, n: int, k: int) -> np.ndarray:
    """Rows whose top-label confidence (and, for K = 2, positive class) often lies exactly on a fine edge."""
    top = rng.integers(0, FINE_BINS + 1, n) / FINE_BINS  # fl(j / 2520): an edge of the fine histogram
    top = np.maximum(top, 1.0 / k)  # a top-label confidence is at least 1/K
    rest = rng.dirichlet(np.ones(k - 1), n) * (1 - top)[:, None]
    probs = np.concatenate([top[:, None], rest], axis=1)
    for row in rng.permutation(n)[: n // 4]:
        probs[row] = np.eye(k)[rng.integers(k)]  # a one-hot row: confidence 1.0, the last edge
    return rng.permuted(probs, axis=1)


def batches(seed: int):
    rng = np.random.default_rng(seed)
    k = int(rng.choice([2, 3, 10, 37]))
    n = int(rng.integers(1, min(MAX_ROWS, 4096 // k) + 1))
    kind = rng.choice(["logits", "probs", "edges"])
    dtype = rng.choice([np.float32, np.float64])
    if kind == "logits":
        z = (rng.standard_normal((n, k)) * rng.choice([0.1, 3.0, 40.0])).astype(dtype)
        if n > 2:
            z[0] = z[0, 0]  # a row of ties
        dist = Distribution.from_logits(z)
    else:
        p = rng.dirichlet(np.full(k, 0.3), n) if kind == "probs" else edge_probs(rng, n, k)
        dist = Distribution.from_probs(p.astype(dtype), validate=False)  # float32 rows sum to 1 ± 1e-7
    labels = rng.integers(0, k, n) if rng.random() < 0.8 else None
    return dist, labels


@pytest.mark.parametrize("seed", range(60))
def test_the_fused_summary_is_the_general_one_bit_for_bit(monkeypatch, seed):
    dist, labels = batches(seed)
    assert fits_small(dist)
    fused = MonitorStats.summarise(dist, labels)
    assert_same(fused, general(monkeypatch, dist, labels))


@pytest.mark.parametrize("seed", range(10))
def test_the_fused_summary_matches_scipy_and_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    n, k = int(rng.integers(2, 300)), int(rng.choice([2, 5, 10]))
    z = rng.standard_normal((n, k)) * 2
    y = rng.integers(0, k, n)
    stats = MonitorStats.summarise(Distribution.from_logits(z), y)
    log_p = scipy.special.log_softmax(z, axis=1)
    p = np.exp(log_p)
    np.testing.assert_allclose(stats.cross_entropy(), -log_p[np.arange(n), y].mean(), rtol=1e-12)
    assert stats.accuracy() == np.mean(p.argmax(axis=1) == y)
    assert stats.mean_confidence() == pytest.approx(p.max(axis=1).mean(), rel=1e-12)
    onehot = np.eye(k)[y]
    brier = ((p - onehot) ** 2).sum(axis=1).mean() * (0.5 if k == 2 else 1.0)
    assert stats.brier() == pytest.approx(brier, rel=1e-12)
    if k == 2:
        assert stats.brier() == pytest.approx(brier_score_loss(y, p[:, 1]), rel=1e-12)
    np.testing.assert_array_equal(stats.label_counts, np.bincount(y, minlength=k))
    np.testing.assert_array_equal(stats.predicted_counts, np.bincount(p.argmax(axis=1), minlength=k))


def test_the_occupied_histogram_sums_rows_per_cell_in_row_order():
    rng = np.random.default_rng(7)
    conf = rng.integers(0, 40, 500) / 40 + rng.choice([0.0, 1e-9], 500)  # edges, and just above them
    conf = np.minimum(conf, 1.0)
    outcome = rng.random(500) < 0.5
    hist = occupied_histogram(conf, outcome)
    cells = fine_cells(conf)
    for i, cell in enumerate(hist.cells):  # an independent loop over rows
        rows = np.flatnonzero(cells == cell)
        assert hist.count[i] == rows.size
        total = 0.0
        for r in rows:
            total += float(conf[r])
        assert hist.conf[i] == total
        assert hist.hits[i] == outcome[rows].sum()
    np.testing.assert_array_equal(hist.cells, np.unique(cells))


def test_batches_the_kernel_does_not_take_go_the_general_way():
    assert not fits_small(Distribution.from_probs(np.array([0.2, 0.7])))  # a binary vector
    assert not fits_small(Distribution.from_logits(np.zeros((MAX_ROWS + 1, 2))))
    assert not fits_small(Distribution.from_logits(np.zeros((100, 50))))  # 5,000 elements
    dist = Distribution.from_logits(np.random.default_rng(1).standard_normal((8, 3)))
    weighted = MonitorStats.summarise(dist, [0, 1, 2, 0, 1, 2, 0, 1], sample_weight=np.arange(1.0, 9.0))
    assert weighted.weighted  # weights: the general path, which keeps per-cell weights
