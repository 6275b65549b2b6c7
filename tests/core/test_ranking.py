import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import top_k_accuracy_score
from torchmetrics.classification import MulticlassAccuracy

from service.core import label_rank, top_k_accuracy

kernel = sys.modules["service.core.ranking"]


@pytest.mark.parametrize("k_classes", [3, 10, 100])
def test_top_k_accuracy_matches_sklearn_and_torchmetrics(rng, monkeypatch, k_classes):
    monkeypatch.setattr(kernel, "BLOCK_ELEMENTS", 7 * k_classes)  # 7 rows a block
    n = 501
    scores = rng.standard_normal((n, k_classes))
    labels = rng.integers(0, k_classes, size=n)
    ks = [k for k in (1, 2, 5, 10) if k < k_classes]
    got = top_k_accuracy(label_rank(labels, scores), ks)
    for k, value in zip(ks, got, strict=True):
        expected = top_k_accuracy_score(labels, scores, k=k, labels=np.arange(k_classes))
        assert value == pytest.approx(expected, abs=1e-15)
        metric = MulticlassAccuracy(num_classes=k_classes, top_k=k, average="micro")
        assert value == pytest.approx(
            metric(torch.from_numpy(scores), torch.from_numpy(labels)).item(), abs=1e-6
        )


def test_rank_zero_is_argmax_accuracy_with_ties_to_the_lower_class():
    scores = np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [1 / 3, 1 / 3, 1 / 3]])
    labels = np.array([0, 1, 2, 2])
    rank = label_rank(labels, scores)
    np.testing.assert_array_equal(rank, [0, 1, 1, 2])
    np.testing.assert_array_equal(rank == 0, scores.argmax(axis=1) == labels)


def test_k_at_least_k_classes_is_perfect_as_sklearn():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    labels = np.array([0, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that k >= n_classes gives a perfect score
        expected = top_k_accuracy_score(labels, scores[:, 1], k=2, labels=[0, 1])
    assert top_k_accuracy(label_rank(labels, scores), [2, 7]).tolist() == [expected, 1.0]


def test_no_samples_give_nan():
    assert np.isnan(top_k_accuracy(np.empty(0, np.intp), [1, 5])).all()
