"""Mergeable sufficient statistics of scored rows, and the metrics computed from them (monitors).

:meth:`MonitorStats.summarise` reduces a batch to counts and float64 sums;
:meth:`MonitorStats.merge` / :func:`merge_stats` add them (associative and commutative:
integer counts exactly, float sums up to float64 rounding); the metrics of the merged
statistics are those of ``/v1/calibration`` and ``/v1/cross-entropy`` on all the rows at once
with their default conventions:

- cross-entropy: mean of ``-log p[y]`` computed per row as ``/v1/cross-entropy`` does
  (log-sum-exp for logits, softplus for binary logits, ``log(max(p, eps))`` for probabilities),
  in any base;
- accuracy: the top-label class (first maximum of the probabilities) equals the label;
- Brier: ``Σ_k (p_k - 1[y = k])²``, halved for two classes (``brier_scale="auto"``);
- ECE / MCE / RMSCE: equal-width bins ``fl(i / B)``, ``closed`` ``"right"`` (default) or
  ``"left"``, mass-weighted l1 / max / l2 of ``|mean confidence - accuracy|`` over non-empty
  bins, on top-label pairs (positive-class pairs for binary input, the routes' default target).
  Any B dividing 2520 is exact (:mod:`~service.core.monitoring.fine_histogram`).

Rows carry a label or ``-1`` (not labelled yet): every row counts on the *prediction side*
(count, weight, Σ top-label confidence, predicted-class counts); labelled rows also on the
*labelled side* (NLL, Brier, correct, label counts, fine histograms). ``part="predictions"``
and ``part="labels"`` split a batch so a late label can join its prediction's bucket.

Bytes (:mod:`~service.core.monitoring.codec`): a 100-byte header and packed records for non-empty
classes and cells only (a class section dense when that is smaller). Measured
(``python -m benchmarks.monitor_stats``): a 32-row batch takes 504 bytes at K = 10 and 676 at
K = 1,000; a bucket of 1,000,000 rows 37,836 and 51,876; the upper bound (every class and all
5,041 cells, 8-byte counts) is 131,326 and 147,166 bytes (+8 per class and cell with sample
weights; binary input adds a second histogram).
"""

import importlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from .._typing import FloatArray, IntArray
from ..calibration import Reliability, wilson_interval  # public in service.core
from ..calibration.brier import BrierScale, brier_factor, brier_rows
from ..distribution import Distribution
from ..entropy import nll
from ..errors import InputError
from ..logsumexp import SMALL_ELEMENTS, minus
from ..narrow_rows import NARROW_K, row_argmax
from ..validation import check_labels, check_same_length
from .drift import js_drift
from .fine_histogram import FINE_BINS, FineHistogram, check_bins
from .softmax_rows import RowsPass, softmax_rows


@cache
def _module(name: str) -> ModuleType:
    """The module `name` of this package that imports this one (imported on first use, then held)."""
    return importlib.import_module(f"{__package__}.{name}")


Part = Literal["all", "predictions", "labels"]
Closed = Literal["right", "left"]
Target = Literal["top_label", "positive_class"]
_PARTS = ("all", "predictions", "labels")


@dataclass(frozen=True, eq=False)
class MonitorStats:
    """Sufficient statistics of scored rows; merges exactly (associative, commutative).

    Attributes
    ----------
    n_classes : int
        K (2 for binary input).
    binary : bool
        Built from a positive-class vector or logit.
    n_predictions, weight_predictions, confidence_sum : int, float, float
        Prediction side (every row): rows, ``Σ w``, ``Σ w · top-label confidence``.
    predicted_counts : ndarray of int64, shape (K,)
        Rows per top-label class.
    n_labelled, weight_labelled, nll_sum, brier_sum : int, float, float, float
        Labelled side: rows, ``Σ w``, ``Σ w · (-ln p[y])`` (nats), ``Σ w · Σ_k (p_k - 1[y=k])²``
        (unscaled).
    correct, correct_weight, labelled_confidence_sum : int, float, float
        Rows whose top-label class is the label, their ``Σ w``, and ``Σ w · confidence``.
    label_counts : ndarray of int64, shape (K,)
        Labelled rows per class.
    top : FineHistogram
        Top-label confidence and correctness of labelled rows per fine cell.
    positive : FineHistogram or None
        Positive-class probability and ``y == 1`` per fine cell (K = 2 only).
    predicted_weights, label_weights : ndarray of float64 or None
        ``Σ w`` per class; None when every row weighs 1.
    """

    n_classes: int
    binary: bool
    n_predictions: int
    weight_predictions: float
    confidence_sum: float
    predicted_counts: IntArray
    n_labelled: int
    weight_labelled: float
    nll_sum: float
    brier_sum: float
    correct: int
    correct_weight: float
    labelled_confidence_sum: float
    label_counts: IntArray
    top: FineHistogram
    positive: FineHistogram | None
    predicted_weights: FloatArray | None = None
    label_weights: FloatArray | None = None

    @property
    def weighted(self) -> bool:
        """Some row weighed other than 1 (per-class and per-cell weights are kept)."""
        return self.predicted_weights is not None

    @classmethod
    def empty(cls, n_classes: int, *, binary: bool = False, weighted: bool = False) -> "MonitorStats":
        """No rows, for K classes.

        Examples
        --------
        >>> MonitorStats.empty(3).n_predictions
        0
        """
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise InputError("n_classes", f"must be an integer ≥ 2; got {n_classes!r}")
        if binary and n_classes != 2:
            raise InputError("binary", f"needs n_classes = 2; got {n_classes}")
        zeros = np.zeros(n_classes, np.int64)
        hist = FineHistogram.empty(weighted=weighted)
        w = np.zeros(n_classes) if weighted else None
        positive = hist if n_classes == 2 else None
        return cls(
            n_classes, binary, 0, 0.0, 0.0, zeros, 0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, zeros, hist, positive, w, w
        )

    @classmethod
    def summarise(
        cls,
        dist: Distribution,
        labels: ArrayLike | None,
        *,
        part: Part = "all",
        sample_weight: ArrayLike | None = None,
        validate: bool = True,
    ) -> "MonitorStats":
        """Statistics of one batch of predictions and (some) labels.

        Parameters
        ----------
        dist : Distribution
            The batch's predictions (validated).
        labels : array-like of int, shape (n_samples,), or None
            True classes; ``-1`` marks a row with no label yet (prediction side only).
        part : {"all", "predictions", "labels"}, default="all"
            ``"predictions"``: only the prediction side; ``"labels"``: only the labelled side
            (a late label joining a row whose prediction side was counted already).
        sample_weight : array-like of float, shape (n_samples,), optional
            Non-negative finite weights; every sum is weighted, counts stay row counts.
        validate : bool, default=True
            Check the labels first. Pass False only for labels that went through
            :func:`~service.core.check_labels` (with ``ignore_index=-1``), one per row.

        Examples
        --------
        >>> dist = Distribution.from_probs(np.array([[0.9, 0.1], [0.3, 0.7]]))
        >>> stats = MonitorStats.summarise(dist, [0, 0])
        >>> stats.accuracy(), round(stats.cross_entropy(), 6)
        (0.5, 0.654667)
        """
        if part not in _PARTS:
            raise InputError("part", f'must be "all", "predictions" or "labels"; got {part!r}')
        n, k = dist.n_samples, dist.n_classes
        y = (
            None
            if labels is None
            else np.asarray(labels)
            if not validate
            else check_labels(labels, k, ignore_index=-1)
        )
        if y is not None and validate:
            check_same_length("labels", y.shape[0], n, other="predictions")
        if part == "labels" and y is None:
            raise InputError("labels", 'are required with part="labels"')
        w = _check_weights(sample_weight, n)
        labelled = None if y is None or part == "predictions" else y >= 0
        every = labelled is not None and bool(labelled.all())
        if w is None and part == "all" and (y is None or every):
            small = _module("small_batch")
            if small.fits_small(dist):  # a few dozen rows: the same statistics, fused (small_batch)
                return small.summarise_small(dist, y)
        safe = None if y is None or labelled is None else (y if every else np.where(labelled, y, 0))
        rows = None
        if dist.logits is not None and not dist.binary:
            # /v1/cross-entropy's fused pass, without its top class (the probabilities' is the one
            # used): the same log-normalisers, but for rounding where a row's maximum is tied
            large = k < NARROW_K and n * k > SMALL_ELEMENTS  # (the small path's general twin unchanged)
            # each block's probabilities taken while it is in cache (RowsPass)
            feed = RowsPass(dist.logits, safe) if large else None
            summary = dist.summarise(labels=safe, each=feed)
            if feed is not None:  # (a summary cached before fed nothing: a pass of its own)
                rows = feed.result() if feed.done else softmax_rows(dist.logits, summary, safe)
        if rows is not None:  # the same classes, confidences and probabilities in one blocked pass
            predicted, top, positive = rows.predicted, rows.top, rows.positive
            probs = None
        else:
            probs = _probs(dist)
            predicted, top = row_argmax(probs)  # /v1/calibration's top-label class and confidence
            positive = probs[:, 1] if k == 2 else None
        fields: dict[str, object] = {"n_classes": k, "binary": dist.binary}
        if part != "labels":
            fields.update(_prediction_side(predicted, top, w, k))
        if labelled is not None and safe is not None and labelled.any():
            losses = nll(safe, dist)

            def pick(a: np.ndarray) -> np.ndarray:
                return a if every else a[labelled]

            if rows is not None and rows.brier is not None:
                brier = pick(rows.brier)
            else:
                assert probs is not None
                brier = brier_rows(pick(safe), pick(probs))
            fields.update(
                _labelled_side(
                    pick(safe),
                    pick(predicted),
                    pick(top),
                    pick(losses),
                    brier,
                    None if positive is None else pick(positive),
                    None if w is None else pick(w),
                    k,
                )
            )
        return _build(fields, weighted=w is not None)

    # --- merging and bytes -------------------------------------------------------------

    def merge(self, other: "MonitorStats") -> "MonitorStats":
        """The statistics of both sets of rows (InputError if K or binary differ).

        Examples
        --------
        >>> a = MonitorStats.summarise(Distribution.from_probs(np.array([0.9])), [1])
        >>> b = MonitorStats.summarise(Distribution.from_probs(np.array([0.2])), [1])
        >>> a.merge(b).n_labelled, a.merge(b).accuracy()
        (2, 0.5)
        """
        return merge_stats([self, other])

    def to_bytes(self) -> bytes:
        """Versioned little-endian bytes (:mod:`~service.core.monitoring.codec`)."""
        return _module("codec").encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> "MonitorStats":
        """Statistics from :meth:`to_bytes` output; InputError("stats", ...) on bad bytes."""
        from .codec import decode_many

        return decode_many([data])

    # --- metrics -----------------------------------------------------------------------

    def cross_entropy(self, *, base: float = math.e) -> float:
        """Mean ``-log_base p[y]`` over labelled rows (NaN without any)."""
        if self.weight_labelled == 0:
            return math.nan
        mean = self.nll_sum / self.weight_labelled
        return mean if base == math.e else mean / math.log(base)

    def accuracy(self) -> float:
        """Share of labelled rows whose top-label class is the label (NaN without any)."""
        if self.weight_labelled == 0:
            return math.nan
        return (self.correct if not self.weighted else self.correct_weight) / self.weight_labelled

    def brier(self, *, scale: BrierScale = "auto") -> float:
        """Mean Brier score; ``auto`` halves it for two classes, as ``/v1/calibration`` does."""
        if self.weight_labelled == 0:
            return math.nan
        factor = brier_factor(scale, self.n_classes, binary=self.binary)
        return factor * self.brier_sum / self.weight_labelled

    def mean_confidence(self) -> float:
        """Mean top-label confidence over every row (prediction side; NaN without any)."""
        if self.weight_predictions == 0:
            return math.nan
        return self.confidence_sum / self.weight_predictions

    def _hist(self, target: Target | None) -> FineHistogram:
        target = target or ("positive_class" if self.binary else "top_label")
        if target == "top_label":
            return self.top
        if target != "positive_class" or self.positive is None:
            reason = f'must be "top_label" or "positive_class" (K = 2 only); got {target!r}'
            raise InputError("target", reason + f" with K = {self.n_classes}")
        return self.positive

    def calibration_errors(
        self, n_bins: int = 15, *, closed: Closed = "right", target: Target | None = None
    ) -> dict[str, float]:
        """``{"ece", "mce", "rmsce"}`` with B equal-width bins, B dividing 2520.

        Mass-weighted ``Σ (n_b / N) |conf_b - acc_b|``, ``max |conf_b - acc_b|`` and
        ``sqrt(Σ (n_b / N) (conf_b - acc_b)²)`` over non-empty bins: ``/v1/calibration``'s
        ``ece`` / ``mce`` / ``rmsce``. `target` defaults to positive-class for binary input.
        NaN without labelled rows.

        Examples
        --------
        >>> dist = Distribution.from_probs(np.array([0.2, 0.4, 0.6, 0.8, 1.0, 0.1, 0.3]))
        >>> stats = MonitorStats.summarise(dist, [0, 1, 0, 1, 0, 0, 1])
        >>> round(stats.calibration_errors(5)["ece"], 6)
        0.485714
        """
        n_bins = check_bins(n_bins)
        hist = self._hist(target)
        if self.weight_labelled == 0:
            return {"ece": math.nan, "mce": math.nan, "rmsce": math.nan}
        rows, weight, conf, hits = hist.coarsen(n_bins, _check_closed(closed))
        with np.errstate(invalid="ignore", divide="ignore"):
            confidence, accuracy = conf / weight, hits / weight
        valid = (rows > 0) & (weight > 0)
        mass = np.where(valid, weight / self.weight_labelled, 0.0)
        gap = np.abs(np.where(valid, confidence - accuracy, 0.0))
        return {
            "ece": float((mass * gap).sum()),
            "mce": float(gap.max(initial=0.0)),
            "rmsce": float(np.sqrt((mass * gap * gap).sum())),
        }

    def reliability(
        self, n_bins: int = 15, *, closed: Closed = "right", target: Target | None = None, level: float = 0.95
    ) -> Reliability:
        """Reliability bins (``count`` is ``Σ w``) with Wilson intervals, as ``/v1/calibration``'s."""
        n_bins = check_bins(n_bins)
        rows, weight, conf, hits = self._hist(target).coarsen(n_bins, _check_closed(closed))
        with np.errstate(invalid="ignore", divide="ignore"):
            confidence, accuracy = conf / weight, hits / weight
        edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
        low, high = wilson_interval(hits, weight, level)
        return Reliability(None, edges[:-1], edges[1:], weight, confidence, accuracy, low, high, weight)

    def label_distribution(self) -> FloatArray:
        """Share of labelled rows (weight) per class; NaN without any."""
        return _share(self.label_counts if self.label_weights is None else self.label_weights)

    def predicted_distribution(self) -> FloatArray:
        """Share of rows (weight) per top-label class; NaN without any."""
        return _share(self.predicted_counts if self.predicted_weights is None else self.predicted_weights)


def merge_stats(items: Iterable["MonitorStats | bytes"]) -> MonitorStats:
    """Merge many statistics (objects, or their bytes: decoded together, vectorised) into one.

    Examples
    --------
    >>> a = MonitorStats.summarise(Distribution.from_probs(np.array([0.9])), [1])
    >>> merge_stats([a, a.to_bytes(), a]).n_labelled
    3
    """
    everything = list(items)
    kinds = set(map(type, everything))
    objects: list[MonitorStats]
    blobs: list[bytes]
    if kinds <= {MonitorStats}:
        objects, blobs = everything, []  # type: ignore[assignment]
    elif kinds <= {bytes}:
        objects, blobs = [], everything  # type: ignore[assignment]
    else:
        objects = [item for item in everything if isinstance(item, MonitorStats)]
        blobs = [item for item in everything if not isinstance(item, MonitorStats)]
    if blobs:
        from .codec import decode_many

        objects.append(decode_many(blobs))
    if not objects:
        raise InputError("stats", "must hold at least one item to merge; got none")
    if len(objects) == 1:
        return objects[0]
    from .merge import merge_objects

    return merge_objects(objects)


# --- helpers ---------------------------------------------------------------------------------


def _check_closed(closed: object) -> Closed:
    if closed not in ("right", "left"):
        raise InputError("closed", f'must be "right" or "left"; got {closed!r}')
    return closed


def _check_weights(sample_weight: ArrayLike | None, n: int) -> FloatArray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise InputError("sample_weight", f"must hold one weight per sample ({n}); got shape {w.shape}")
    if not np.all(np.isfinite(w) & (w >= 0)):
        raise InputError("sample_weight", "must be finite and non-negative")
    return None if np.all(w == 1) else w


def _share(values: np.ndarray) -> FloatArray:
    total = values.sum()
    if total == 0:
        return np.full(values.shape, np.nan)
    return np.asarray(values / total, dtype=np.float64)


def _sum(values: np.ndarray | Sequence[float], w: FloatArray | None) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.add.reduce(v if w is None else v * w))


def _prediction_side(predicted: IntArray, top: FloatArray, w: FloatArray | None, k: int) -> dict[str, object]:
    n = predicted.shape[0]
    return {
        "n_predictions": n,
        "weight_predictions": float(n) if w is None else float(w.sum()),
        "confidence_sum": _sum(top, w),
        "predicted_counts": np.bincount(predicted, minlength=k).astype(np.int64),
        "predicted_weights": None if w is None else np.bincount(predicted, weights=w, minlength=k),
    }


def _labelled_side(
    y: IntArray,
    predicted: IntArray,
    top: FloatArray,
    losses: FloatArray,
    brier: FloatArray,
    positive: FloatArray | None,
    w: FloatArray | None,
    k: int,
) -> dict[str, object]:
    n = y.shape[0]
    correct = predicted == y
    return {
        "n_labelled": n,
        "weight_labelled": float(n) if w is None else float(w.sum()),
        "nll_sum": _sum(losses, w),
        "brier_sum": _sum(brier, w),
        "correct": int(np.count_nonzero(correct)),
        "correct_weight": float(np.count_nonzero(correct)) if w is None else _sum(correct, w),
        "labelled_confidence_sum": _sum(top, w),
        "label_counts": np.bincount(y, minlength=k).astype(np.int64),
        "label_weights": None if w is None else np.bincount(y, weights=w, minlength=k),
        "top": FineHistogram.of(top, correct, w),
        "positive": None if positive is None else FineHistogram.of(positive, y == 1, w),
    }


def _probs(dist: Distribution) -> FloatArray:
    """``dist.probs``; for K-class logits ``exp(z - lse)`` in one buffer (the same values, no log-probs)."""
    if dist.logits is None or dist.binary:
        return dist.probs
    summary = dist.summarise()
    p = minus(dist.logits, summary.lse[:, None], summary)  # −inf past the dtype's range: p = 0
    return np.exp(p, out=p)


def _build(fields: dict[str, object], *, weighted: bool) -> MonitorStats:
    """MonitorStats of `fields` (with ``n_classes`` and ``binary``), a side not in them empty."""
    if len(fields) < len(_FIELDS):  # fills the side not summarised (and K = 2's `positive`)
        empty = MonitorStats.empty(fields["n_classes"], binary=fields["binary"], weighted=weighted)  # type: ignore[arg-type]
        fields = {name: fields[name] if name in fields else getattr(empty, name) for name in _FIELDS}
    return MonitorStats(**fields)  # type: ignore[arg-type]


_FIELDS = tuple(MonitorStats.__dataclass_fields__)


__all__ = ["FINE_BINS", "MonitorStats", "js_drift", "merge_stats"]
