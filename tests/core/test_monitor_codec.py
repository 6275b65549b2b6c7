"""MonitorStats bytes: exact round trips, compact sparse sections, InputError on bad bytes."""

import dataclasses

import numpy as np
import pytest

from service.core import Distribution, InputError, MonitorStats, merge_stats
from service.core.monitoring.codec import HEADER, LABEL_DENSE, PREDICTED_DENSE, class_bytes, count_width
from service.core.monitoring.fine_histogram import N_CELLS, FineHistogram


def stats_of(n: int, k: int, *, seed: int = 0, binary: bool = False, weights: bool = False) -> MonitorStats:
    rng = np.random.default_rng(seed)
    if binary:
        dist = Distribution.from_probs(rng.uniform(0, 1, n))
        labels = rng.integers(0, 2, n)
    else:
        dist = Distribution.from_logits(3 * rng.standard_normal((n, k)))
        labels = rng.integers(0, k, n)
    labels[::5] = -1  # some rows not labelled yet
    w = rng.uniform(0, 2, n) if weights else None
    return MonitorStats.summarise(dist, labels, sample_weight=w)


def assert_identical(a: MonitorStats, b: MonitorStats) -> None:
    """Every field equal, floats bit for bit."""
    for field in dataclasses.fields(MonitorStats):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, FineHistogram):
            for part in dataclasses.fields(FineHistogram):
                u, v = getattr(x, part.name), getattr(y, part.name)
                assert (u is None) == (v is None), part.name
                if u is not None:
                    np.testing.assert_array_equal(u, v, err_msg=part.name)
        elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=field.name)
        else:
            assert x == y and type(x) is type(y), field.name


CASES = [
    {"n": 32, "k": 10},
    {"n": 32, "k": 1000},
    {"n": 300, "k": 3},
    {"n": 2000, "k": 2, "binary": True},
    {"n": 50, "k": 4, "weights": True},
    {"n": 50, "k": 2, "binary": True, "weights": True},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_round_trip_is_exact(case):
    stats = stats_of(**case)
    blob = stats.to_bytes()
    again = MonitorStats.from_bytes(blob)
    assert_identical(again, stats)
    assert again.to_bytes() == blob


def test_class_sections_are_dense_when_that_is_smaller():
    many = stats_of(2000, 10)  # every class present: K counts beat K (index, count) pairs
    few = stats_of(8, 1000)
    assert many.to_bytes()[1] & (PREDICTED_DENSE | LABEL_DENSE) == PREDICTED_DENSE | LABEL_DENSE
    assert few.to_bytes()[1] & (PREDICTED_DENSE | LABEL_DENSE) == 0
    weighted = stats_of(500, 4, weights=True)
    assert weighted.to_bytes()[1] & PREDICTED_DENSE
    for stats in (many, few, weighted):
        assert_identical(MonitorStats.from_bytes(stats.to_bytes()), stats)
    mixed = merge_stats(
        [s.to_bytes() for s in (many, stats_of(3, 10, seed=1), stats_of(5, 10, weights=True))]
    )
    direct = merge_stats([many, stats_of(3, 10, seed=1), stats_of(5, 10, weights=True)])
    np.testing.assert_array_equal(mixed.predicted_counts, direct.predicted_counts)
    np.testing.assert_array_equal(mixed.label_counts, direct.label_counts)
    assert mixed.label_weights is not None and direct.label_weights is not None
    np.testing.assert_allclose(mixed.label_weights, direct.label_weights, rtol=1e-13)
    np.testing.assert_allclose(mixed.predicted_weights, direct.predicted_weights, rtol=1e-13)


def test_empty_round_trips():
    for stats in (
        MonitorStats.empty(5),
        MonitorStats.empty(2, binary=True),
        MonitorStats.empty(3, weighted=True),
    ):
        blob = stats.to_bytes()
        assert len(blob) == HEADER.itemsize
        assert_identical(MonitorStats.from_bytes(blob), stats)


def test_count_width_grows_with_the_counts():
    assert [count_width(v) for v in (0, 255, 256, 65535, 65536, 2**32, 2**63)] == [1, 1, 2, 2, 4, 8, 8]
    small, large = stats_of(32, 10), stats_of(70_000, 10)
    assert small.to_bytes()[2] == 1 and large.to_bytes()[2] == 4
    assert_identical(MonitorStats.from_bytes(large.to_bytes()), large)
    mixed = merge_stats([small.to_bytes(), large.to_bytes(), small])
    direct = merge_stats([small, large, small])
    assert mixed.n_predictions == 70_064 and mixed.correct == direct.correct
    np.testing.assert_array_equal(mixed.top.count, direct.top.count)
    np.testing.assert_allclose(mixed.top.conf, direct.top.conf, rtol=1e-13)


def test_sizes_stay_small():
    """The figures docs/monitor-statistics.md states: a 32-row batch is small even at K = 1,000."""
    assert len(stats_of(32, 10).to_bytes()) < 700
    assert len(stats_of(32, 1000).to_bytes()) < 800
    # Every class predicted and labelled (30,000 rows: a class is missing with odds ~1e-10): the class
    # sections are written dense, and the whole blob stays under the dense bound (~3 s; 200,000
    # rows took ~18 s for the same assertions).
    dense = stats_of(30_000, 1000, seed=1).to_bytes()
    assert dense[1] & PREDICTED_DENSE and dense[1] & LABEL_DENSE
    assert len(dense) < 100 + 2 * 1000 * (2 + 4) + N_CELLS * (2 + 4 + 8 + 4)


def test_many_blobs_decode_to_the_merge_of_their_objects():
    items = [stats_of(int(n), 6, seed=i) for i, n in enumerate(np.random.default_rng(0).integers(1, 80, 200))]
    from_bytes = merge_stats([s.to_bytes() for s in items])
    direct = merge_stats(items)
    for name in ("n_predictions", "n_labelled", "correct"):
        assert getattr(from_bytes, name) == getattr(direct, name)
    np.testing.assert_array_equal(from_bytes.label_counts, direct.label_counts)
    np.testing.assert_array_equal(from_bytes.top.cells, direct.top.cells)
    np.testing.assert_allclose(from_bytes.nll_sum, direct.nll_sum, rtol=1e-13)
    np.testing.assert_allclose(from_bytes.top.conf, direct.top.conf, rtol=1e-13)


def _blob() -> bytes:
    blob = stats_of(20, 50).to_bytes()  # sparse class sections: fewer classes present than K
    assert blob[1] & (PREDICTED_DENSE | LABEL_DENSE) == 0
    return blob


def _patched(offset: int, value: bytes) -> bytes:
    blob = bytearray(_blob())
    blob[offset : offset + len(value)] = value
    return bytes(blob)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "at least 100 bytes"),
        (b"\x01" * 99, "at least 100 bytes"),
        (_patched(0, b"\x02"), "unknown format version 2; this build reads version 1"),
        (_patched(0, b"\x00"), "unknown format version 0"),
        (_blob()[:-1], "wrong length"),
        (_blob() + b"\x00", "wrong length"),
        (_patched(2, b"\x03"), "not a valid MonitorStats header"),
        (_patched(1, b"\x40"), "not a valid MonitorStats header"),
        (_patched(4, (1).to_bytes(4, "little")), "not a valid MonitorStats header"),
        (_patched(40, np.float64(np.nan).tobytes()), "non-finite"),
        (_patched(HEADER.itemsize, b"\xff"), "class index"),
        (_patched(8, (41).to_bytes(8, "little")), "inconsistent"),
    ],
)
def test_bad_bytes_raise_input_error(data, match):
    with pytest.raises(InputError, match=match) as info:
        MonitorStats.from_bytes(data)
    assert info.value.field == "stats"


def test_bad_cell_and_mixed_classes_raise():
    stats = stats_of(20, 50)
    blob = bytearray(stats.to_bytes())
    head = np.frombuffer(bytes(blob[: HEADER.itemsize]), HEADER)[0]
    classes = int(head["n_predicted"]) + int(head["n_label"])  # each a 1-byte index and a 1-byte count
    start = HEADER.itemsize + 2 * classes  # the first top-label cell
    blob[start : start + 2] = (N_CELLS).to_bytes(2, "little")
    with pytest.raises(InputError, match="histogram cell"):
        MonitorStats.from_bytes(bytes(blob))
    with pytest.raises(InputError, match="must all share K"):
        merge_stats([stats.to_bytes(), stats_of(10, 4).to_bytes()])
    with pytest.raises(InputError, match="must be bytes"):
        MonitorStats.from_bytes("not bytes")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="at least one"):
        merge_stats([])


def test_buffers_other_than_bytes_decode_the_same():
    stats = stats_of(64, 5)
    blob = stats.to_bytes()
    for kind in (bytearray, memoryview):
        assert_identical(merge_stats([kind(blob)]), stats)
    merged = merge_stats([bytearray(blob), blob, memoryview(blob)])
    assert merged.n_predictions == 3 * stats.n_predictions


def test_a_batch_with_no_label_yet_has_only_a_prediction_side():
    stats = MonitorStats.summarise(Distribution.from_probs(np.array([0.2, 0.9, 0.6])), [-1, -1, -1])
    assert (stats.n_predictions, stats.n_labelled, stats.top.cells.size) == (3, 0, 0)
    assert stats.mean_confidence() == pytest.approx((0.8 + 0.9 + 0.6) / 3, rel=1e-15)
    assert np.isnan(stats.cross_entropy()) and np.isnan(stats.calibration_errors()["ece"])
    assert_identical(MonitorStats.from_bytes(stats.to_bytes()), stats)


@pytest.mark.parametrize("case", [(2000, 10), (8, 1000), (500, 4)])
def test_class_bytes_locates_the_histogram(case):
    """Readers that skip to the histogram (monitor_series) find it after dense or sparse class sections."""
    stats = stats_of(*case, weights=case[1] == 4)
    blob = stats.to_bytes()
    head = np.frombuffer(blob[: HEADER.itemsize], HEADER)
    start = HEADER.itemsize + int(class_bytes(head, stats.n_classes)[0])
    assert int.from_bytes(blob[start : start + 2], "little") == stats.top.cells[0]
