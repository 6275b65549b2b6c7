"""MonitorStats: merged batch statistics equal the routes' metrics on all rows at once (issue #17)."""

import io
import json
import math
import struct

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from service.app import create_app
from service.core import (
    ALLOWED_BINS,
    FINE_BINS,
    Convention,
    Distribution,
    InputError,
    MonitorStats,
    calibration_report,
    js_drift,
    merge_stats,
    nll,
)
from service.core.calibration.bin_edges import assign_shared, uniform_edges
from service.core.monitoring.fine_histogram import coarse_index, fine_cells
from service.settings import Settings

KINDS = ("logits", "probs", "binary_logits", "binary_probs")
DTYPES = (np.float64, np.float32)
BINS = (1, 2, 3, 5, 10, 15, 20, 2520)
#: Confidences exactly on common edges; in float32 only the dyadic ones (0.5, 0.25, 0.125, ...) stay.
EDGE_VALUES = np.array([0.5, 0.25, 0.1, 0.6, 0.75, 0.2, 1.0, 0.0, 0.4, 0.125])


def dataset(kind: str, dtype: type, n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of `kind` with some confidences exactly on bin edges, and labels."""
    rng = np.random.default_rng(seed)
    binary = kind.startswith("binary")
    labels = rng.integers(0, 2 if binary else k, n)
    if kind == "logits":
        z = 2 * rng.standard_normal((n, k))
        z[::7] = 0.0  # uniform rows: confidence 1/K
        return z.astype(dtype), labels
    if kind == "binary_logits":
        z = 3 * rng.standard_normal(n)
        z[::5] = 0.0  # p = 0.5 exactly
        return z.astype(dtype), labels
    if kind == "binary_probs":
        p = rng.uniform(0, 1, n)
        p[::3] = EDGE_VALUES[rng.integers(0, EDGE_VALUES.size, p[::3].size)]
        return p.astype(dtype), labels
    p = rng.dirichlet(np.full(k, 0.5), n)
    edge_rows = np.zeros((n // 3, k))
    top = EDGE_VALUES[rng.integers(0, 7, n // 3)]  # 0.5 ... 1.0: the top-label probability
    edge_rows[:, 0] = top
    edge_rows[:, 1] = 1 - top  # ≤ top except for 0.25 / 0.1 / 0.2 rows: then class 1 is on top
    edge_rows = rng.permuted(edge_rows, axis=1)
    p[::3][: n // 3] = edge_rows
    return p.astype(dtype), labels


def distribution(kind: str, values: np.ndarray) -> Distribution:
    if "logits" in kind:
        return Distribution.from_logits(values)
    return Distribution.from_probs(values)


def partition(rng: np.random.Generator, n: int, pieces: int) -> list[slice]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=pieces - 1, replace=False))
    bounds = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def batch_stats(kind: str, values: np.ndarray, labels: np.ndarray, slices: list[slice]) -> list[MonitorStats]:
    return [MonitorStats.summarise(distribution(kind, values[s]), labels[s]) for s in slices]


def tree_merge(items: list[MonitorStats], rng: np.random.Generator) -> MonitorStats:
    while len(items) > 1:
        i = int(rng.integers(0, len(items) - 1))
        items = [*items[:i], items[i].merge(items[i + 1]), *items[i + 2 :]]
    return items[0]


def fold_merge(items: list[MonitorStats], rng: np.random.Generator) -> MonitorStats:
    order = rng.permutation(len(items))
    total = items[order[0]]
    for i in order[1:]:
        total = items[i].merge(total) if i % 2 else total.merge(items[i])
    return total


def assert_same_stats(a: MonitorStats, b: MonitorStats, rtol: float = 1e-12) -> None:
    for name in ("n_classes", "binary", "n_predictions", "n_labelled", "correct", "weighted"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("predicted_counts", "label_counts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("weight_predictions", "confidence_sum", "weight_labelled", "nll_sum", "brier_sum"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, err_msg=name)
    for ha, hb in ((a.top, b.top), (a.positive, b.positive)):
        if ha is None or hb is None:
            assert ha is hb
            continue
        np.testing.assert_array_equal(ha.cells, hb.cells)
        np.testing.assert_array_equal(ha.count, hb.count)
        np.testing.assert_allclose(ha.conf, hb.conf, rtol=rtol)
        np.testing.assert_allclose(ha.hits, hb.hits, rtol=rtol)


def expected_metrics(kind: str, values: np.ndarray, labels: np.ndarray, n_bins: int, closed: str) -> dict:
    """The core functions the routes call, on every row at once."""
    report = calibration_report(labels, distribution(kind, values), Convention(n_bins=n_bins, closed=closed))
    dist = distribution(kind, values)
    if dist.logits is not None and not dist.binary:
        dist.summarise(top=True, entropy=True, labels=labels)  # as /v1/cross-entropy does
    ce = float(np.add.reduce(nll(labels, dist), dtype=np.float64)) / labels.size
    return {**report.scalars, "cross_entropy": ce}


def assert_metrics(stats: MonitorStats, expected: dict, n_bins: int, closed: str, rtol: float) -> None:
    errors = stats.calibration_errors(n_bins, closed=closed)
    got = {
        **errors,
        "brier": stats.brier(),
        "accuracy": stats.accuracy(),
        "mean_confidence": stats.mean_confidence(),
        "cross_entropy": stats.cross_entropy(),
    }
    for name, value in got.items():
        np.testing.assert_allclose(value, expected[name], rtol=rtol, atol=0, err_msg=name)
    # /v1/calibration's nll takes log p from the materialised log-softmax, /v1/cross-entropy (and the
    # stats) from the fused pass: in float32 the two differ by float32 rounding, in float64 they agree.
    np.testing.assert_allclose(stats.cross_entropy(), expected["nll"], rtol=max(rtol, 1e-6), atol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("closed", ["right", "left"])
def test_merged_batches_match_all_rows_at_once(kind, dtype, closed):
    n, k = 300, 4
    values, labels = dataset(kind, dtype, n, k, seed=7)
    rng = np.random.default_rng(11)
    parts = batch_stats(kind, values, labels, partition(rng, n, 12))
    whole = MonitorStats.summarise(distribution(kind, values), labels)
    for merged in (fold_merge(parts, rng), tree_merge(parts, rng), merge_stats(p.to_bytes() for p in parts)):
        assert_same_stats(merged, whole)
        for n_bins in BINS:
            expected = expected_metrics(kind, values, labels, n_bins, closed)
            assert_metrics(merged, expected, n_bins, closed, 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [40, 500])
def test_logits_on_either_kernel_path(dtype, rows):
    """40-row batches: the small-input log-sum-exp pass; 500-row ones and all 2,000 rows: the blocked one."""
    n, k = 2000, 10
    values, labels = dataset("logits", dtype, n, k, seed=3)
    slices = [slice(i, i + rows) for i in range(0, n, rows)]
    merged = merge_stats(batch_stats("logits", values, labels, slices))
    expected = expected_metrics("logits", values, labels, 15, "right")
    assert_metrics(merged, expected, 15, "right", 1e-12)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), kind=st.sampled_from(KINDS), dtype=st.sampled_from(DTYPES))
def test_any_partition_and_merge_order_gives_the_same_stats(data, kind, dtype):
    n = data.draw(st.integers(2, 120), label="n")
    k = data.draw(st.integers(2, 6), label="k")
    values, labels = dataset(kind, dtype, n, k, seed=data.draw(st.integers(0, 2**16), label="seed"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="order"))
    pieces = data.draw(st.integers(1, min(n, 10)), label="pieces")
    parts = batch_stats(kind, values, labels, partition(rng, n, pieces))
    whole = MonitorStats.summarise(distribution(kind, values), labels)
    assert_same_stats(fold_merge(parts, rng), whole)
    assert_same_stats(tree_merge(parts, rng), whole)
    assert_same_stats(
        merge_stats([*parts[: pieces // 2], *(p.to_bytes() for p in parts[pieces // 2 :])]), whole
    )
    n_bins = data.draw(st.sampled_from(BINS), label="n_bins")
    closed = data.draw(st.sampled_from(["right", "left"]), label="closed")
    expected = expected_metrics(kind, values, labels, n_bins, closed)
    assert_metrics(tree_merge(parts, rng), expected, n_bins, closed, 1e-12)


def test_every_allowed_binning_is_an_exact_coarsening():
    """A value's fine cell lies in the B-bin assign_shared gives the value: all 48 B, both sides."""
    j = np.arange(FINE_BINS + 1)
    edges = j / FINE_BINS
    near = np.concatenate([edges, np.nextafter(edges, 2), np.nextafter(edges, -1)])
    near = near[(near >= 0) & (near <= 1)]
    rng = np.random.default_rng(0)
    values64 = np.concatenate([near, rng.uniform(0, 1, 20_000), EDGE_VALUES])
    for values in (values64, values64.astype(np.float32)):
        cells = fine_cells(values)
        for n_bins in ALLOWED_BINS:
            for closed in ("right", "left"):
                direct = assign_shared(values, uniform_edges(n_bins), closed)
                np.testing.assert_array_equal(coarse_index(cells, n_bins, closed), direct)


@pytest.mark.parametrize("n_bins", [11, 13, 16, 25, 2521, 0, -3, 2.5, True])
def test_n_bins_must_divide_2520(n_bins):
    stats = MonitorStats.summarise(Distribution.from_probs(np.array([0.3, 0.9])), [0, 1])
    allowed = r"must divide 2520; allowed: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 18, 20, .*, 1260, 2520"
    with pytest.raises(InputError, match=allowed) as info:
        stats.calibration_errors(n_bins)  # type: ignore[arg-type]
    assert info.value.field == "n_bins"
    with pytest.raises(InputError, match="must divide 2520"):
        stats.reliability(n_bins)  # type: ignore[arg-type]


def test_allowed_bins_are_the_divisors_of_2520():
    assert tuple(b for b in range(1, 2521) if 2520 % b == 0) == ALLOWED_BINS
    assert len(ALLOWED_BINS) == 48
    assert set(range(1, 11)) | {12, 14, 15, 20, 30, 40, 60, 90} <= set(ALLOWED_BINS)


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def http() -> TestClient:
    with TestClient(create_app(Settings())) as client:
        yield client


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_merged_stats_match_the_http_routes(http, kind, dtype):
    """All rows posted once to /v1/calibration and /v1/cross-entropy (npz keeps float32) vs merged batches."""
    n, k = 240, 5
    values, labels = dataset(kind, dtype, n, k, seed=5)
    rng = np.random.default_rng(2)
    merged = merge_stats(p.to_bytes() for p in batch_stats(kind, values, labels, partition(rng, n, 9)))
    field = "logits" if "logits" in kind else "probs"
    headers = {"content-type": "application/x-npz"}
    ce = http.post(
        "/v1/cross-entropy",
        content=_npz(**{field: values}, labels=labels, parameters=np.array(json.dumps({"base": 2}))),
        headers=headers,
    ).json()
    assert ce["convention"]["dtype"] == np.dtype(dtype).name
    np.testing.assert_allclose(merged.cross_entropy(base=2), ce["loss"], rtol=1e-12)
    for n_bins, closed in ((15, "right"), (10, "left"), (4, "right"), (20, "left")):
        options = {
            "n_bins": n_bins,
            "closed": closed,
            "metrics": ["ece", "mce", "rmsce", "brier", "accuracy"],
        }
        body = _npz(**{field: values}, labels=labels, parameters=np.array(json.dumps(options)))
        result = http.post("/v1/calibration", content=body, headers=headers).json()
        metrics = result["metrics"]
        got = merged.calibration_errors(n_bins, closed=closed)
        for name in ("ece", "mce", "rmsce"):
            np.testing.assert_allclose(got[name], metrics[name], rtol=1e-12, atol=0, err_msg=name)
        np.testing.assert_allclose(merged.brier(), metrics["brier"], rtol=1e-12)
        np.testing.assert_allclose(merged.accuracy(), metrics["accuracy"], rtol=1e-12)


def test_32_row_float32_batches_match_one_large_request(http):
    """The monitor's case: many small batches against one request of every row (another kernel path)."""
    values, labels = dataset("logits", np.float32, 3000, 10, seed=12)
    merged = merge_stats(
        [
            p.to_bytes()
            for p in batch_stats("logits", values, labels, partition(np.random.default_rng(0), 3000, 94))
        ]
    )
    headers = {"content-type": "application/x-npz"}
    ce = http.post("/v1/cross-entropy", content=_npz(logits=values, labels=labels), headers=headers).json()
    np.testing.assert_allclose(merged.cross_entropy(), ce["loss"], rtol=1e-12)
    options = np.array(
        json.dumps({"metrics": ["ece", "mce", "rmsce", "brier", "accuracy", "mean_confidence"]})
    )
    body = _npz(logits=values, labels=labels, parameters=options)
    metrics = http.post("/v1/calibration", content=body, headers=headers).json()["metrics"]
    got = {**merged.calibration_errors(), "brier": merged.brier(), "accuracy": merged.accuracy()}
    got["mean_confidence"] = merged.mean_confidence()
    for name, value in got.items():
        np.testing.assert_allclose(value, metrics[name], rtol=1e-12, err_msg=name)


def test_reliability_matches_the_route(http):
    values, labels = dataset("probs", np.float64, 200, 3, seed=9)
    merged = merge_stats(batch_stats("probs", values, labels, [slice(0, 50), slice(50, 200)]))
    options = {"n_bins": 10, "closed": "left", "metrics": ["reliability"]}
    body = {"probs": values.tolist(), "labels": labels.tolist(), **options}
    bins = http.post("/v1/calibration", json=body).json()["reliability"][0]
    got = merged.reliability(10, closed="left")
    np.testing.assert_array_equal(got.lower, bins["lower"])
    np.testing.assert_array_equal(got.upper, bins["upper"])
    np.testing.assert_array_equal(got.count, bins["count"])
    for name in ("confidence", "accuracy", "wilson_low", "wilson_high"):
        expected = np.array([math.nan if v is None else v for v in bins[name]])
        np.testing.assert_allclose(getattr(got, name), expected, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_predictions_then_labels_equals_all(kind):
    """The late-label path: prediction side first, labels later (some rows never labelled)."""
    values, labels = dataset(kind, np.float64, 90, 3, seed=4)
    partial = labels.copy()
    partial[::4] = -1  # never labelled
    dist = distribution(kind, values)
    whole = MonitorStats.summarise(dist, partial)
    predictions = MonitorStats.summarise(distribution(kind, values), None, part="predictions")
    late = [
        MonitorStats.summarise(distribution(kind, values[s]), partial[s], part="labels")
        for s in (slice(0, 30), slice(30, 90))
    ]
    assert predictions.n_labelled == 0 and late[0].n_predictions == 0
    assert_same_stats(merge_stats([late[1], predictions, late[0]]), whole)
    kept = partial >= 0
    labelled_only = MonitorStats.summarise(distribution(kind, values[kept]), labels[kept])
    assert whole.n_predictions == 90 and whole.n_labelled == int(kept.sum())
    for name in ("nll_sum", "brier_sum", "correct", "labelled_confidence_sum"):
        np.testing.assert_allclose(getattr(whole, name), getattr(labelled_only, name), rtol=1e-12)
    np.testing.assert_array_equal(whole.top.count, labelled_only.top.count)
    np.testing.assert_array_equal(whole.label_counts, np.bincount(labels[kept], minlength=whole.n_classes))


def test_part_labels_needs_labels():
    with pytest.raises(InputError, match='required with part="labels"'):
        MonitorStats.summarise(Distribution.from_probs(np.array([0.5])), None, part="labels")
    with pytest.raises(InputError, match="must be"):
        MonitorStats.summarise(Distribution.from_probs(np.array([0.5])), [1], part="both")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"must lie in \[0, 2\)"):
        MonitorStats.summarise(Distribution.from_probs(np.array([0.5])), [-2])


@settings(max_examples=30, deadline=None)
@given(
    p=st.lists(st.integers(0, 50), min_size=2, max_size=8).filter(lambda v: sum(v) > 0),
    data=st.data(),
    base=st.sampled_from([2, math.e, 10]),
)
def test_js_drift_is_scipy_jensenshannon_distance_squared(p, data, base):
    q = data.draw(st.lists(st.integers(0, 50), min_size=len(p), max_size=len(p)).filter(lambda v: sum(v) > 0))
    expected = jensenshannon(np.array(p, float), np.array(q, float), base=base) ** 2  # distance² = divergence
    assert js_drift(p, q, base=base) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_class_distributions_and_their_drift():
    values, labels = dataset("logits", np.float64, 400, 4, seed=1)
    stats = MonitorStats.summarise(distribution("logits", values), labels)
    np.testing.assert_allclose(stats.label_distribution(), np.bincount(labels, minlength=4) / 400, rtol=1e-15)
    predicted = np.bincount(values.argmax(axis=1), minlength=4) / 400
    np.testing.assert_allclose(stats.predicted_distribution(), predicted, rtol=1e-15)
    drift = js_drift(stats.predicted_distribution(), stats.label_distribution())
    assert drift == pytest.approx(jensenshannon(predicted, np.bincount(labels) / 400, base=2) ** 2, rel=1e-12)
    with pytest.raises(InputError, match="as many classes"):
        js_drift([1, 2], [1, 2, 3])
    with pytest.raises(InputError, match="non-negative"):
        js_drift([1, -2], [1, 2])


def test_integer_weights_equal_repeated_rows():
    values, labels = dataset("probs", np.float64, 60, 3, seed=8)
    repeats = np.random.default_rng(0).integers(0, 4, 60)
    weighted = MonitorStats.summarise(Distribution.from_probs(values), labels, sample_weight=repeats)
    repeated = MonitorStats.summarise(
        Distribution.from_probs(values.repeat(repeats, axis=0)), labels.repeat(repeats)
    )
    assert weighted.weighted and not repeated.weighted
    for n_bins in (5, 15):
        for name, value in weighted.calibration_errors(n_bins).items():
            assert value == pytest.approx(repeated.calibration_errors(n_bins)[name], rel=1e-12), name
    for metric in ("cross_entropy", "accuracy", "brier", "mean_confidence"):
        assert getattr(weighted, metric)() == pytest.approx(getattr(repeated, metric)(), rel=1e-12), metric
    np.testing.assert_allclose(weighted.label_distribution(), repeated.label_distribution(), rtol=1e-12)
    unweighted = MonitorStats.summarise(Distribution.from_probs(values), labels)
    mixed = merge_stats([weighted, unweighted])
    both = MonitorStats.summarise(
        Distribution.from_probs(np.concatenate([values, values])),
        np.concatenate([labels, labels]),
        sample_weight=np.concatenate([repeats, np.ones(60)]),
    )
    assert mixed.weighted
    assert mixed.accuracy() == pytest.approx(both.accuracy(), rel=1e-12)
    assert mixed.calibration_errors()["ece"] == pytest.approx(both.calibration_errors()["ece"], rel=1e-12)


def test_empty_stats_give_nan_and_merge_as_identity():
    empty = MonitorStats.empty(3)
    assert math.isnan(empty.cross_entropy()) and math.isnan(empty.accuracy()) and math.isnan(empty.brier())
    assert all(math.isnan(v) for v in empty.calibration_errors().values())
    assert np.isnan(empty.label_distribution()).all()
    values, labels = dataset("probs", np.float64, 30, 3, seed=2)
    stats = MonitorStats.summarise(Distribution.from_probs(values), labels)
    assert_same_stats(empty.merge(stats), stats, rtol=0)
    with pytest.raises(InputError, match="must share K"):
        stats.merge(MonitorStats.empty(4))
    with pytest.raises(InputError, match="must share K"):
        MonitorStats.empty(2).merge(MonitorStats.empty(2, binary=True))


def test_positive_class_target_needs_two_classes():
    values, labels = dataset("probs", np.float64, 50, 2, seed=3)
    stats = MonitorStats.summarise(Distribution.from_probs(values), labels)
    report = calibration_report(labels, Distribution.from_probs(values), Convention(target="positive_class"))
    assert stats.calibration_errors(target="positive_class")["ece"] == pytest.approx(
        report.scalars["ece"], rel=1e-12
    )
    with pytest.raises(InputError, match="positive_class"):
        MonitorStats.empty(3).calibration_errors(target="positive_class")


def test_struct_is_little_endian_header():
    blob = MonitorStats.summarise(Distribution.from_probs(np.array([0.5, 0.9])), [1, 1]).to_bytes()
    version, flags, width, index_width, k = struct.unpack_from("<BBBBI", blob)
    assert (version, flags, width, index_width, k) == (1, 1 | 4 | 8, 1, 1, 2)  # binary, positive, dense
    assert struct.unpack_from("<QQQ", blob, 8) == (2, 2, 1)
