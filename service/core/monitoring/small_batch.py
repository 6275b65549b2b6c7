"""A fused :meth:`~service.core.monitoring.stats.MonitorStats.summarise` for small unweighted batches.

A monitor's typical write is a few dozen rows, far fewer than the fine histogram's 5,041 cells:
there every NumPy call costs microseconds whatever its size, and the general path's glue (one
dict of fields per side, an empty side built and discarded, a histogram per side through its
general reducer) cost more than the arithmetic. :func:`summarise_small` computes the same
statistics with one softmax pass (through the distribution's cached summary) serving the NLL,
the top-label class and confidence, the Brier terms and, for K = 2, the positive-class
probability; the histograms are reduced over the at most n occupied cells only.

Every value is the general path's, bit for bit: the same per-row values (the probabilities are
``exp(z - lse)``, argmax is of the probabilities, as ``/v1/calibration``), the same float64
reductions over the same arrays, and per-cell sums added in row order (``np.bincount`` over
the occupied cells, as :meth:`FineHistogram.reduce` does below its sparse threshold).
"""

from dataclasses import fields

import numpy as np

from .._typing import FloatArray, IntArray
from ..calibration.brier import brier_rows
from ..distribution import Distribution
from ..logsumexp import SMALL_ELEMENTS, minus
from .fine_histogram import FINE_EDGES, N_CELLS, SPARSE_RATIO, FineHistogram, weighted_bincount
from .stats import MonitorStats

#: Largest batch (rows) this path takes: its histograms stay below `FineHistogram.reduce`'s sparse threshold.
MAX_ROWS = (N_CELLS - 1) // SPARSE_RATIO
_EMPTY_HIST = FineHistogram.empty()
_FIELDS = tuple(field.name for field in fields(MonitorStats))
_HIST_FIELDS = tuple(field.name for field in fields(FineHistogram))


def fits_small(dist: Distribution) -> bool:
    """Whether :func:`summarise_small` takes `dist`: K classes (no binary vector), few rows and values."""
    n, k = dist.n_samples, dist.n_classes
    return not dist.binary and 0 < n <= MAX_ROWS and n * k <= SMALL_ELEMENTS


def summarise_small(dist: Distribution, labels: IntArray | None) -> MonitorStats:
    """``MonitorStats.summarise(dist, labels)`` (unweighted, ``part="all"``) for a small batch, fused.

    Parameters
    ----------
    dist : Distribution
        K-class logits or probabilities (validated), :func:`fits_small`.
    labels : ndarray of int, shape (n_samples,), or None
        Valid class indices for every row (already checked), or None: no row labelled.

    Returns
    -------
    stats : MonitorStats
        Bit for bit the general path's (module docstring).

    Examples
    --------
    >>> dist = Distribution.from_probs(np.array([[0.9, 0.1], [0.3, 0.7]]))
    >>> stats = summarise_small(dist, np.array([0, 0]))
    >>> stats.accuracy(), round(stats.cross_entropy(), 6), stats.top.cells.tolist()  # on edges 1764, 2268
    (0.5, 0.654667, [3528, 4536])
    """
    n, k = dist.n_samples, dist.n_classes
    if dist.logits is not None:
        summary = dist.summarise(labels=labels)  # the one pass: normalisers and the labels' logits
        probs = minus(dist.logits, summary.lse[:, None], summary)  # −inf past the dtype's range: p = 0
        np.exp(probs, out=probs)
    else:
        probs = dist.probs
    predicted = probs.argmax(axis=1)  # the first maximum of the probabilities, as row_argmax
    rows = np.arange(n)
    top = probs[rows, predicted]
    confidence_sum = float(np.add.reduce(top.astype(np.float64, copy=False)))
    predicted_counts = np.bincount(predicted, minlength=k).astype(np.int64, copy=False)
    if labels is None:
        empty = np.zeros(k, np.int64)
        positive = _EMPTY_HIST if k == 2 else None
        return _stats(
            k, False, n, float(n), confidence_sum, predicted_counts,
            0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, empty, _EMPTY_HIST, positive, None, None,
        )  # fmt: skip
    losses = dist.nll_at(labels)
    correct = predicted == labels
    n_correct = int(np.count_nonzero(correct))
    return _stats(
        k,
        False,
        n,
        float(n),
        confidence_sum,
        predicted_counts,
        n,
        float(n),
        float(np.add.reduce(losses.astype(np.float64, copy=False))),
        float(np.add.reduce(brier_rows(labels, probs))),
        n_correct,
        float(n_correct),
        confidence_sum,  # every row is labelled: the same sum
        np.bincount(labels, minlength=k).astype(np.int64, copy=False),
        occupied_histogram(top, correct),
        occupied_histogram(probs[:, 1], labels == 1) if k == 2 else None,
        None,  # unweighted
        None,
    )


def _stats(*values: object) -> MonitorStats:
    """``MonitorStats(*values)``, every field in order, without the frozen dataclass's ``__init__``.

    That ``__init__`` sets each of the 18 fields through ``object.__setattr__``; filling the
    instance's dict at once takes about a quarter of the time (~7 µs less per write). The class
    has no ``__post_init__``: the object is the one ``__init__`` builds.
    """
    stats: MonitorStats = object.__new__(MonitorStats)
    stats.__dict__.update(zip(_FIELDS, values, strict=True))
    return stats


def _histogram(*values: object) -> FineHistogram:
    """``FineHistogram(*values)`` as :func:`_stats` builds its statistics (no ``__post_init__`` either)."""
    hist: FineHistogram = object.__new__(FineHistogram)
    hist.__dict__.update(zip(_HIST_FIELDS, values, strict=True))
    return hist


def occupied_histogram(conf: FloatArray, outcome: np.ndarray) -> FineHistogram:
    """``FineHistogram.of(conf, outcome, None)`` of at most `MAX_ROWS` rows: sums per occupied cell only.

    Examples
    --------
    >>> occupied_histogram(np.array([0.5, 0.9, 0.5]), np.array([True, False, False])).count
    array([2, 1])
    """
    # fine_cells(conf), by one binary search: the first edge ≥ c is edge j; c on it: cell 2j, else 2j - 1
    j = np.searchsorted(FINE_EDGES, conf)  # (float32 values compared as float64, as fine_cells does)
    cells = 2 * j - 1
    cells += FINE_EDGES[j] == conf
    present = np.zeros(N_CELLS, bool)  # the occupied cells, found through a table of all 5,041
    present[cells] = True
    used = present.nonzero()[0]  # increasing (1-D: np.flatnonzero without its wrapper's ravel)
    rank = np.empty(N_CELLS, np.intp)
    rank[used] = np.arange(used.size)
    inverse: IntArray = rank[cells]  # each row's place among the occupied cells
    count = np.bincount(inverse, minlength=used.size).astype(np.int64, copy=False)
    sums = weighted_bincount(inverse, conf.astype(np.float64, copy=False), used.size)
    hits = weighted_bincount(inverse, outcome.astype(np.float64), used.size)
    return _histogram(used.astype(np.int64, copy=False), count, sums, hits, None)
