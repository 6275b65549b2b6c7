"""Calibration metrics with every convention named: binning, closure, target, norm, weighting.

:func:`calibration_report` computes binned calibration errors (ECE, MCE, RMSCE and
the option-driven ``calibration_error``), ``ace_nixon``, ``ace_netcal``,
``debiased_l2``, ``smooth_ece``, the Brier score with its Murphy decomposition, NLL,
accuracy, confidence, Spiegelhalter's Z and cumulative KS/Kuiper statistics, and
reliability bins with Wilson intervals. :data:`PRESETS` reproduce peer libraries.

Modules: :mod:`.conventions` (names, options, presets), :mod:`.scalars` (pairs, bins and the
scalars from their sums), :mod:`.ace` (Nixon's adaptive error), :mod:`.report` (the report).
"""

from .ace import ClassOrder, ace_nixon, ace_nixon_weighted, class_order
from .conventions import (
    METRICS,
    NOT_BOOTSTRAPPED,
    PRESETS,
    Binning,
    Convention,
    Preset,
    PresetSpec,
    Target,
    resolve_convention,
)
from .pairs import Pairs, Prepared, prepare, resolve_target, sort_for_tests
from .report import CalibrationReport, Reliability, calibration_report, wilson_interval
from .scalars import binned_scalars

__all__ = [
    "METRICS",
    "NOT_BOOTSTRAPPED",
    "PRESETS",
    "Binning",
    "CalibrationReport",
    "ClassOrder",
    "Convention",
    "Pairs",
    "Preset",
    "PresetSpec",
    "Prepared",
    "Reliability",
    "Target",
    "ace_nixon",
    "ace_nixon_weighted",
    "binned_scalars",
    "calibration_report",
    "class_order",
    "prepare",
    "resolve_convention",
    "resolve_target",
    "sort_for_tests",
    "wilson_interval",
]
