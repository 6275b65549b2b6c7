import math

import numpy as np
import pytest

from service.core import Distribution, InputError, MonitorStats, merge_stats
from service.core.monitoring.series import series_metrics


def _blob(rng, k, binary, weighted):
    n = int(rng.integers(1, 40))
    if binary:
        dist = Distribution.from_probs(np.round(rng.random(n) * 20) / 20)  # on edges too
    else:
        dist = Distribution.from_logits(2 * rng.standard_normal((n, k)))
    labels = rng.integers(-1, k, size=n)  # some not labelled yet
    weights = rng.random(n) * 3 if weighted else None
    return MonitorStats.summarise(dist, labels, sample_weight=weights).to_bytes()


@pytest.mark.parametrize(("k", "binary", "weighted"), [(5, False, False), (2, True, False), (4, False, True)])
@pytest.mark.parametrize("closed", ["right", "left"])
def test_each_group_equals_merging_its_blobs(rng, k, binary, weighted, closed):
    blobs = [_blob(rng, k, binary, weighted and i % 2 == 0) for i in range(60)]
    groups = rng.integers(0, 7, size=60)
    groups[groups == 3] = 4  # group 3 stays empty
    m = series_metrics(blobs, groups, 8, n_bins=12, closed=closed, base=2)
    for g in range(8):
        mine = [b for b, gg in zip(blobs, groups, strict=True) if gg == g]
        if not mine:
            assert m.n[g] == 0 and math.isnan(m.cross_entropy[g]) and math.isnan(m.mean_confidence[g])
            continue
        s = merge_stats(mine)
        errors = s.calibration_errors(12, closed=closed)
        assert (m.n[g], m.n_labelled[g]) == (s.n_predictions, s.n_labelled)
        for got, want in [
            (m.cross_entropy[g], s.cross_entropy(base=2)),
            (m.accuracy[g], s.accuracy()),
            (m.brier[g], s.brier()),
            (m.ece[g], errors["ece"]),
            (m.mce[g], errors["mce"]),
            (m.rmsce[g], errors["rmsce"]),
            (m.mean_confidence[g], s.mean_confidence()),
        ]:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-15, nan_ok=True)


def test_bad_groups_and_bins_raise():
    blob = MonitorStats.summarise(Distribution.from_probs(np.array([0.7])), [1]).to_bytes()
    with pytest.raises(InputError, match="groups"):
        series_metrics([blob], [3], 2)
    with pytest.raises(InputError, match="must divide 2520"):
        series_metrics([blob], [0], 1, n_bins=16)
    with pytest.raises(InputError, match="stats"):
        series_metrics([b"short"], [0], 1)


@pytest.mark.parametrize(("k", "binary", "weighted"), [(5, False, False), (2, True, False), (4, False, True)])
def test_per_blob_sums_add_up_to_each_group(rng, k, binary, weighted):
    from service.core.monitoring.series import group_sums, sums_metrics

    blobs = [_blob(rng, k, binary, weighted and i % 3 == 0) for i in range(40)]
    groups = rng.integers(0, 5, size=40)
    each = group_sums(blobs, np.arange(40), 40, n_bins=14, closed="left")
    grouped = group_sums(blobs, groups, 5, n_bins=14, closed="left")
    added = np.zeros_like(grouped.table)
    np.add.at(added, groups, each.table)
    np.testing.assert_allclose(added, grouped.table, rtol=1e-12, atol=1e-15)
    m = sums_metrics(added, 14, n_classes=k, binary=binary)
    for g in range(5):
        mine = [b for b, gg in zip(blobs, groups, strict=True) if gg == g]
        if not mine:
            continue
        s = merge_stats(mine)
        assert m.n_labelled[g] == s.n_labelled
        assert m.ece[g] == pytest.approx(s.calibration_errors(14, closed="left")["ece"], rel=1e-12, abs=1e-15)
        assert m.brier[g] == pytest.approx(s.brier(), rel=1e-12, abs=1e-15, nan_ok=True)


def test_sums_table_of_the_wrong_width_raises():
    from service.core.monitoring.series import sums_metrics

    with pytest.raises(InputError, match="table"):
        sums_metrics(np.zeros((2, 9)), 15, n_classes=3, binary=False)
