"""Where the true class ranks among the predicted scores: top-k accuracy."""

import numpy as np
from numpy.typing import ArrayLike

from ._typing import FloatArray, IntArray
from .cancel import checkpoint

BLOCK_ELEMENTS = 1 << 16  # scores compared per block: the N×K booleans stay in cache


def label_rank(labels: ArrayLike, scores: ArrayLike) -> IntArray:
    """How many classes rank above each sample's true class (0: the top class), per sample.

    Parameters
    ----------
    labels : array-like of int, shape (n_samples,)
        True classes in ``[0, n_classes)``. Not validated here.
    scores : array-like of float, shape (n_samples, n_classes)
        Probabilities or logits (any order-preserving score).

    Returns
    -------
    rank : ndarray of int, shape (n_samples,)
        ``#{c : s[c] > s[y]} + #{c < y : s[c] = s[y]}``: ties go to the lower class, as
        ``argmax`` breaks them, so ``rank == 0`` is top-1 accuracy. Top-k accuracy is
        ``mean(rank < k)``: scikit-learn's ``top_k_accuracy_score`` and torchmetrics'
        ``MulticlassAccuracy(top_k=k, average="micro")`` where scores hold no ties (on ties
        scikit-learn ranks the higher class first); ``k ≥ K`` gives 1, as scikit-learn.

    Examples
    --------
    >>> label_rank([2, 0, 1], [[0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])
    array([0, 2, 1])
    """
    y = np.asarray(labels)
    s = np.asarray(scores)
    n, k = s.shape
    out = np.empty(n, np.intp)
    columns = np.arange(k)
    rows = max(1, BLOCK_ELEMENTS // max(k, 1))
    for start in range(0, n, rows):  # blocks of rows sized for the cache, never single samples
        checkpoint()
        block = slice(start, start + rows)
        sb, yb = s[block], y[block]
        true = np.take_along_axis(sb, yb[:, None], axis=1)
        above = sb > true
        above |= (sb == true) & (columns < yb[:, None])
        out[block] = np.count_nonzero(above, axis=1)
    return out


def top_k_accuracy(rank: IntArray, ks: ArrayLike, *, sample_weight: FloatArray | None = None) -> FloatArray:
    """``mean(rank < k)`` for each k of `ks` (from :func:`label_rank`), in float64; NaN for no samples.

    With `sample_weight` s, ``Σ s·[rank < k] / Σ s`` (scikit-learn's ``sample_weight``).

    Examples
    --------
    >>> top_k_accuracy(np.array([0, 2, 1]), [1, 2, 5])
    array([0.33333333, 0.66666667, 1.        ])
    """
    counts = np.bincount(rank, weights=sample_weight, minlength=1).cumsum()
    k = np.asarray(ks, dtype=np.intp)
    hits = np.where(k >= 1, counts[np.clip(k - 1, 0, counts.size - 1)], 0)
    total = rank.size if sample_weight is None else float(sample_weight.sum())
    if total == 0:
        return np.full(k.shape, np.nan)
    return np.asarray(hits / total, dtype=np.float64)
