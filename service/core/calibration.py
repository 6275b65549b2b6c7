"""Calibration metrics with every convention named: binning, closure, target, norm, weighting.

:func:`calibration_report` computes binned calibration errors (ECE, MCE, RMSCE and
the option-driven ``calibration_error``), ``ace_nixon``, ``ace_netcal``,
``debiased_l2``, ``smooth_ece``, the Brier score with its Murphy decomposition, NLL,
accuracy, confidence, Spiegelhalter's Z and cumulative KS/Kuiper statistics, and
reliability bins with Wilson intervals. :data:`PRESETS` reproduce peer libraries.
"""

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from functools import cached_property
from statistics import NormalDist
from typing import Literal

import numpy as np

from ._typing import FloatArray, IntArray
from .bin_edges import (
    BinRule,
    Closed,
    EdgeRule,
    assign_per_row,
    assign_shared,
    bins_for_rule,
    check_edges,
    quantile_edges,
    uniform_edges,
)
from .binned import (
    BinMeans,
    BinSums,
    GroupRuns,
    Norm,
    Weighting,
    bin_means,
    bin_runs,
    bin_sums,
    binned_error,
    debiased_square,
    group_runs,
    reduce_groups,
)
from .brier import BrierScale, brier_factor, brier_rows, murphy_terms
from .calibration_tests import (
    cumulative_stats,
    ks_brownian_p,
    kuiper_brownian_p,
    spiegelhalter_z,
    two_sided_p,
)
from .distribution import Distribution
from .entropy import nll
from .errors import InputError
from .narrow_rows import row_argmax
from .smooth_ece import smooth_ece, smooth_ece_weighted

Target = Literal["top_label", "positive_class", "classwise", "marginal"]
Binning = Literal["uniform", "quantile", "edges"]
Preset = Literal["torchmetrics", "sklearn", "netcal", "guo"]

#: Metric names a request may select; each maps to the scalars it produces.
METRICS: dict[str, tuple[str, ...]] = {
    "calibration_error": ("calibration_error",),
    "ece": ("ece",),
    "mce": ("mce",),
    "rmsce": ("rmsce",),
    "ace_nixon": ("ace_nixon",),
    "ace_netcal": ("ace_netcal",),
    "debiased_l2": ("debiased_l2",),
    "smooth_ece": ("smooth_ece", "smooth_ece_sigma"),
    "brier": (
        "brier",
        "brier_reliability",
        "brier_resolution",
        "brier_uncertainty",
        "brier_within_bin_variance",
        "brier_within_bin_covariance",
    ),
    "nll": ("nll",),
    "accuracy": ("accuracy",),
    "mean_confidence": ("mean_confidence",),
    "confidence_gap": ("confidence_gap",),
    "spiegelhalter": ("spiegelhalter_z", "spiegelhalter_p"),
    "ks": ("ks_statistic", "ks_p"),
    "kuiper": ("kuiper_statistic", "kuiper_p"),
    "reliability": (),
}
#: Scalars the bootstrap does not resample (see :mod:`service.core.bootstrap`).
NOT_BOOTSTRAPPED: tuple[str, ...] = ()


@dataclass(frozen=True)
class Convention:
    """How the binned metrics are computed. Presets fill the peer-specific fields.

    Attributes
    ----------
    binning : {"uniform", "quantile", "edges"}
        Equal-width edges (built per `edge_rule`), equal-mass edges per group (``np.quantile``
        with linear interpolation at i/B, outer edges 0 and 1; tied values always share a
        bin, so duplicate edges leave empty bins), or the explicit `edges`.
    n_bins : int or {"sqrt", "cube_root"}
        B, or ``ceil(sqrt(N))`` / ``ceil(N^(1/3))``.
    closed : {"right", "left"}
        ``(a, b]`` with 0 in the first bin, or ``[a, b)`` with 1 in the last bin.
    min_bin_count : int
        Bins with fewer pairs are left out of every binned error (netcal's
        ``sample_threshold``); with ``mass`` weighting N still counts them.
    target : {"top_label", "positive_class", "classwise", "marginal"} or None
        None: ``positive_class`` for binary (length-N) input, ``top_label`` otherwise.
    edge_rule : {"exact", "numpy", "torch", "torch_float32"}
        Equal-width edges as ``i / B`` (default), ``np.linspace`` or ``torch.linspace``.
    overflow_bin : bool
        Confidences ≥ 1 get a bin of their own (torchmetrics' ``bucketize`` index B).
    exclude_zero : bool
        Confidences of exactly 0 fall in no bin but still count in N (Guo et al.'s loop
        over ``(lower, upper]``).
    clip : bool
        Clip confidences to ``[eps, 1 - eps]``, eps the dtype's machine epsilon (netcal).
    float32_confidence : bool
        Round top-label confidences to float32 before binning (torchmetrics multiclass).
    quantile_method : {"quantile", "percentile"}
        ``np.quantile(c, q)`` (netcal) or ``np.percentile(c, 100 q)`` (scikit-learn).
    """

    binning: Binning = "uniform"
    n_bins: int | BinRule = 15
    edges: tuple[float, ...] | None = None
    closed: Closed = "right"
    min_bin_count: int = 1
    target: Target | None = None
    norm: Norm = "l1"
    bin_weighting: Weighting = "mass"
    brier_scale: BrierScale = "auto"
    edge_rule: EdgeRule = "exact"
    overflow_bin: bool = False
    exclude_zero: bool = False
    clip: bool = False
    float32_confidence: bool = False
    quantile_method: Literal["quantile", "percentile"] = "quantile"
    level: float = 0.95
    preset: Preset | None = None


@dataclass(frozen=True)
class PresetSpec:
    """A peer library's fixed conventions, the options it lets a caller vary, and its version."""

    fixed: dict[str, object]
    free: tuple[str, ...]
    matches: str


_COMMON_FREE = ("n_bins", "norm", "target", "metrics", "brier_scale", "level", "bootstrap")
PRESETS: dict[str, PresetSpec] = {
    "torchmetrics": PresetSpec(
        {"binning": "uniform", "edge_rule": "torch", "closed": "left", "overflow_bin": True},
        _COMMON_FREE,
        "torchmetrics 1.9.0 binary_calibration_error (positive_class) / multiclass_calibration_error "
        "(top_label, float32): torch.linspace edges, [a, b) bins, confidence 1.0 in an extra bin",
    ),
    "sklearn": PresetSpec(
        {"edge_rule": "numpy", "closed": "right", "quantile_method": "percentile"},
        (*_COMMON_FREE, "binning"),
        "scikit-learn 1.9.1 calibration_curve(strategy='uniform'|'quantile') bins: np.linspace "
        "or np.percentile edges, searchsorted(edges[1:-1], p) = (a, b] bins, ECE weighted by mass",
    ),
    "netcal": PresetSpec(
        {"edge_rule": "numpy", "closed": "left", "clip": True, "quantile_method": "quantile"},
        (*_COMMON_FREE, "binning", "min_bin_count", "bin_weighting"),
        "netcal 1.4.0 ECE/MCE/ACE(bins, equal_intervals, sample_threshold): confidences clipped to "
        "[eps, 1-eps], np.linspace or np.quantile edges, np.histogramdd [a, b) bins",
    ),
    "guo": PresetSpec(
        {"binning": "uniform", "edge_rule": "torch_float32", "closed": "right", "exclude_zero": True},
        (*_COMMON_FREE,),
        "Guo et al. 2017 temperature_scaling _ECELoss (gpleiss/temperature_scaling, 2017): float32 "
        "torch.linspace edges, confidences in (lower, upper], top-label",
    ),
}


def resolve_convention(preset: Preset | None, options: dict[str, object]) -> Convention:
    """Build a :class:`Convention` from sent options, applying `preset` and refusing conflicts.

    Examples
    --------
    >>> resolve_convention("netcal", {"n_bins": 10}).closed
    'left'
    """
    fields = {k: v for k, v in options.items() if k in Convention.__dataclass_fields__}
    if preset is None:
        return Convention(**fields)  # type: ignore[arg-type]
    spec = PRESETS[preset]
    for name in options:
        if name not in spec.free and name not in ("preset", "edges"):
            raise InputError(name, f"is fixed by preset {preset!r}; leave it out or drop the preset")
    if "edges" in options:
        raise InputError("edges", f"is fixed by preset {preset!r}; leave it out or drop the preset")
    return Convention(**{**fields, **spec.fixed, "preset": preset})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Reliability:
    """One reliability diagram: per-bin edges, counts, means and Wilson intervals.

    ``group`` is the class for class-wise targets, None otherwise. ``confidence``,
    ``accuracy`` and the interval are NaN in empty bins; ``gap = confidence - accuracy``.
    """

    group: int | None
    lower: FloatArray
    upper: FloatArray
    count: FloatArray
    confidence: FloatArray
    accuracy: FloatArray
    wilson_low: FloatArray
    wilson_high: FloatArray

    @property
    def gap(self) -> FloatArray:
        """Mean confidence minus accuracy per bin (positive: over-confident)."""
        return self.confidence - self.accuracy


@dataclass(frozen=True)
class CalibrationReport:
    """Every requested scalar, per-class errors for class-wise targets, and reliability bins."""

    scalars: dict[str, float]
    per_class: dict[str, list[float]]
    reliability: list[Reliability]
    convention: Convention
    n_bins: int
    target: Target
    n_excluded_bins: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def wilson_interval(successes: FloatArray, count: FloatArray, level: float) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval for a binomial proportion; NaN where ``count == 0``.

    Examples
    --------
    >>> low, high = wilson_interval(np.array([5.0]), np.array([10.0]), 0.95)
    >>> round(float(low[0]), 4), round(float(high[0]), 4)
    (0.2366, 0.7634)
    """
    z = NormalDist().inv_cdf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = successes / count
        denom = 1 + z * z / count
        center = (p + z * z / (2 * count)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / count + z * z / (4 * count * count))
    return center - half, center + half


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
    conf: FloatArray, outcome: FloatArray, convention: Convention, n_bins: int, *, for_brier: bool = False
) -> Pairs:
    """Assign pairs to bins per the convention (the Brier decomposition keeps every pair)."""
    if convention.binning == "quantile":
        edges = quantile_edges(conf, n_bins, method=convention.quantile_method)
        index = assign_per_row(conf, edges, convention.closed)
        lower, upper = edges[:, :-1], edges[:, 1:]
    else:
        shared = (
            check_edges(list(convention.edges or ()))
            if convention.binning == "edges"
            else uniform_edges(n_bins, convention.edge_rule)
        )
        index = assign_shared(conf, shared, convention.closed)
        lower = np.broadcast_to(shared[:-1], (conf.shape[0], shared.size - 1))
        upper = np.broadcast_to(shared[1:], (conf.shape[0], shared.size - 1))
    n_slots = lower.shape[1]
    if convention.overflow_bin:
        index = np.where(conf >= upper[:, -1:], n_slots, index)
        ones = np.ones((conf.shape[0], 1))
        lower = np.concatenate([lower, ones], axis=1)
        upper = np.concatenate([upper, ones], axis=1)
        n_slots += 1
    if convention.exclude_zero and not for_brier:
        index = np.where(conf <= lower[:, :1], n_slots, index)
    return Pairs(conf, outcome, index, n_slots, lower, upper)


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
) -> Prepared:
    """Pairs, bins and per-sample values of one request (Brier and NLL terms only if in `names`).

    With `resample`, also each class column in sorted order for ``ace_nixon`` (if wanted).
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
    binned = _bin_pairs(_prepare_confidence(conf, convention, float32=tm_float32), outcome, effective, n_bins)

    wanted = None if names is None else set(names)
    brier_pairs, brier = None, None
    factor = brier_factor(convention.brier_scale, dist.n_classes, binary=dist.binary)
    if wanted is None or wanted & _BRIER:
        b_conf, b_out = _target_pairs("positive_class" if dist.binary else "classwise", columns, labels)
        brier_pairs = _bin_pairs(b_conf, b_out, effective, n_bins, for_brier=True)
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
    )


def _reduce(per_group: FloatArray, target: Target, norm: Norm) -> FloatArray:
    if per_group.shape[-1] == 1:
        return per_group[..., 0]
    return reduce_groups(per_group, norm, "marginal" if target == "marginal" else "mean")


_BINNED = {"calibration_error", "ece", "rmsce", "mce", "ace_netcal", "debiased_l2"}
_MURPHY = _BRIER - {"brier"}


def binned_scalars(
    prep: Prepared,
    weights: FloatArray | None = None,
    *,
    names: Collection[str] | None = None,
    presorted: bool = False,
) -> dict[str, FloatArray]:
    """Scalars from sums over samples, one value per resample (R = 1 without `weights`).

    Parameters
    ----------
    prep : Prepared
        The request's pairs and per-sample values.
    weights : ndarray, shape (R, N), optional
        Per-sample multiplicities of R resamples.
    names : collection of str, optional
        Compute only these scalars (and what they need); all when omitted.
    presorted : bool, default=False
        The samples are already in order of test confidence (the bootstrap sorts once).
    """
    wanted = set(names) if names is not None else None

    def need(group: set[str] | tuple[str, ...]) -> bool:
        return wanted is None or bool(wanted & set(group))

    conv = prep.convention
    out: dict[str, FloatArray] = {}
    if need(_BINNED) or weights is None:
        p = prep.binned
        sums = bin_sums(
            p.conf, p.outcome, p.index, p.n_slots, weights=weights, runs=p.runs, grouped=p.grouped
        )
        means = bin_means(sums, min_bin_count=conv.min_bin_count, weighting=conv.bin_weighting)
        errors = {norm: binned_error(means, norm) for norm in ("l1", "l2", "max")}
        out["calibration_error"] = _reduce(errors[conv.norm], prep.target, conv.norm)
        out["ece"] = _reduce(errors["l1"], prep.target, "l1")
        out["rmsce"] = _reduce(errors["l2"], prep.target, "l2")
        out["mce"] = _reduce(errors["max"], prep.target, "max")
        uniform = bin_means(sums, min_bin_count=conv.min_bin_count, weighting="uniform")
        out["ace_netcal"] = _reduce(binned_error(uniform, "l1"), prep.target, "l1")
        square = debiased_square(means, sums)
        if prep.target == "marginal":
            out["debiased_l2"] = np.sqrt(np.maximum(square.mean(axis=-1), 0.0))
        else:
            out["debiased_l2"] = np.sqrt(np.maximum(square, 0.0)).mean(axis=-1)
        out["_means"] = means  # type: ignore[assignment]
        out["_sums"] = sums  # type: ignore[assignment]
    if need(_MURPHY) and prep.brier_pairs is not None:
        b = prep.brier_pairs
        bsums = bin_sums(
            b.conf,
            b.outcome,
            b.index,
            b.n_slots,
            weights=weights,
            second_moments=True,
            runs=b.runs,
            grouped=b.grouped,
        )
        terms = murphy_terms(bsums, prep.brier_factor)
        out["brier_reliability"] = terms.reliability
        out["brier_resolution"] = terms.resolution
        out["brier_uncertainty"] = terms.uncertainty
        out["brier_within_bin_variance"] = terms.within_bin_variance
        out["brier_within_bin_covariance"] = terms.within_bin_covariance
    n = float(prep.correct.shape[0])

    def mean(values: FloatArray) -> FloatArray:
        if weights is None:
            return values.sum(keepdims=True) / n
        finite = np.isfinite(values)
        if finite.all():
            return (weights @ values) / n
        # +inf losses (eps 0): a resample is +inf when it draws one, never 0·inf = NaN.
        drawn = weights @ (~finite).astype(np.float64)
        return np.where(drawn > 0, np.inf, weights @ np.where(finite, values, 0.0)) / n

    if need(("brier",)) and prep.brier is not None:
        out["brier"] = mean(prep.brier)
    if need(("nll",)) and prep.nll is not None:
        out["nll"] = mean(prep.nll)
    if need(("accuracy", "mean_confidence", "confidence_gap")):
        out["accuracy"] = mean(prep.correct)
        out["mean_confidence"] = mean(prep.top)
        out["confidence_gap"] = out["mean_confidence"] - out["accuracy"]
    if weights is not None and need(("smooth_ece", "smooth_ece_sigma")):
        out["smooth_ece"], out["smooth_ece_sigma"] = smooth_ece_weighted(
            prep.test_conf, prep.test_outcome, weights
        )
    if weights is not None and need(("ace_nixon",)) and prep.classes is not None:
        out["ace_nixon"] = ace_nixon_weighted(prep.classes, prep.n_bins, weights)
    if need(("spiegelhalter_z", "spiegelhalter_p")):
        z = spiegelhalter_z(prep.test_conf, prep.test_outcome, weights)
        out["spiegelhalter_z"] = z
        out["spiegelhalter_p"] = two_sided_p(z)
    if need(("ks_statistic", "ks_p", "kuiper_statistic", "kuiper_p")):
        cumulative = cumulative_stats(prep.test_conf, prep.test_outcome, weights, presorted=presorted)
        out["ks_statistic"] = cumulative.ks
        out["ks_p"] = ks_brownian_p(cumulative.ks)
        out["kuiper_statistic"] = cumulative.kuiper
        out["kuiper_p"] = kuiper_brownian_p(cumulative.kuiper)
    return out


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
        outcome = pairs.outcome[:, order]
        grouped = group_runs(conf, outcome, index, pairs.n_slots + 1) if index.shape[0] > 1 else None
        return replace(pairs, conf=conf, outcome=outcome, index=index, runs=bin_runs(index), grouped=grouped)

    return replace(
        prep,
        binned=take(prep.binned),
        brier_pairs=None if prep.brier_pairs is None else take(prep.brier_pairs),
        test_conf=prep.test_conf[order],
        test_outcome=prep.test_outcome[order],
        brier=None if prep.brier is None else prep.brier[order],
        nll=None if prep.nll is None else prep.nll[order],
        correct=prep.correct[order],
        top=prep.top[order],
        classes=classes,
    )


def ace_nixon(labels: IntArray, probs: FloatArray, n_ranges: int) -> float:
    """Adaptive calibration error (Nixon et al. 2019): class-wise, equal-count ranges.

    Each class's probabilities are sorted and split into `n_ranges` consecutive
    ranges of sizes as ``np.array_split`` makes them (the first ``N mod R`` one larger);
    ACE is the unweighted mean of ``|accuracy - confidence|`` over classes and non-empty
    ranges. Tied probabilities may be split between ranges, in the order NumPy's
    default (introsort/SIMD) argsort leaves them.

    Examples
    --------
    >>> round(ace_nixon(np.array([0, 1]), np.array([[0.8, 0.2], [0.4, 0.6]]), 1), 12)
    0.1
    """
    n, k = probs.shape
    cols = np.ascontiguousarray(probs.T)
    order = np.argsort(cols, axis=1)
    sorted_p = np.sort(cols, axis=1).astype(np.float64)  # equal values where argsort ties
    sorted_o = (labels[order] == np.arange(k)[:, None]).astype(np.float64)
    q, r = divmod(n, n_ranges)
    pos = np.arange(n)
    cut = r * (q + 1)
    chunk = np.where(pos < cut, pos // (q + 1), r + (pos - cut) // max(q, 1))
    keys = (np.arange(k)[:, None] * n_ranges + chunk[None, :]).ravel()
    size = k * n_ranges
    count = np.bincount(keys, minlength=size)
    conf = np.bincount(keys, weights=sorted_p.ravel(), minlength=size)
    acc = np.bincount(keys, weights=sorted_o.ravel(), minlength=size)
    used = count > 0
    return float(np.mean(np.abs(acc[used] - conf[used]) / count[used]))


@dataclass(frozen=True)
class ClassOrder:
    """Every class's probabilities in ascending order, with outcomes and sample indices (K×N)."""

    conf: FloatArray
    outcome: FloatArray
    order: IntArray


def class_order(labels: IntArray, probs: FloatArray) -> ClassOrder:
    """Sort each class column once (stable) for :func:`ace_nixon_weighted`."""
    k = probs.shape[1]
    cols = np.ascontiguousarray(probs.T)
    order = np.argsort(cols, axis=1, kind="stable")
    conf = np.take_along_axis(cols, order, axis=1).astype(np.float64)
    outcome = (labels[order] == np.arange(k)[:, None]).astype(np.float64)
    return ClassOrder(conf, outcome, order)


def ace_nixon_weighted(sorted_: ClassOrder, n_ranges: int, weights: FloatArray) -> FloatArray:
    """:func:`ace_nixon` of R resamples given as multiplicities (R×N), one value per resample.

    A resample lists sample i ``w_i`` times; in each class's sorted order, the first
    ``s`` entries sum to ``F_{j-1} + (s - C_{j-1}) p_j`` where ``C`` and ``F`` are
    cumulative sums of w and w·p and j holds entry s. Range boundaries are those of
    ``np.array_split`` on N entries, so sums over ranges are differences at fixed
    positions: no sort and no loop per resample or class. Tied probabilities of
    distinct samples are kept in sample order (stable), copies of a sample together.
    """
    n_res, n = weights.shape
    k = sorted_.conf.shape[0]
    q, r = divmod(n, n_ranges)
    sizes = np.array([q + 1] * r + [q] * (n_ranges - r), dtype=np.float64)
    bounds = np.concatenate([[0.0], np.cumsum(sizes)])  # positions 0..N
    w = weights[:, sorted_.order]  # R×K×N, each class's sorted order
    cum_w = np.cumsum(w, axis=-1)
    rows = n_res * k
    offset = (np.arange(rows, dtype=np.float64) * (n + 1))[:, None]
    flat = (cum_w.reshape(rows, n) + offset).ravel()
    at = np.searchsorted(flat, (bounds[None, :] + offset).ravel(), side="left")
    at = np.minimum(at, flat.size - 1)  # position 0 of an all-zero prefix still lands in its row
    w_at = w.reshape(-1)[at]
    before = flat[at] - w_at - np.repeat(offset[:, 0], bounds.size)  # C_{j-1}
    pos = np.tile(bounds, rows)

    def prefix(values: FloatArray) -> FloatArray:
        v = np.broadcast_to(values, w.shape)
        cum = np.cumsum(w * v, axis=-1).reshape(-1)
        v_at = v.reshape(-1)[at]
        return (cum[at] - w_at * v_at + (pos - before) * v_at).reshape(n_res, k, bounds.size)

    conf = np.diff(prefix(sorted_.conf), axis=-1)
    acc = np.diff(prefix(sorted_.outcome), axis=-1)
    used = sizes > 0
    gap = np.abs(acc[..., used] - conf[..., used]) / sizes[used]
    return np.asarray(gap.mean(axis=(-2, -1)), dtype=np.float64)


def _reliability(
    pairs: Pairs, sums: BinSums, means: BinMeans, level: float, grouped: bool
) -> list[Reliability]:
    low, high = wilson_interval(sums.outcome[0], sums.count[0], level)
    return [
        Reliability(
            group=g if grouped else None,
            lower=np.asarray(pairs.lower[g], dtype=np.float64),
            upper=np.asarray(pairs.upper[g], dtype=np.float64),
            count=sums.count[0, g],
            confidence=means.confidence[0, g],
            accuracy=means.accuracy[0, g],
            wilson_low=low[g],
            wilson_high=high[g],
        )
        for g in range(sums.count.shape[1])
    ]


def calibration_report(
    labels: IntArray,
    dist: Distribution,
    convention: Convention | None = None,
    *,
    metrics: Collection[str] | None = None,
) -> CalibrationReport:
    """Calibration metrics of predictions `dist` against integer `labels`.

    Parameters
    ----------
    labels : ndarray of int, shape (n_samples,)
        True classes, already validated against ``dist.n_classes``.
    dist : Distribution
        Predicted distributions (binary input: columns [1 - p, p]).
    convention : Convention, optional
        Binning and reduction conventions; defaults: 15 uniform bins with edges i/15,
        ``(a, b]``, top-label (positive-class for binary input), l1, mass weighting.
    metrics : collection of str, optional
        Names from :data:`METRICS`; all when omitted.

    Returns
    -------
    CalibrationReport
        ``scalars`` holds the selected values (see :data:`METRICS` for names).

    Notes
    -----
    ``calibration_error`` uses `norm` and `bin_weighting`; ``ece``/``rmsce`` are its
    l1/l2 forms and ``mce`` the largest |gap| over counted bins. Class-wise targets
    average per-class errors (Kull et al. 2019); ``marginal`` reports per-class errors
    and ``(mean_k e_k^p)^(1/p)`` (Kumar et al. 2019). ``debiased_l2`` is
    ``sqrt(max(Σ w (gap² - ā(1-ā)/(n_b-1)), 0))`` over bins with ≥ 2 pairs (Kumar,
    Liang & Ma 2019). The statistical tests and ``smooth_ece`` use top-label pairs
    (positive-class pairs when that is the target). The Brier score decomposition
    bins each class's probability with the same edges, keeping every pair.

    Examples
    --------
    >>> dist = Distribution.from_probs(np.array([0.2, 0.4, 0.6, 0.8, 1.0, 0.1, 0.3]))
    >>> report = calibration_report(np.array([0, 1, 0, 1, 0, 0, 1]), dist, Convention(n_bins=5))
    >>> round(report.scalars["ece"], 6)
    0.485714
    """
    convention = convention or Convention()
    wanted = set(METRICS) if metrics is None else set(metrics)
    unknown = sorted(wanted - set(METRICS))
    if unknown:
        raise InputError("metrics", f"must name metrics from {', '.join(METRICS)}; got {unknown[0]!r}")
    if not 0 < convention.level < 1:
        raise InputError("level", f"must lie in (0, 1); got {convention.level}")
    selected = {name for metric in wanted for name in METRICS[metric]}
    prep = prepare(labels, dist, convention, names=selected)
    values = binned_scalars(prep, names=selected)
    means: BinMeans = values.pop("_means")  # type: ignore[assignment]
    sums: BinSums = values.pop("_sums")  # type: ignore[assignment]
    scalars = {name: float(v[0]) for name, v in values.items()}
    if "ace_nixon" in wanted:
        scalars["ace_nixon"] = ace_nixon(labels, dist.probs, prep.n_bins)
    if "smooth_ece" in wanted:
        result = smooth_ece(prep.test_conf, prep.test_outcome)
        scalars["smooth_ece"], scalars["smooth_ece_sigma"] = result.value, result.sigma
    per_class: dict[str, list[float]] = {}
    if prep.target in ("classwise", "marginal"):
        per_class = {
            "calibration_error": binned_error(means, convention.norm)[0].tolist(),
            "ece": binned_error(means, "l1")[0].tolist(),
        }
    grouped = prep.target in ("classwise", "marginal")
    reliability = (
        _reliability(prep.binned, sums, means, convention.level, grouped) if "reliability" in wanted else []
    )
    excluded = int(np.count_nonzero((sums.count[0] > 0) & ~means.valid[0]))
    return CalibrationReport(
        scalars={k: v for k, v in scalars.items() if k in selected},
        per_class=per_class,
        reliability=reliability,
        convention=prep.convention,
        n_bins=prep.n_bins,
        target=prep.target,
        n_excluded_bins=excluded,
    )
