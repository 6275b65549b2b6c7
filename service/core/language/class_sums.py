"""Class-wise calibration of (B, T, K) sequences: every class's bin sums, a block of rows at a time.

Class-wise and marginal targets, and the Murphy decomposition of the Brier score, bin every
class's (probability, is-the-label) pair. With shared edges (uniform or explicit binning) a
pair's bin does not depend on the other positions, so each block of scored positions is binned
and its per-(class, bin) sums added to the running totals: the sums, and every metric built
from them, equal the N×K report's on the flattened scored rows, and only a block of K×rows
pairs exists at a time. Equal-mass bins need each class's quantiles over all positions first,
so they are refused.
"""

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from .._typing import FloatArray, IntArray
from ..calibration.bin_edges import bins_for_rule
from ..calibration.binned import BinMeans, BinSums, binned_error
from ..calibration.brier import murphy_terms
from ..calibration.conventions import Convention, Target
from ..calibration.pairs import Pairs, _bin_pairs, _edge_rule_for, _prepare_confidence
from ..calibration.report import Reliability
from ..calibration.report import _reliability as reliability_bins
from ..calibration.scalars import scalars_of_sums
from ..distribution import Distribution
from ..errors import InputError
from .blocks import Scratch
from .sequences import PredictionKind, check_values, labelled_positions
from .weighted import _blocks, _kernel


@dataclass(frozen=True)
class ClassSums:
    """Per-(class, bin) sums of the scored positions, shape (1, K, S) each.

    Attributes
    ----------
    binned : BinSums or None
        The target's pairs (class-wise or marginal), when asked.
    means_from : BinSums or None
        Sums over the float32-rounded bins the per-bin means come from (``input_dtype_means``).
    brier : BinSums or None
        Every class's raw pairs with second moments: the Murphy decomposition's.
    lower, upper : ndarray of shape (K, S)
        Bin edges of each class.
    n_bins : int
        Bins per class.
    convention : Convention
        The convention in force (edge rule resolved).
    """

    binned: BinSums | None
    means_from: BinSums | None
    brier: BinSums | None
    lower: FloatArray
    upper: FloatArray
    n_bins: int
    convention: Convention


def class_bin_sums(
    labels: ArrayLike,
    values: ArrayLike,
    convention: Convention,
    *,
    target: Target,
    brier: bool = False,
    kind: PredictionKind = "logits",
    mask: ArrayLike | None = None,
    ignore_index: int | None = -100,
    bfloat16: bool = False,
    field: str | None = None,
) -> ClassSums:
    """Bin sums of every class's pairs over the scored positions of (B, T, K) `values`.

    Parameters
    ----------
    labels, values, kind, mask, ignore_index, bfloat16, field
        As :func:`~service.core.language.sequences.token_scores`.
    convention : Convention
        Binning "uniform" or "edges" (shared edges); the N×K report's conventions otherwise.
    target : {"classwise", "marginal", "top_label"}
        Class-wise and marginal targets sum the target's pairs; top_label only the Brier pairs.
    brier : bool, default=False
        Also sum the Murphy decomposition's pairs (raw probabilities, second moments).

    Returns
    -------
    ClassSums
        Sums equal to :func:`~service.core.calibration.binned.bin_sums` of the N×K report's pairs
        on the flattened scored rows (up to the order of float64 additions).

    Examples
    --------
    >>> s = class_bin_sums([[0, 1]], np.zeros((1, 2, 2)), Convention(n_bins=2), target="classwise")
    >>> s.binned.count[0], s.binned.outcome[0]
    (array([[2., 0.],
           [2., 0.]]), array([[1., 0.],
           [1., 0.]]))
    """
    if convention.binning == "quantile":
        raise InputError(
            "binning",
            'is not supported with B×T×K sequence inputs for class-wise pairs ("quantile" needs every '
            'position of each class at once); use "uniform" or "edges"',
        )
    name = field or kind
    z = check_values(values, name, bfloat16=bfloat16)
    b, t, k = z.shape
    work = np.dtype(np.float64 if z.dtype == np.float64 else np.float32)
    kernel = _kernel(kind, name, t, bfloat16, 0.0, "bfloat16" if bfloat16 else z.dtype.name)
    y_all, scored = labelled_positions(labels, mask, ignore_index, (b, t), k)
    flat_scored, y = scored.reshape(-1), y_all.reshape(-1)
    n = int(np.count_nonzero(scored))
    n_bins = bins_for_rule(convention.n_bins, n)
    if convention.binning == "edges":
        n_bins = len(convention.edges or ()) - 1
    tm_float32 = convention.float32_confidence or (convention.preset == "torchmetrics" and work == np.float32)
    effective = _edge_rule_for(convention, tm_float32)
    grouped = target in ("classwise", "marginal")
    rounded = grouped and effective.input_dtype_means and (tm_float32 or work == np.float32)
    width = n_bins + 2  # the bins, an overflow bin when asked, and the slot of pairs in no bin
    # Unclipped, unrounded confidences with every pair kept: the Brier pairs are the target's.
    shared = grouped and not (effective.clip or effective.exclude_zero or (tm_float32 and work != np.float32))
    totals = {
        key: _Totals(k, width, first=not (key == "brier" and shared), second=key == "brier")
        for key, wanted in (("binned", grouped), ("means_from", rounded), ("brier", brier))
        if wanted
    }
    offsets = (np.arange(k) * width)[:, None]  # key of each class's bin 0
    no_outcome = np.empty((0, 0))
    edges: tuple[FloatArray, FloatArray] | None = None
    scratch = Scratch(k, work)
    n_slots = n_bins
    for run, block, _ in _blocks(z, None, scratch.rows):
        z_block = scratch.load(block, bfloat16=bfloat16)
        kernel.check(z_block, run.start)
        keep = flat_scored[run]
        if not keep.any():
            continue
        rows = z_block[keep]
        probs = Distribution.from_logits(rows, validate=False).probs if kind == "logits" else rows
        labels_block = y[run][keep]
        cols = np.ascontiguousarray(probs.T)  # K×rows: each class's pairs together in memory
        if grouped:
            conf = _prepare_confidence(cols, effective, float32=tm_float32)
            pairs = _bin_pairs(conf, no_outcome, effective, n_bins)
            totals["binned"].add(conf, pairs.index, offsets, labels_block)
            if rounded:
                index = pairs.index if pairs.mean_index is None else pairs.mean_index
                totals["means_from"].add(conf, index, offsets, labels_block)
            edges, n_slots = (pairs.lower[0], pairs.upper[0]), pairs.n_slots
        if brier:
            if not shared:
                pairs = _bin_pairs(cols, no_outcome, effective, n_bins, for_brier=True)
            totals["brier"].add(cols, pairs.index, offsets, labels_block)
            edges, n_slots = edges or (pairs.lower[0], pairs.upper[0]), pairs.n_slots
    assert edges is not None  # at least one position is scored (the caller checks)
    found = {key: total.sums(n_slots) for key, total in totals.items()}
    if brier and shared:
        found["brier"] = replace(
            found["brier"],
            count=found["binned"].count,
            conf=found["binned"].conf,
            outcome=found["binned"].outcome,
        )
    return ClassSums(
        found.get("binned"),
        found.get("means_from"),
        found.get("brier"),
        np.broadcast_to(np.asarray(edges[0], np.float64), (k, n_slots)).copy(),
        np.broadcast_to(np.asarray(edges[1], np.float64), (k, n_slots)).copy(),
        n_bins,
        effective,
    )


class _Totals:
    """Running per-(class, slot) sums of one set of pairs, flat (K·width), added in place per block.

    Σ c and Σ c² of a block are one ``np.bincount`` each, as
    :func:`~service.core.calibration.binned.bin_sums` makes them, added to the totals: the same
    float64 additions in the same order. Counts and outcomes are whole numbers (exact in any
    order), added in place; outcomes are 0/1, so Σ o and Σ c·o are summed over each row's label
    pair only (the other terms are exact zeros), Σ c·o a block's partial sum per cell first.
    """

    def __init__(self, k: int, width: int, *, first: bool, second: bool) -> None:
        self.size = k * width
        self.shape = (k, width)
        self.count = np.zeros(self.size if first else 0, np.int64)  # first moments: summed elsewhere
        self.conf = np.zeros(self.size if first else 0)
        self.outcome = np.zeros(self.size if first else 0)
        self.conf_sq = np.zeros(self.size if second else 0)
        self.conf_outcome = np.zeros(self.size if second else 0)
        self.n = 0

    def add(self, conf: FloatArray, index: IntArray, offsets: IntArray, labels: IntArray) -> None:
        """Add the pairs of a K×rows block: `index` their slots, `labels` each row's class."""
        rows = labels.size
        keys = np.add(index, offsets, dtype=np.intp).ravel()
        c = conf.astype(np.float64, copy=False).ravel()
        at = labels * rows + np.arange(rows)  # flat position of each row's label pair
        label_keys = keys[at]
        if self.count.size:
            np.add.at(self.count, keys, 1)
            self.conf += np.bincount(keys, weights=c, minlength=self.size)
            np.add.at(self.outcome, label_keys, 1.0)
        if self.conf_sq.size:
            self.conf_sq += np.bincount(keys, weights=c * c, minlength=self.size)
            cells, where = np.unique(label_keys, return_inverse=True)
            partial = np.zeros(cells.size)
            np.add.at(partial, where, c[at])  # the block's Σ c·o per cell, in row order
            self.conf_outcome[cells] += partial
        self.n += rows

    def sums(self, n_slots: int) -> BinSums:
        """The totals as (1, K, S) bin sums (slots past `n_slots` hold pairs in no bin)."""

        def cut(values: np.ndarray) -> FloatArray:
            if not values.size:
                return np.zeros((1, self.shape[0], n_slots))
            return values.astype(np.float64).reshape(1, *self.shape)[..., :n_slots]

        return BinSums(
            count=cut(self.count),
            conf=cut(self.conf),
            outcome=cut(self.outcome),
            conf_sq=cut(self.conf_sq),
            conf_outcome=cut(self.conf_outcome),
            n=np.full((1, 1, 1), float(self.n)),
        )


@dataclass(frozen=True)
class ClassReport:
    """What class sums give: scalars, per-class errors, reliability bins and excluded bins."""

    scalars: dict[str, float]
    per_class: dict[str, list[float]]
    reliability: list[Reliability]
    n_excluded_bins: int


def class_report(sums: ClassSums, target: Target, *, brier_factor: float, reliability: bool) -> ClassReport:
    """The N×K report's binned scalars, per-class errors and Murphy terms, from class sums.

    Binned errors (class-wise mean or marginal) come from ``sums.binned`` as
    :func:`~service.core.calibration.scalars.binned_scalars` computes them; the Brier terms
    from ``sums.brier`` by :func:`~service.core.calibration.brier.murphy_terms`, scaled by
    `brier_factor`.

    Examples
    --------
    >>> s = class_bin_sums([[0, 1]], np.zeros((1, 2, 2)), Convention(n_bins=2), target="classwise")
    >>> class_report(s, "classwise", brier_factor=1.0, reliability=False).scalars["ece"]
    0.0
    """
    scalars: dict[str, float] = {}
    per_class: dict[str, list[float]] = {}
    bins: list[Reliability] = []
    excluded = 0
    conv = sums.convention
    if sums.binned is not None:
        values = scalars_of_sums(sums.binned, sums.means_from, conv, target)
        means: BinMeans = values.pop("_means")  # type: ignore[assignment]
        values.pop("_sums")
        scalars.update({name: float(v[0]) for name, v in values.items()})
        per_class = {
            "calibration_error": binned_error(means, conv.norm)[0].tolist(),
            "ece": binned_error(means, "l1")[0].tolist(),
        }
        excluded = int(np.count_nonzero((sums.binned.count[0] > 0) & ~means.valid[0]))
        if reliability:
            empty = np.empty((sums.lower.shape[0], 0))
            edges = Pairs(empty, empty, empty.astype(np.int64), sums.lower.shape[1], sums.lower, sums.upper)
            bins = reliability_bins(edges, sums.binned, means, conv.level, True, False)
    if sums.brier is not None:
        terms = murphy_terms(sums.brier, brier_factor)
        scalars.update(
            {
                "brier_reliability": float(terms.reliability[0]),
                "brier_resolution": float(terms.resolution[0]),
                "brier_uncertainty": float(terms.uncertainty[0]),
                "brier_within_bin_variance": float(terms.within_bin_variance[0]),
                "brier_within_bin_covariance": float(terms.within_bin_covariance[0]),
            }
        )
    return ClassReport(scalars, per_class, bins, excluded)
