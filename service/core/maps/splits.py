"""Random sample splits for out-of-sample checks of a recalibration fit."""

import numpy as np

from .._typing import IntArray
from ..errors import InputError

Split = tuple[IntArray, IntArray]


def holdout_split(n: int, fraction: float, *, seed: int) -> list[Split]:
    """One (fit, eval) split holding out ``round(fraction · n)`` samples (at least one each side).

    Examples
    --------
    >>> [len(part) for part in holdout_split(10, 0.2, seed=0)[0]]
    [8, 2]
    """
    n_eval = min(max(round(fraction * n), 1), n - 1)
    if n < 2:
        raise InputError("validation.holdout", f"needs at least 2 samples; got {n}")
    order = np.random.default_rng(seed).permutation(n)
    return [(np.sort(order[n_eval:]), np.sort(order[:n_eval]))]


def fold_splits(n: int, folds: int, *, seed: int) -> list[Split]:
    """K (fit, eval) splits of a random permutation into near-equal folds; every sample is evaluated once.

    Examples
    --------
    >>> [len(evaluated) for _, evaluated in fold_splits(10, 3, seed=0)]
    [4, 3, 3]
    """
    if folds > n:
        raise InputError("validation.folds", f"must be at most the number of samples ({n}); got {folds}")
    order = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(order, folds)
    return [
        (np.sort(np.concatenate(parts[:i] + parts[i + 1 :])), np.sort(part)) for i, part in enumerate(parts)
    ]
