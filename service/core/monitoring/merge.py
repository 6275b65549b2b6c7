"""Many-way merge of :class:`~service.core.monitoring.stats.MonitorStats` objects (bytes: monitor_codec)."""

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from .fine_histogram import FineHistogram
from .stats import MonitorStats

_CHUNK = 1024  # per-class arrays stacked this many at a time


def sum_classes(arrays: list[np.ndarray]) -> np.ndarray:
    """Sum of equal-length per-class vectors, stacked a chunk at a time (no loop over items)."""
    chunks = [np.stack(arrays[i : i + _CHUNK]).sum(axis=0) for i in range(0, len(arrays), _CHUNK)]
    return np.sum(chunks, axis=0) if len(chunks) > 1 else chunks[0]


def merge_objects(items: list[MonitorStats]) -> MonitorStats:
    """All rows of `items` (two or more, same K and binary): sums, and one bincount per histogram sum."""
    first = items[0]
    for item in items[1:]:
        if item.n_classes != first.n_classes or item.binary != first.binary:
            raise InputError(
                "stats",
                f"must share K and binary to merge; got K = {first.n_classes} (binary {first.binary}) "
                f"and K = {item.n_classes} (binary {item.binary})",
            )
    weighted = any(s.weighted for s in items)

    def floats(name: str) -> float:
        return float(np.add.reduce(np.array([getattr(s, name) for s in items], dtype=np.float64)))

    def ints(name: str) -> int:
        return sum(int(getattr(s, name)) for s in items)

    def per_class(counts: str, weights: str) -> tuple[np.ndarray, np.ndarray | None]:
        total = sum_classes([getattr(s, counts) for s in items]).astype(np.int64)
        if not weighted:
            return total, None
        w = [getattr(s, weights) if s.weighted else getattr(s, counts).astype(np.float64) for s in items]
        return total, sum_classes(w)

    predicted, predicted_w = per_class("predicted_counts", "predicted_weights")
    labels, labels_w = per_class("label_counts", "label_weights")
    positive = [s.positive for s in items if s.positive is not None]
    return MonitorStats(
        n_classes=first.n_classes,
        binary=first.binary,
        n_predictions=ints("n_predictions"),
        weight_predictions=floats("weight_predictions"),
        confidence_sum=floats("confidence_sum"),
        predicted_counts=predicted,
        n_labelled=ints("n_labelled"),
        weight_labelled=floats("weight_labelled"),
        nll_sum=floats("nll_sum"),
        brier_sum=floats("brier_sum"),
        correct=ints("correct"),
        correct_weight=floats("correct_weight"),
        labelled_confidence_sum=floats("labelled_confidence_sum"),
        label_counts=labels,
        top=merge_histograms([s.top for s in items], weighted, ints("n_labelled")),
        positive=merge_histograms(positive, weighted, ints("n_labelled")) if positive else None,
        predicted_weights=predicted_w,
        label_weights=labels_w,
    )


def merge_histograms(hists: Sequence[FineHistogram], weighted: bool, rows: int) -> FineHistogram:
    """One histogram of every row of `hists` (`rows` in all): concatenated, one ``bincount`` per sum."""
    cat = np.concatenate
    weight = cat([h.weights for h in hists]) if weighted else None
    return FineHistogram.reduce(
        cat([h.cells for h in hists]),
        cat([h.count for h in hists]),
        cat([h.conf for h in hists]),
        cat([h.hits for h in hists]),
        weight,
        rows=rows,
    )
