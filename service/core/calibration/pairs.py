"""Per-request calibration pairs: a request's (confidence, outcome) pairs with their bins.

:func:`prepare` turns a request into pairs, bins and per-sample values (:class:`Prepared`), which
the scalars (:mod:`.scalars`) reduce and the bootstrap resamples (:func:`sort_for_tests` orders
them for the tests' resamples).
"""

from collections.abc import Collection
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from .._typing import FloatArray, IntArray
from ..distribution import Distribution
from ..entropy import nll
from ..errors import InputError
from ..narrow_rows import row_argmax
from .ace import ClassOrder, class_order
from .bin_edges import (
    assign_per_row,
    assign_shared,
    bins_for_rule,
    check_edges,
    quantile_edges,
    uniform_edges,
    weighted_quantile_edges,
)
from .binned import (
    GroupRuns,
    bin_runs,
    group_runs,
)
from .brier import brier_factor, brier_rows
from .conventions import Convention, Target


@dataclass(frozen=True)
class Pairs:
    """(confidence, outcome) pairs in G groups of N, with each pair's bin.

    ``index`` holds a bin in ``[0, n_slots)``, or ``n_slots`` for pairs in no bin.
    """

    conf: FloatArray
    outcome: FloatArray
    index: IntArray
    n_slots: int
    lower: FloatArray
    upper: FloatArray
    runs: IntArray | None = None  # set by sort_for_tests when one group is in bin order
    mean_index: IntArray | None = None  # bins of the per-bin means when not `index` (input_dtype_means)
    grouped: GroupRuns | None = None  # set by sort_for_tests for several groups


class _Columns:
    """Top-label class and probability per row, and (built on first use) K×N columns."""

    def __init__(self, probs: FloatArray, labels: IntArray) -> None:
        self.probs = probs
        self.labels = labels
        self.predicted, self.top = row_argmax(probs)  # transposed blocks: no short-axis argmax

    @cached_property
    def correct(self) -> FloatArray:
        """1.0 where the top-label class is the label (computed on first use)."""
        return (self.predicted == self.labels).astype(np.float64)

    @cached_property
    def cols(self) -> FloatArray:
        """Contiguous K×N probabilities: per-class rows for class-wise pairs."""
        return np.ascontiguousarray(self.probs.T)


def _target_pairs(target: Target, columns: _Columns, labels: IntArray) -> tuple[FloatArray, FloatArray]:
    if target == "top_label":
        return columns.top[None, :], columns.correct[None, :]
    if target == "positive_class":
        return columns.probs[:, 1][None, :], (labels == 1).astype(np.float64)[None, :]
    classes = np.arange(columns.cols.shape[0])[:, None]
    return columns.cols, (labels[None, :] == classes).astype(np.float64)


def _bin_pairs(
    conf: FloatArray,
    outcome: FloatArray,
    convention: Convention,
    n_bins: int,
    *,
    for_brier: bool = False,
    weights: FloatArray | None = None,
) -> Pairs:
    """Assign pairs to bins per the convention (the Brier decomposition keeps every pair).

    Quantile edges of weighted pairs hold equal weight (:func:`weighted_quantile_edges`).
    """
    rounded = convention.input_dtype_means and conf.dtype == np.float32 and not for_brier
    mean_index = None
    if convention.binning == "quantile":
        method = convention.quantile_method
        edges = (
            quantile_edges(conf, n_bins, method=method)
            if weights is None
            else weighted_quantile_edges(conf, weights, n_bins, method=method)
        )
        index = assign_per_row(conf, edges, convention.closed)
        if rounded:
            mean_index = assign_per_row(conf, edges.astype(np.float32).astype(np.float64), convention.closed)
        lower, upper = edges[:, :-1], edges[:, 1:]
    else:
        shared = (
            check_edges(list(convention.edges or ()))
            if convention.binning == "edges"
            else uniform_edges(n_bins, convention.edge_rule)
        )
        index = assign_shared(conf, shared, convention.closed)
        if rounded:
            mean_index = assign_shared(conf, shared.astype(np.float32).astype(np.float64), convention.closed)
        lower = np.broadcast_to(shared[:-1], (conf.shape[0], shared.size - 1))
        upper = np.broadcast_to(shared[1:], (conf.shape[0], shared.size - 1))
    if mean_index is not None and np.array_equal(mean_index, index):
        mean_index = None  # no pair on a rounded edge: one set of sums serves both
    n_slots = lower.shape[1]
    if convention.overflow_bin:
        index = np.where(conf >= upper[:, -1:], n_slots, index)
        ones = np.ones((conf.shape[0], 1))
        lower = np.concatenate([lower, ones], axis=1)
        upper = np.concatenate([upper, ones], axis=1)
        n_slots += 1
    if convention.exclude_zero and not for_brier:
        index = np.where(conf <= lower[:, :1], n_slots, index)
    return Pairs(conf, outcome, index, n_slots, lower, upper, mean_index=mean_index)


def _prepare_confidence(conf: FloatArray, convention: Convention, *, float32: bool) -> FloatArray:
    if convention.clip:
        eps = np.finfo(conf.dtype).eps
        conf = np.clip(conf, eps, 1 - eps)
    if float32:
        conf = conf.astype(np.float32)
    return conf


def _edge_rule_for(convention: Convention, float32: bool) -> Convention:
    if convention.edge_rule == "torch" and float32:
        return replace(convention, edge_rule="torch_float32", float32_confidence=True)
    return replace(convention, float32_confidence=float32)


@dataclass(frozen=True)
class Prepared:
    """Everything a report computes once per request; resampled by the bootstrap.

    ``binned`` are the target's pairs, ``brier_pairs`` the per-class pairs of the Murphy
    decomposition, ``test_conf``/``test_outcome`` the top-label (or positive-class)
    pairs of the statistical tests and smooth ECE, ``brier``/``nll``/``correct``/``top``
    per-sample values.
    """

    binned: Pairs
    brier_pairs: Pairs | None
    brier_factor: float
    test_conf: FloatArray
    test_outcome: FloatArray
    brier: FloatArray | None
    nll: FloatArray | None
    correct: FloatArray
    top: FloatArray
    convention: Convention
    target: Target
    n_bins: int
    classes: "ClassOrder | None" = None
    sample_weight: FloatArray | None = None  # per-sample weights the bootstrap multiplies in


def resolve_target(convention: Convention, dist: Distribution) -> Target:
    """The target in force: as sent, or positive_class for binary input and top_label otherwise."""
    target = convention.target or ("positive_class" if dist.binary else "top_label")
    if target == "positive_class" and dist.n_classes != 2:
        raise InputError(
            "target", f'"positive_class" needs two classes (binary input or N×2); got K = {dist.n_classes}'
        )
    return target


_BRIER = {"brier", "brier_reliability", "brier_resolution", "brier_uncertainty"} | {
    "brier_within_bin_variance",
    "brier_within_bin_covariance",
}


def prepare(
    labels: IntArray,
    dist: Distribution,
    convention: Convention,
    *,
    names: Collection[str] | None = None,
    resample: bool = False,
    sample_weight: FloatArray | None = None,
) -> Prepared:
    """Pairs, bins and per-sample values of one request (Brier and NLL terms only if in `names`).

    With `resample`, also each class column in sorted order for ``ace_nixon`` (if wanted).
    With `sample_weight`, quantile edges hold equal weight and the weights are kept for
    the bootstrap.
    """
    probs = dist.probs
    n = probs.shape[0]
    target = resolve_target(convention, dist)
    n_bins = bins_for_rule(convention.n_bins, n)
    if convention.binning == "edges":
        n_bins = len(convention.edges or ()) - 1
    tm_float32 = convention.float32_confidence or (
        convention.preset == "torchmetrics" and (target == "top_label" or probs.dtype == np.float32)
    )
    effective = _edge_rule_for(convention, tm_float32)
    columns = _Columns(probs, labels)
    conf, outcome = _target_pairs(target, columns, labels)
    binned = _bin_pairs(
        _prepare_confidence(conf, convention, float32=tm_float32),
        outcome,
        effective,
        n_bins,
        weights=sample_weight,
    )

    wanted = None if names is None else set(names)
    brier_pairs, brier = None, None
    factor = brier_factor(convention.brier_scale, dist.n_classes, binary=dist.binary)
    if wanted is None or wanted & _BRIER:
        b_conf, b_out = _target_pairs("positive_class" if dist.binary else "classwise", columns, labels)
        brier_pairs = _bin_pairs(b_conf, b_out, effective, n_bins, for_brier=True, weights=sample_weight)
        brier = factor * brier_rows(labels, probs)
    log_loss = None
    if wanted is None or "nll" in wanted:
        log_loss = nll(labels, dist.log_probs).astype(np.float64)

    test_target: Target = "positive_class" if target == "positive_class" else "top_label"
    t_conf, t_out = (conf, outcome) if target == test_target else _target_pairs(test_target, columns, labels)
    return Prepared(
        binned=binned,
        brier_pairs=brier_pairs,
        brier_factor=factor * (2.0 if dist.binary else 1.0),
        test_conf=t_conf[0],
        test_outcome=t_out[0],
        brier=brier,
        nll=log_loss,
        correct=columns.correct,
        top=columns.top.astype(np.float64),
        convention=effective,
        target=target,
        n_bins=n_bins,
        classes=class_order(labels, probs)
        if resample and (wanted is None or "ace_nixon" in wanted)
        else None,
        sample_weight=None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64),
    )


def sort_for_tests(prep: Prepared) -> Prepared:
    """The same request with samples reordered by test confidence (stable), for resampling."""
    order = np.argsort(prep.test_conf, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    classes = prep.classes
    if classes is not None:  # sample i moves to position[i]
        classes = replace(classes, order=position[classes.order])

    def take(pairs: Pairs) -> Pairs:
        conf = pairs.conf[:, order].astype(np.float64)  # bins are assigned: sums run in float64
        index = pairs.index[:, order]
        mean_index = None if pairs.mean_index is None else pairs.mean_index[:, order]
        outcome = pairs.outcome[:, order]
        grouped = group_runs(conf, outcome, index, pairs.n_slots + 1) if index.shape[0] > 1 else None
        return replace(
            pairs,
            conf=conf,
            outcome=outcome,
            index=index,
            runs=bin_runs(index),
            grouped=grouped,
            mean_index=mean_index,
        )

    return replace(
        prep,
        binned=take(prep.binned),
        brier_pairs=None if prep.brier_pairs is None else take(prep.brier_pairs),
        test_conf=prep.test_conf[order],
        test_outcome=prep.test_outcome[order],
        brier=None if prep.brier is None else prep.brier[order],
        nll=None if prep.nll is None else prep.nll[order],
        sample_weight=None if prep.sample_weight is None else prep.sample_weight[order],
        correct=prep.correct[order],
        top=prep.top[order],
        classes=classes,
    )
