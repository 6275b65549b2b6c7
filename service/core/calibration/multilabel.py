"""Calibration of multilabel predictions: every column a binary problem of its own."""

from dataclasses import dataclass

import numpy as np

from .._typing import FloatArray
from ..errors import InputError
from ..multilabel import MultilabelLogProbs, multilabel_bce
from .bin_edges import bins_for_rule
from .binned import bin_means, bin_sums, binned_error
from .brier import brier_factor
from .conventions import Convention
from .scalars import _bin_pairs, _edge_rule_for, _prepare_confidence

#: The metrics a multilabel request computes (each per class and as the mean over classes).
MULTILABEL_METRICS = ("calibration_error", "ece", "mce", "rmsce", "brier", "nll")


@dataclass(frozen=True)
class MultilabelCalibration:
    """Per-class values (length K each) and their means over the K classes."""

    per_class: dict[str, FloatArray]
    means: dict[str, float]
    n_bins: int
    convention: Convention


def multilabel_calibration(
    targets: FloatArray,
    lp: MultilabelLogProbs,
    convention: Convention | None = None,
    *,
    sample_weight: FloatArray | None = None,
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
        Every sum over samples a sum of weights (bin counts and means, N).

    Returns
    -------
    MultilabelCalibration
        ``per_class[name]`` for each name of :data:`MULTILABEL_METRICS`, and its mean
        over classes in ``means`` (Kull et al. 2019's class-wise average).

    Notes
    -----
    Column k is the binary problem (p_k, t_k): its ECE is torchmetrics'
    ``BinaryCalibrationError`` of that column (torchmetrics 1.9 has no multilabel
    calibration error), its Brier score scikit-learn's
    ``brier_score_loss(t_k, p_k)`` (``(p - t)²``; ``brier_scale: sum`` doubles it), its
    NLL the mean binary cross-entropy of the column. The mean Brier over classes is the
    mean of all N·K squared errors.

    Examples
    --------
    >>> from service.core.multilabel import multilabel_log_probs
    >>> lp = multilabel_log_probs(probs=np.array([[0.8, 0.1], [0.6, 0.3]]))
    >>> report = multilabel_calibration(np.array([[1.0, 0.0], [1.0, 1.0]]), lp, Convention(n_bins=5))
    >>> [round(v, 6) for v in report.per_class["brier"].tolist()]
    [0.1, 0.25]
    """
    convention = convention or Convention()
    probs = lp.probs
    n, k = probs.shape
    weights = None
    if sample_weight is not None:
        if convention.binning == "quantile":
            raise InputError("sample_weight", 'does not apply to binning "quantile" (unweighted quantiles)')
        if not sample_weight.max() > 0:
            raise InputError("sample_weight", "must have a positive total; got 0")
        weights = sample_weight[None, :].astype(np.float64)  # counts compare with min_bin_count: unscaled
    n_bins = bins_for_rule(convention.n_bins, n)
    if convention.binning == "edges":
        n_bins = len(convention.edges or ()) - 1
    float32 = convention.float32_confidence or (
        convention.preset == "torchmetrics" and probs.dtype == np.float32
    )
    effective = _edge_rule_for(convention, float32)
    conf = _prepare_confidence(np.ascontiguousarray(probs.T), convention, float32=float32)
    outcome = np.ascontiguousarray(targets.T, dtype=np.float64)
    pairs = _bin_pairs(conf, outcome, effective, n_bins)
    with np.errstate(over="ignore", invalid="ignore"):  # weights near 1e308: inf/NaN bins, not a warning
        sums = bin_sums(pairs.conf, pairs.outcome, pairs.index, pairs.n_slots, weights=weights)
        mean_sums = (
            None
            if pairs.mean_index is None
            else bin_sums(pairs.conf, pairs.outcome, pairs.mean_index, pairs.n_slots, weights=weights)
        )
        means = bin_means(
            sums,
            min_bin_count=convention.min_bin_count,
            weighting=convention.bin_weighting,
            means_from=mean_sums,
        )
        per_class = {
            "calibration_error": binned_error(means, convention.norm)[0],
            "ece": binned_error(means, "l1")[0],
            "mce": binned_error(means, "max")[0],
            "rmsce": binned_error(means, "l2")[0],
        }
    p64 = probs.astype(np.float64)
    squared = (p64 - outcome.T) ** 2 * (2 * brier_factor(convention.brier_scale, 2, binary=True))
    nll = multilabel_bce(targets, lp).astype(np.float64)
    scaled = None if weights is None else weights[0] / weights.max()  # a ratio: no overflow near 1e308
    total = float(n) if scaled is None else float(scaled.sum())
    for name, values in (("brier", squared), ("nll", nll)):
        per_class[name] = (values.sum(axis=0) if scaled is None else scaled @ values) / total
    return MultilabelCalibration(
        per_class=per_class,
        means={name: float(values.mean()) for name, values in per_class.items()},
        n_bins=n_bins,
        convention=effective,
    )
