"""Calibration of multilabel predictions: every column a binary problem of its own."""

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from .._typing import FloatArray
from ..errors import InputError
from ..multilabel import MultilabelLogProbs, multilabel_bce
from .ace import ClassOrder, ace_nixon_weighted
from .bin_edges import bins_for_rule
from .binned import BinMeans, BinSums, bin_means, bin_sums, binned_error, debiased_square
from .brier import brier_factor
from .conventions import Convention
from .pairs import Pairs, _bin_pairs, _edge_rule_for, _prepare_confidence
from .report import Reliability, _reliability

#: The metrics a multilabel request computes by default (each per class and as the mean over classes).
MULTILABEL_METRICS = ("calibration_error", "ece", "mce", "rmsce", "brier", "nll")
#: Every per-class metric a multilabel request may name (``reliability`` adds per-class bins).
MULTILABEL_ALLOWED = (*MULTILABEL_METRICS, "ace_netcal", "ace_nixon", "debiased_l2")
#: The metrics `sample_weight` does not apply to (Nixon's equal-count ranges count rows).
_UNWEIGHTED = ("ace_nixon",)


@dataclass(frozen=True)
class MultilabelCalibration:
    """Per-class values (length K each), their means over the K classes, and per-class bins."""

    per_class: dict[str, FloatArray]
    means: dict[str, float]
    n_bins: int
    convention: Convention
    reliability: list[Reliability] = field(default_factory=list)
    #: The columns as prepared for the report, for a bootstrap to resample (bins of the full sample).
    prep: "MultilabelPairs | None" = None


@dataclass(frozen=True)
class MultilabelPairs:
    """A multilabel request prepared once: each column's binned pairs and per-element terms.

    The bootstrap (:func:`multilabel_scalars` with multiplicities) reuses the bins, so they
    stay those of the full sample, as on the categorical route.
    """

    pairs: Pairs
    squared: FloatArray  # N×K Brier terms (scaled per brier_scale)
    nll: FloatArray  # N×K binary cross-entropy terms
    order: ClassOrder  # each column sorted, for Nixon's equal-count ranges
    n_bins: int
    convention: Convention
    sample_weight: FloatArray | None = None  # per-row weights the bootstrap multiplies in


def prepare_multilabel(
    targets: FloatArray,
    lp: MultilabelLogProbs,
    convention: Convention,
    *,
    sample_weight: FloatArray | None = None,
) -> MultilabelPairs:
    """Bin every column of `lp.probs` as a binary problem's positive-class probability.

    With `sample_weight`, each column's quantile edges hold equal weight
    (:func:`weighted_quantile_edges`, as the categorical route's) and the weights are kept
    for the bootstrap.
    """
    probs = lp.probs
    n_bins = bins_for_rule(convention.n_bins, probs.shape[0])
    if convention.binning == "edges":
        n_bins = len(convention.edges or ()) - 1
    float32 = convention.float32_confidence or (
        convention.preset == "torchmetrics" and probs.dtype == np.float32
    )
    effective = _edge_rule_for(convention, float32)
    cols = np.ascontiguousarray(probs.T)
    conf = _prepare_confidence(cols, convention, float32=float32)
    outcome = np.ascontiguousarray(targets.T, dtype=np.float64)
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    pairs = _bin_pairs(conf, outcome, effective, n_bins, weights=weights)
    p64 = probs.astype(np.float64)
    squared = (p64 - targets) ** 2 * (2 * brier_factor(convention.brier_scale, 2, binary=True))
    order = np.argsort(cols, axis=1, kind="stable")
    ranked = ClassOrder(
        np.take_along_axis(cols, order, axis=1).astype(np.float64),
        np.take_along_axis(outcome, order, axis=1),
        order,
    )
    nll = multilabel_bce(targets, lp).astype(np.float64)
    return MultilabelPairs(pairs, squared, nll, ranked, n_bins, effective, weights)


def multilabel_scalars(
    prep: MultilabelPairs, weights: FloatArray, names: Collection[str], *, counts: bool = False
) -> tuple[dict[str, FloatArray], tuple[BinSums, BinMeans]]:
    """Per-class metrics (R×K each) under R rows of per-sample multiplicities `weights` (R×N).

    With `counts`, the weights are resampling multiplicities (integers summing to N), so
    Nixon's ACE re-cuts its equal-count ranges per resample (:func:`ace_nixon_weighted`).
    """
    conv = prep.convention
    p = prep.pairs
    with np.errstate(over="ignore", invalid="ignore"):  # weights near 1e308: inf/NaN bins, not a warning
        sums = bin_sums(p.conf, p.outcome, p.index, p.n_slots, weights=weights)
        mean_sums = (
            None
            if p.mean_index is None
            else bin_sums(p.conf, p.outcome, p.mean_index, p.n_slots, weights=weights)
        )
        means = bin_means(
            sums, min_bin_count=conv.min_bin_count, weighting=conv.bin_weighting, means_from=mean_sums
        )
        out = {
            "calibration_error": binned_error(means, conv.norm),
            "ece": binned_error(means, "l1"),
            "mce": binned_error(means, "max"),
            "rmsce": binned_error(means, "l2"),
        }
        if "ace_netcal" in names:
            uniform = bin_means(
                sums, min_bin_count=conv.min_bin_count, weighting="uniform", means_from=mean_sums
            )
            out["ace_netcal"] = binned_error(uniform, "l1")
        if "debiased_l2" in names:  # Kumar et al.'s per-column estimate, as the class-wise route's
            out["debiased_l2"] = np.sqrt(np.maximum(debiased_square(means, sums), 0.0))
        scaled = weights / weights.max(axis=1, keepdims=True)  # a ratio: no overflow near 1e308
        total = scaled.sum(axis=1, keepdims=True)
        out["brier"] = scaled @ prep.squared / total
        out["nll"] = scaled @ prep.nll / total
    if "ace_nixon" in names:
        out["ace_nixon"] = (
            ace_nixon_weighted(prep.order, prep.n_bins, weights)[:, None]  # the mean over classes
            if counts
            else ace_columns(prep.order, prep.n_bins)[None, :]
        )
    return {name: value for name, value in out.items() if name in names}, (sums, means)


def ace_columns(order: ClassOrder, n_ranges: int) -> FloatArray:
    """Nixon et al.'s ACE of each column on its own: K values.

    Each column's sorted probabilities are cut into `n_ranges` ranges of ``np.array_split``'s
    sizes; a column's ACE is the mean over non-empty ranges of ``|mean outcome - mean p|``.
    Their mean over columns is :func:`ace_nixon` of the K columns together.

    Examples
    --------
    >>> cols = np.array([[0.2, 0.6, 0.9]])
    >>> ace_columns(ClassOrder(cols, np.array([[0.0, 1.0, 1.0]]), np.array([[0, 1, 2]])), 3).round(6)
    array([0.233333])
    """
    k, n = order.conf.shape
    q, r = divmod(n, n_ranges)
    pos = np.arange(n)
    cut = r * (q + 1)
    chunk = np.where(pos < cut, pos // (q + 1), r + (pos - cut) // max(q, 1))
    keys = (np.arange(k)[:, None] * n_ranges + chunk[None, :]).ravel()
    size = k * n_ranges
    count = np.bincount(keys, minlength=size).reshape(k, n_ranges)
    conf = np.bincount(keys, weights=order.conf.ravel(), minlength=size).reshape(k, n_ranges)
    acc = np.bincount(keys, weights=order.outcome.ravel(), minlength=size).reshape(k, n_ranges)
    used = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(used, np.abs(acc - conf) / count, 0.0)
    return np.asarray(gap.sum(axis=1) / used.sum(axis=1), dtype=np.float64)


def multilabel_calibration(
    targets: FloatArray,
    lp: MultilabelLogProbs,
    convention: Convention | None = None,
    *,
    sample_weight: FloatArray | None = None,
    metrics: Collection[str] = MULTILABEL_METRICS,
    reliability: bool = False,
) -> MultilabelCalibration:
    """Class-wise calibration of N×K independent probabilities against N×K targets.

    Parameters
    ----------
    targets : ndarray of shape (N, K)
        Outcomes in [0, 1] (0/1 indicators; a probability counts as a fractional outcome).
    lp : MultilabelLogProbs
        The predictions (``lp.probs`` is binned; ``lp.log_p``/``lp.log_q`` give the NLL).
    convention : Convention, optional
        Binning conventions (edges, ``closed``, ``min_bin_count``, ``norm``,
        ``bin_weighting``, presets' edge rules), applied to each column as to the
        positive-class probability of a binary problem.
    sample_weight : ndarray of shape (N,), optional
        Every sum over samples a sum of weights (bin counts and means, N), as on the
        categorical route: integer weights equal repeated rows, weight-0 rows dropped ones;
        reliability bins carry each bin's weight sum beside its row count; quantile edges
        hold equal weight per column (:func:`weighted_quantile_edges`). Not with
        ``ace_nixon`` (equal-count ranges count rows).
    metrics : collection of str
        Names from :data:`MULTILABEL_ALLOWED`.
    reliability : bool, default=False
        Also return each column's reliability bins (``group`` = the column) with Wilson
        intervals at ``convention.level``.

    Returns
    -------
    MultilabelCalibration
        ``per_class[name]`` for each name of `metrics`, and its mean over classes in
        ``means`` (Kull et al. 2019's class-wise average).

    Notes
    -----
    Column k is the binary problem (p_k, t_k): its ECE is torchmetrics'
    ``BinaryCalibrationError`` of that column (torchmetrics 1.9 has no multilabel
    calibration error), its bins scikit-learn's ``calibration_curve`` of the column, its
    Brier score scikit-learn's ``brier_score_loss(t_k, p_k)`` (``(p - t)²``;
    ``brier_scale: sum`` doubles it), its NLL the mean binary cross-entropy of the column.
    ``debiased_l2`` is Kumar et al.'s bias-corrected L2 error of each column;
    ``ace_netcal`` weighs non-empty bins equally (netcal's ACE); ``ace_nixon`` cuts each
    column into equal-count ranges (Nixon et al. 2019), its mean over columns being
    :func:`ace_nixon` of the K columns. The mean Brier over classes is the mean of all N·K
    squared errors.

    Examples
    --------
    >>> from service.core.multilabel import multilabel_log_probs
    >>> lp = multilabel_log_probs(probs=np.array([[0.8, 0.1], [0.6, 0.3]]))
    >>> report = multilabel_calibration(np.array([[1.0, 0.0], [1.0, 1.0]]), lp, Convention(n_bins=5))
    >>> [round(v, 6) for v in report.per_class["brier"].tolist()]
    [0.1, 0.25]
    """
    convention = convention or Convention()
    n = lp.probs.shape[0]
    weights = np.ones((1, n))
    if sample_weight is not None:
        unweighted = [name for name in _UNWEIGHTED if name in metrics]
        if unweighted:
            raise InputError(
                "sample_weight", f"does not apply to {', '.join(unweighted)} with multilabel; leave it out"
            )
        if not sample_weight.max() > 0:
            raise InputError("sample_weight", "must have a positive total; got 0")
        weights = sample_weight[None, :].astype(np.float64)  # counts compare with min_bin_count: unscaled
    prep = prepare_multilabel(targets, lp, convention, sample_weight=sample_weight)
    values, (sums, means) = multilabel_scalars(prep, weights, metrics)
    per_class = {name: value[0] for name, value in values.items()}
    return MultilabelCalibration(
        per_class=per_class,
        means={name: float(value.mean()) for name, value in per_class.items()},
        n_bins=prep.n_bins,
        convention=prep.convention,
        reliability=(
            _reliability(prep.pairs, sums, means, convention.level, True, sample_weight is not None)
            if reliability
            else []
        ),
        prep=prep,
    )
