"""Raw batch blobs: read as exactly their batch's statistics, and joined for one summary of many."""

import numpy as np
import pytest

from service.core import Distribution, InputError, MonitorStats, merge_stats
from service.core.monitoring.raw_batch import decode_joined, decode_raw, encode_raw, expand, is_raw
from service.core.monitoring.series import group_sums
from service.core.monitoring.stats import FINE_BINS


def batch(rng: np.random.Generator, n: int, k: int, dtype=np.float64, unlabelled: float = 0.2):
    logits = (3 * rng.standard_normal((n, k))).astype(dtype)
    labels = rng.integers(0, k, n)
    labels[rng.random(n) < unlabelled] = -1
    return logits, labels


def summary(logits, labels) -> MonitorStats:
    return MonitorStats.summarise(Distribution.from_logits(logits), labels)


@pytest.mark.parametrize(
    ("k", "dtype"), [(2, np.float64), (10, np.float32), (200, np.float64), (40_000, np.float32)]
)
def test_a_raw_blob_holds_its_batch_exactly(k, dtype):
    rng = np.random.default_rng(k)
    logits, labels = batch(rng, 7, k, dtype)
    blob = encode_raw(logits, labels, 1_796_083_200.25)
    assert is_raw(blob) and not is_raw(summary(logits, labels).to_bytes())
    got = decode_raw(blob)
    assert got.logits.dtype == dtype and np.array_equal(got.logits, logits)
    assert np.array_equal(got.labels, labels) and got.time == 1_796_083_200.25


def test_readers_count_a_raw_blob_as_its_statistics_bit_for_bit():
    rng = np.random.default_rng(0)
    batches = [batch(rng, n, 5) for n in (1, 32, 3)]
    stats = [summary(*b) for b in batches]
    raw = [encode_raw(*b, 60.0) for b in batches]
    # the first raw blob (1 row, K = 5: 24 + 40 + 1 bytes) is shorter than a statistics header
    mixed = [raw[0], stats[1].to_bytes(), raw[2]]
    assert merge_stats(mixed).to_bytes() == merge_stats(stats).to_bytes()
    assert MonitorStats.from_bytes(raw[1]).to_bytes() == stats[1].to_bytes()
    expected = group_sums([s.to_bytes() for s in stats], [0, 1, 0], 2, n_bins=FINE_BINS // 168)
    got = group_sums(mixed, [0, 1, 0], 2, n_bins=FINE_BINS // 168)
    assert np.array_equal(got.table, expected.table) and got.n_classes == 5
    assert expand([s.to_bytes() for s in stats]) is None


def test_joined_blobs_summarise_to_the_merge_of_their_batches():
    rng = np.random.default_rng(1)
    batches = [batch(rng, 32, 10) for _ in range(6)] + [batch(rng, 5, 10, np.float32)]
    times = [60.0 * i for i in range(len(batches))]
    blobs = [encode_raw(z, y, t) for (z, y), t in zip(batches, times, strict=True)]
    runs = decode_joined(blobs)
    assert [start for start, _ in runs] == [0, 6]  # float64 rows, then the float32 batch
    joined = runs[0][1]
    assert np.array_equal(joined.logits, np.concatenate([z for z, _ in batches[:6]]))
    assert np.array_equal(joined.row_times(), np.repeat(times[:6], 32))
    one = joined.summarise()
    merged = merge_stats([summary(*b) for b in batches[:6]])
    for name in ("n_predictions", "n_labelled", "correct"):
        assert getattr(one, name) == getattr(merged, name)
    assert np.array_equal(one.label_counts, merged.label_counts)
    assert np.array_equal(one.predicted_counts, merged.predicted_counts)
    assert np.array_equal(one.top.cells, merged.top.cells) and np.array_equal(one.top.count, merged.top.count)
    for name in ("nll_sum", "brier_sum", "confidence_sum", "labelled_confidence_sum"):
        assert getattr(one, name) == pytest.approx(getattr(merged, name), rel=1e-12)
    np.testing.assert_allclose(one.top.conf, merged.top.conf, rtol=1e-12)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda b: b[:-1], "raw batch"),
        (lambda b: b[:1] + b"\x03" + b[2:], "raw batch"),  # an unknown dtype
        (lambda b: b[:-1] + b"\x07", "outside"),  # a label ≥ K
        (lambda b: b[:-1] + b"\xfe", "outside"),  # a label < -1
    ],
)
def test_a_damaged_raw_blob_is_refused(mangle, reason):
    logits, labels = batch(np.random.default_rng(2), 4, 3)
    with pytest.raises(InputError, match=reason):
        merge_stats([mangle(encode_raw(logits, labels, 0.0))])


def test_float64_logits_that_are_float32_values_are_stored_in_half_the_bytes():
    rng = np.random.default_rng(3)
    exact = rng.standard_normal((32, 10)).astype(np.float32).astype(np.float64)  # a float32 model's, as JSON
    labels = rng.integers(-1, 10, 32)
    narrow, wide = encode_raw(exact, labels, 0.0), encode_raw(exact + 1e-12, labels, 0.0)
    assert len(narrow) == 24 + 32 * (4 * 10 + 1) and len(wide) == 24 + 32 * (8 * 10 + 1)
    one_off = exact.copy()
    one_off[5, 3] += 1e-9  # the first value is a float32 one, a later one not: stored whole
    assert np.array_equal(decode_raw(encode_raw(one_off, labels, 0.0)).logits, one_off)
    assert len(encode_raw(one_off, labels, 0.0)) == len(wide)
    got = decode_raw(narrow)
    assert got.logits.dtype == np.float64 and np.array_equal(got.logits, exact)
    assert merge_stats([narrow]).to_bytes() == summary(exact, labels).to_bytes()
    # narrowed and full-width blobs of one bucket join as runs of their own layout
    runs = decode_joined([narrow, narrow, wide])
    assert [start for start, _ in runs] == [0, 2]
    assert np.array_equal(runs[0][1].logits, np.concatenate([exact, exact]))
    assert runs[0][1].logits.dtype == np.float64
