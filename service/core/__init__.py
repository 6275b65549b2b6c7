"""Xent's scoring core: pure NumPy, no web framework.

Functions take arrays (rows = samples, columns = classes) and return one value
per sample; callers reduce.
"""

from .calibration import (
    METRICS,
    PRESETS,
    CalibrationReport,
    Convention,
    Reliability,
    ace_nixon,
    calibration_report,
    resolve_convention,
    wilson_interval,
)
from .calibration.bin_edges import check_edges
from .cancel import Cancelled, checkpoint, deadline
from .distribution import Distribution, binary_log_probs, log_softmax, resolve_eps
from .divergence.relative_entropy import relative_entropy
from .divergence.rows import DivergenceRows, divergence_rows
from .divergence.terms import DivergenceTerms, divergence_terms
from .entropy import (
    cross_entropy,
    cross_entropy_rows,
    entropy,
    js_divergence,
    kl_divergence,
    label_weights,
    nll,
    soft_cross_entropy,
    to_base,
)
from .errors import InputError
from .language.class_sums import ClassReport, ClassSums, class_bin_sums, class_report
from .language.logprob_metrics import LogprobScores, score_logprobs, top1_calibration
from .language.logprobs import ParsedLogprobs, parse_logprobs
from .language.perplexity import PerplexityTotals, lm_eval_counts, sequence_perplexity
from .language.perplexity_series import PerplexitySeries
from .language.sequence_temperature import (
    SequenceTemperatureFit,
    fit_sequence_temperature,
    sequence_temperature_metrics,
)
from .language.sequences import TokenScores, token_scores
from .language.weighted import SequenceLoss, sequence_brier, sequence_loss
from .maps.fit_metrics import ECE_BINS, FitMetrics, fit_metrics
from .maps.splits import fold_splits, holdout_split
from .maps.temperature import TemperatureFit, apply_temperature, fit_temperature
from .monitoring.fine_histogram import ALLOWED_BINS, FINE_BINS, FineHistogram
from .monitoring.stats import MonitorStats, js_drift, merge_stats
from .ranking import label_rank, top_k_accuracy
from .sigmoid import softplus
from .sums import mean64, sum64
from .validation import (
    check_class_weights,
    check_labels,
    check_logits,
    check_probabilities,
    check_same_length,
    check_sample_weight,
    check_targets,
    default_tolerance,
    dtype_name,
)
from .weighing import in_dtype, weigh

__all__ = [
    "in_dtype",
    "mean64",
    "sum64",
    "weigh",
    "Cancelled",
    "checkpoint",
    "deadline",
    "ECE_BINS",
    "ALLOWED_BINS",
    "FINE_BINS",
    "FineHistogram",
    "MonitorStats",
    "js_drift",
    "merge_stats",
    "METRICS",
    "PRESETS",
    "CalibrationReport",
    "Convention",
    "Reliability",
    "ace_nixon",
    "calibration_report",
    "check_edges",
    "resolve_convention",
    "wilson_interval",
    "Distribution",
    "DivergenceRows",
    "divergence_rows",
    "DivergenceTerms",
    "divergence_terms",
    "FitMetrics",
    "InputError",
    "TemperatureFit",
    "apply_temperature",
    "binary_log_probs",
    "check_class_weights",
    "check_labels",
    "check_logits",
    "check_probabilities",
    "check_same_length",
    "check_sample_weight",
    "check_targets",
    "cross_entropy",
    "cross_entropy_rows",
    "default_tolerance",
    "dtype_name",
    "entropy",
    "fit_metrics",
    "fit_sequence_temperature",
    "sequence_temperature_metrics",
    "fold_splits",
    "holdout_split",
    "fit_temperature",
    "js_divergence",
    "kl_divergence",
    "label_weights",
    "log_softmax",
    "nll",
    "relative_entropy",
    "PerplexitySeries",
    "PerplexityTotals",
    "LogprobScores",
    "ParsedLogprobs",
    "parse_logprobs",
    "score_logprobs",
    "top1_calibration",
    "SequenceTemperatureFit",
    "TokenScores",
    "lm_eval_counts",
    "sequence_perplexity",
    "token_scores",
    "sequence_loss",
    "sequence_brier",
    "class_bin_sums",
    "class_report",
    "ClassSums",
    "ClassReport",
    "SequenceLoss",
    "label_rank",
    "top_k_accuracy",
    "resolve_eps",
    "soft_cross_entropy",
    "softplus",
    "to_base",
]
