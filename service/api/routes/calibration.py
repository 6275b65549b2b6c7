"""``POST /v1/calibration``."""

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

import numpy as np
from fastapi import APIRouter
from starlette.responses import Response

from service import core
from service.api.deps import scoring
from service.api.formats.inputs import Body, Prediction, drop_ignored, read_prediction, read_truth
from service.api.schemas.calibration import (
    CONVENTION_FIELDS,
    BootstrapOptions,
    BootstrapResult,
    CalibrationBody,
    CalibrationConvention,
    CalibrationMetrics,
    CalibrationOptions,
    CalibrationResult,
    IntervalResult,
    ReliabilityBins,
)
from service.core.calibration import Target, prepare
from service.core.calibration.bootstrap import bootstrap_intervals
from service.core.calibration.brier import brier_factor

from . import PROBLEM_RESPONSES, Answer, log_base, request_body, top_k_result, unit_of
from .calibration_multilabel import multilabel_calibration_result
from .calibration_sequences import score_sequence_calibration

router = APIRouter(prefix="/v1", tags=["calibration"])

ARRAY_FIELDS = ("logits", "probs", "labels", "targets", "sample_weight", "mask")
#: Reliability cells (groups × bins) a response may carry.
MAX_RELIABILITY_CELLS = 200_000
P_VALUES = (
    "spiegelhalter_p two-sided, 2(1 - Φ(|Z|)); ks_p and kuiper_p one-sided upper tails of sup|W| and "
    "max W - min W for standard Brownian motion W on [0, 1] (asymptotic in N)"
)


@router.post(
    "/calibration",
    response_model=CalibrationResult,
    responses=PROBLEM_RESPONSES,
    openapi_extra=request_body(CalibrationBody, ARRAY_FIELDS),
)
@scoring(inline_bytes=0, roles=ARRAY_FIELDS)
def score_calibration(body: Body) -> Response:
    """Calibration metrics with every convention named and echoed back.

    Binned errors (ECE, MCE, RMSCE, class-wise and marginal variants), adaptive and
    debiased estimators, smooth ECE, the Brier score with its Murphy decomposition,
    NLL and accuracy, Spiegelhalter's Z and cumulative KS/Kuiper tests, reliability
    bins with Wilson intervals, and optional bootstrap intervals. `preset` reproduces
    torchmetrics, scikit-learn, netcal or Guo et al.'s _ECELoss exactly.
    """
    return calibration_answer(body).response()


def calibration_answer(body: Body) -> Answer:
    """The calibration result of `body`."""
    options = body.options(CalibrationOptions, ARRAY_FIELDS)
    if options.multilabel:
        return Answer(multilabel_calibration_result(body, options, convention_of(options)))
    name = body.pick("logits", "probs")
    values = body.array(name, bfloat16=True)
    if values.ndim == 3:  # B×T×K token sequences
        return score_sequence_calibration(body, options, name, values)
    prediction, labels, convention, n_ignored = read_calibration_request(body, options)
    weights = read_sample_weight(body)
    report = core.calibration_report(
        labels, prediction.dist, convention, metrics=options.metrics, sample_weight=weights
    )
    boot = _bootstrap(options, labels, prediction, convention, report, weights) if options.bootstrap else None
    top_k = top_k_result(options.top_k, labels, prediction.dist, sample_weight=weights)
    result = _result(options, prediction, report, boot, top_k, n_ignored, weighted=weights is not None)
    return Answer(result)


def read_calibration_request(
    body: Body, options: CalibrationOptions
) -> tuple[Prediction, np.ndarray, core.Convention, int]:
    """Predictions, labels, the resolved convention of a calibration-style request, and rows ignored."""
    if body.fields.get("mask") is not None:
        raise core.InputError("mask", "applies to B×T×K sequence inputs only")
    if options.multilabel:
        raise core.InputError("multilabel", "applies to POST /v1/calibration only (no diagram of K classes)")
    if body.fields.get("targets") is not None:
        raise core.InputError("targets", "apply with multilabel: true only; send hard `labels`")
    prediction = read_prediction(body, "probs", "logits", options)
    truth = read_truth(body, prediction, ignore_index=options.ignore_index, vocabulary=options)
    assert truth.labels is not None  # `targets` is not an accepted field here
    if body.fields.get("sample_weight") is not None:  # read at full length, dropped with the rows
        weights = core.check_sample_weight(body.array("sample_weight"), prediction.dist.n_samples)
        if truth.ignore_index is not None:
            body.fields["sample_weight"] = weights[truth.labels != truth.ignore_index]
    prediction, labels, n_ignored = drop_ignored(
        prediction, truth.labels, truth.ignore_index, sent=options.ignore_index
    )
    return prediction, labels, convention_of(options), n_ignored


def read_sample_weight(body: Body) -> np.ndarray | None:
    """The per-sample weights of the rows kept (read by :func:`read_calibration_request`), if sent."""
    if body.fields.get("sample_weight") is None:
        return None
    return np.asarray(body.fields["sample_weight"], dtype=np.float64)


def convention_of(options: CalibrationOptions) -> core.Convention:
    """The core convention for the options that were sent (a preset refuses the ones it fixes)."""
    sent: dict[str, Any] = {
        name: getattr(options, name) for name in CONVENTION_FIELDS if name in options.model_fields_set
    }
    if options.edges is not None:
        if options.binning not in (None, "edges"):
            raise core.InputError("edges", f'applies to binning "edges"; got binning "{options.binning}"')
        sent["binning"] = "edges"
        sent["edges"] = tuple(core.check_edges(options.edges).tolist())
    elif options.binning == "edges":
        raise core.InputError("edges", 'is required with binning "edges"')
    if sent.get("binning") is None:
        sent.pop("binning", None)
    if sent.get("target") is None:
        sent.pop("target", None)
    return core.resolve_convention(options.preset, sent)


def _bootstrap(
    options: CalibrationOptions,
    labels: np.ndarray,
    prediction: Prediction,
    convention: core.Convention,
    report: core.CalibrationReport,
    weights: np.ndarray | None,
) -> BootstrapResult:
    spec = options.bootstrap
    assert spec is not None
    prep = prepare(
        labels, prediction.dist, convention, names=set(report.scalars), resample=True, sample_weight=weights
    )
    intervals = bootstrap_intervals(  # the weights ride with `prep`
        prep, n_resamples=spec.n, level=spec.level, seed=spec.seed, names=set(report.scalars)
    )
    return bootstrap_result(
        spec,
        intervals,
        _nll_scale(options),
        "resample N samples with replacement (numpy.random.default_rng(seed).integers), bins "
        "fixed from the full sample (ace_nixon's ranges and smooth_ece's bandwidth found anew per "
        "resample); percentile interval (np.nanpercentile, linear).",
        weighted=weights is not None,
    )


def bootstrap_result(
    spec: BootstrapOptions,
    intervals: Mapping[str, Any],
    nll_scale: float,
    method: str,
    *,
    weighted: bool,
) -> BootstrapResult:
    """The bootstrap answer: `intervals` (``nll`` in the unit of `nll_scale`) drawn as `method` says."""
    out = {}
    for name, interval in intervals.items():
        factor = nll_scale if name == "nll" else 1.0
        out[name] = IntervalResult(low=interval.low * factor, high=interval.high * factor)
    return BootstrapResult(
        n=spec.n,
        level=spec.level,
        seed=spec.seed,
        method=method + (_WEIGHTED_BOOTSTRAP if weighted else ""),
        intervals=out,
    )


_WEIGHTED_BOOTSTRAP = (
    " With sample_weight: rows drawn uniformly as without it, and each resample's statistic weighted, "
    "a row drawn m times weighing m·s (the standard weighted bootstrap); a resample of total weight 0 "
    "is left out."
)


def _nll_scale(options: CalibrationOptions) -> float:
    return 1.0 / math.log(log_base(options.base))


def _none_if_nan(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


def reliability_bins(bins: Sequence[core.Reliability], *, weighted: bool = False) -> list[ReliabilityBins]:
    """The answer's reliability bins (N×K, sequence and multilabel), `weight_sum` when `weighted`."""
    cells = sum(r.count.size for r in bins)
    if cells > MAX_RELIABILITY_CELLS:
        raise core.InputError(
            "metrics",
            f"would return {cells} reliability bins (limit {MAX_RELIABILITY_CELLS}); "
            "request fewer bins or leave out reliability",
        )
    return [
        ReliabilityBins(
            group=r.group,
            lower=r.lower.tolist(),
            upper=r.upper.tolist(),
            count=r.count.astype(np.int64).tolist(),
            weight_sum=r.weight.tolist() if weighted else None,
            confidence=_none_if_nan(r.confidence),
            accuracy=_none_if_nan(r.accuracy),
            gap=_none_if_nan(r.gap),
            wilson_low=_none_if_nan(r.wilson_low),
            wilson_high=_none_if_nan(r.wilson_high),
        )
        for r in bins
    ]


class ConventionStated(TypedDict):
    """The echoed convention's fields found by the computation rather than sent."""

    n_bins: int
    n_excluded_bins: int
    target: Target
    brier_scale: Literal["sum", "half"]
    eps: float
    n_clipped: int
    tolerance: float
    n_normalized: int
    tests_on: Literal["top_label", "positive_class"]
    p_values: str
    matches: str


def calibration_convention(
    options: CalibrationOptions,
    conv: core.Convention,
    *,
    input: Literal["logits", "probs"],
    form: Literal["categorical", "binary", "sequence", "multilabel"],
    dtype: np.dtype[Any],
    weighted: bool,
    stated: ConventionStated,
) -> CalibrationConvention:
    """The `convention` echoed by every calibration answer (N×K, sequences, multilabel).

    The options and the resolved convention `conv` give the binning and reduction fields;
    `input`, `form`, `dtype` and `weighted` say what was sent, and `stated` what the
    computation found (bins, target, clipping).
    """
    return CalibrationConvention(
        input=input,
        form=form,
        dtype="float32" if dtype == np.float32 else "float64",
        preset=conv.preset,
        binning=conv.binning,
        edge_rule=conv.edge_rule,
        quantile_method=conv.quantile_method,
        closed=conv.closed,
        overflow_bin=conv.overflow_bin,
        exclude_zero=conv.exclude_zero,
        clip=conv.clip,
        float32_confidence=conv.float32_confidence,
        input_dtype_means=conv.input_dtype_means,
        top_k=options.top_k,
        ignore_index=options.ignore_index,
        classes=options.classes,
        pos_label=options.pos_label,
        sample_weight=weighted,
        min_bin_count=conv.min_bin_count,
        norm=conv.norm,
        bin_weighting=conv.bin_weighting,
        base=options.base,
        unit=unit_of(options.base),
        level=conv.level,
        **stated,
    )


def convention_result(
    options: CalibrationOptions,
    prediction: Prediction,
    report: core.CalibrationReport,
    *,
    weighted: bool = False,
) -> CalibrationConvention:
    """The `convention` of an N×K or binary answer (:func:`calibration_convention`)."""
    conv = report.convention
    dist = prediction.dist
    factor = brier_factor(conv.brier_scale, dist.n_classes, binary=dist.binary)
    matches = (
        core.PRESETS[conv.preset].matches
        if conv.preset
        else "Xent conventions as stated; any preset reproduces its peer exactly"
    )
    return calibration_convention(
        options,
        conv,
        input="logits" if prediction.field == "logits" else "probs",
        form="binary" if dist.binary else "categorical",
        dtype=dist.probs.dtype,
        weighted=weighted,
        stated=ConventionStated(
            n_bins=report.n_bins,
            n_excluded_bins=report.n_excluded_bins,
            target=report.target,
            brier_scale="half" if factor == 0.5 else "sum",
            eps=dist.eps,
            n_clipped=dist.n_clipped,
            tolerance=prediction.tolerance,
            n_normalized=prediction.n_normalized,
            tests_on="positive_class" if report.target == "positive_class" else "top_label",
            p_values=P_VALUES,
            matches=matches,
        ),
    )


def _result(
    options: CalibrationOptions,
    prediction: Prediction,
    report: core.CalibrationReport,
    boot: BootstrapResult | None,
    top_k: dict[str, float] | None = None,
    n_ignored: int = 0,
    *,
    weighted: bool = False,
) -> CalibrationResult:
    scalars = dict(report.scalars)
    if "nll" in scalars:
        scalars["nll"] *= _nll_scale(options)
    dist = prediction.dist
    return CalibrationResult(
        n=int(dist.log_probs.shape[0]),
        n_ignored=n_ignored,
        n_classes=dist.n_classes,
        metrics=CalibrationMetrics(**scalars),
        per_class=report.per_class or None,
        reliability=reliability_bins(report.reliability, weighted=weighted) if report.reliability else None,
        top_k_accuracy=top_k,
        bootstrap=boot,
        convention=convention_result(options, prediction, report, weighted=weighted),
    )
