"""Calibration conventions: the metric names, every binning option, and the peers' presets."""

from dataclasses import dataclass
from typing import Literal

from ..errors import InputError
from .bin_edges import BinRule, Closed, EdgeRule
from .binned import Norm, Weighting
from .brier import BrierScale

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
#: Scalars the bootstrap does not resample (see :mod:`service.core.calibration.bootstrap`).
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
        ``sample_threshold``) but still count in its normaliser: N with ``mass``
        weighting, the number of non-empty bins with ``uniform`` (netcal's ACE).
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
    input_dtype_means : bool
        For float32 confidences, take each bin's mean confidence and accuracy over the
        pairs the edges *rounded to float32* put in it, while counts (weights, thresholds)
        keep the float64 edges: netcal 1.4.0 counts with ``np.histogramdd`` (float64 edges)
        and averages with ``scipy.stats.binned_statistic_dd``, which casts the edges to the
        sample's dtype. A bin whose rounded edges hold no pair has mean 0 and gap 0.
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
    input_dtype_means: bool = False
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
        {
            "edge_rule": "numpy",
            "closed": "left",
            "clip": True,
            "quantile_method": "quantile",
            "input_dtype_means": True,
        },
        (*_COMMON_FREE, "binning", "min_bin_count", "bin_weighting"),
        "netcal 1.4.0 ECE/MCE/ACE(bins, equal_intervals, sample_threshold): confidences clipped to "
        "[eps, 1-eps], np.linspace or np.quantile edges, np.histogramdd [a, b) bins; float32 input: "
        "bin means over the edges rounded to float32 (scipy binned_statistic_dd), counts over float64",
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
