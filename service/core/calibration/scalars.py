"""The calibration scalars computed from the bin sums of prepared pairs (:mod:`.pairs`).

:func:`binned_scalars` reduces a :class:`~.pairs.Prepared` request to every metric, once or per
bootstrap resample; :func:`scalars_of_sums` gives the binned errors of given sums.
"""

from collections.abc import Collection

import numpy as np

from .._typing import FloatArray
from .ace import ace_nixon_weighted
from .binned import (
    BinSums,
    Norm,
    bin_means,
    bin_sums,
    binned_error,
    debiased_square,
    reduce_groups,
)
from .brier import murphy_terms
from .conventions import Convention, Target
from .pairs import _BRIER, Prepared
from .smooth_ece import smooth_ece_weighted
from .statistical_tests import (
    cumulative_stats,
    ks_brownian_p,
    kuiper_brownian_p,
    spiegelhalter_z,
    two_sided_p,
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
    keep_bins: bool = False,
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
    keep_bins : bool, default=False
        Also return the target's bin sums and means (``_sums``, ``_means``) with `weights`
        (always returned without them).
    """
    wanted = set(names) if names is not None else None

    def need(group: set[str] | tuple[str, ...]) -> bool:
        return wanted is None or bool(wanted & set(group))

    conv = prep.convention
    out: dict[str, FloatArray] = {}
    if need(_BINNED) or weights is None or keep_bins:
        p = prep.binned
        sums = bin_sums(
            p.conf, p.outcome, p.index, p.n_slots, weights=weights, runs=p.runs, grouped=p.grouped
        )
        mean_sums = (
            None
            if p.mean_index is None
            else bin_sums(p.conf, p.outcome, p.mean_index, p.n_slots, weights=weights)
        )
        out.update(scalars_of_sums(sums, mean_sums, conv, prep.target))
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
    # Bootstrap multiplicities sum to N; sample weights (one row) to their own total.
    n: float | FloatArray = float(prep.correct.shape[0]) if weights is None else weights.sum(axis=1)

    def mean(values: FloatArray) -> FloatArray:
        if weights is None:
            return values.sum(keepdims=True) / n
        finite = np.isfinite(values)
        with np.errstate(invalid="ignore", divide="ignore"):  # a resample of weight 0: NaN
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


def scalars_of_sums(
    sums: BinSums, mean_sums: BinSums | None, conv: Convention, target: Target
) -> dict[str, FloatArray]:
    """The binned errors of `sums` (``_means`` and ``_sums`` too, for the report), per resample.

    `mean_sums` are the sums the per-bin means come from when not `sums` (``input_dtype_means``).
    """
    out: dict[str, FloatArray] = {}
    means = bin_means(
        sums, min_bin_count=conv.min_bin_count, weighting=conv.bin_weighting, means_from=mean_sums
    )
    errors = {norm: binned_error(means, norm) for norm in ("l1", "l2", "max")}
    out["calibration_error"] = _reduce(errors[conv.norm], target, conv.norm)
    out["ece"] = _reduce(errors["l1"], target, "l1")
    out["rmsce"] = _reduce(errors["l2"], target, "l2")
    out["mce"] = _reduce(errors["max"], target, "max")
    uniform = bin_means(sums, min_bin_count=conv.min_bin_count, weighting="uniform", means_from=mean_sums)
    out["ace_netcal"] = _reduce(binned_error(uniform, "l1"), target, "l1")
    square = debiased_square(means, sums)
    if target == "marginal":
        out["debiased_l2"] = np.sqrt(np.maximum(square.mean(axis=-1), 0.0))
    else:
        out["debiased_l2"] = np.sqrt(np.maximum(square, 0.0)).mean(axis=-1)
    out["_means"] = means  # type: ignore[assignment]
    out["_sums"] = sums  # type: ignore[assignment]
    return out
