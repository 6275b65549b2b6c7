"""``POST /v1/calibration``."""

import math
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter
from starlette.responses import Response

from service import core
from service.api.deps import INLINE_BYTES, Plain, scoring
from service.api.formats.answers import Document, document_of
from service.api.formats.inputs import (
    Body,
    Prediction,
    drop_ignored,
    probs_prediction,
    read_prediction,
    read_truth,
    validated_options,
)
from service.api.formats.plain import plain_array, plain_matrix
from service.api.schemas.calibration import (
    CONVENTION_FIELDS,
    BootstrapOptions,
    BootstrapResult,
    CalibrationBody,
    CalibrationConvention,
    CalibrationOptions,
    CalibrationResult,
    IntervalResult,
    ReliabilityBins,
)
from service.core.calibration import prepare
from service.core.calibration.bootstrap import bootstrap_intervals
from service.core.calibration.brier import brier_factor

from . import PROBLEM_RESPONSES, Answer, log_base, request_body, top_k_result
from .calibration_document import (
    ConventionStated,
    convention_document,
    float_dict,
    float_lists,
    metrics_document,
    reliability_documents,
)
from .calibration_multilabel import multilabel_calibration_result
from .calibration_sequences import score_sequence_calibration

router = APIRouter(prefix="/v1", tags=["calibration"])

ARRAY_FIELDS = ("logits", "probs", "labels", "targets", "sample_weight", "mask")
#: Bodies up to this size are scored on the event loop (in the request's own task, with its
#: deadline), unless they ask for a bootstrap: the default metrics of a 32×10 batch cost less
#: than the hop to a worker thread did. A quarter of the linear routes' bound: a 32×10 batch's
#: default metrics cost ~14× its cross-entropy (the essential-work server, benchmarks.http).
LOOP_BYTES = INLINE_BYTES // 4
P_VALUES = (
    "spiegelhalter_p two-sided, 2(1 - Φ(|Z|)); ks_p and kuiper_p one-sided upper tails of sup|W| and "
    "max W - min W for standard Brownian motion W on [0, 1] (asymptotic in N)"
)


def plain_calibration(fields: dict[str, Any], max_elements: int) -> tuple[bytes, int] | None:
    """The answer to ``{"probs": N×K floats, "labels": N integers}`` and nothing else.

    What :func:`calibration_answer` answers (:class:`service.api.deps.Plain`), by the same calls
    from the read arrays on (the checks, the report, the answer's document) with the options of a
    body that sends none, validated once; None for the general path whenever the request is not
    that after all.
    """
    raw, labels = plain_matrix(fields["probs"]), plain_array(fields["labels"])
    if (
        raw is None
        or labels is None
        or labels.dtype.kind != "i"
        or labels.shape != raw.shape[:1]
        or raw.size + labels.size > max_elements
    ):
        return None
    options, convention = _plain_convention()
    try:
        prediction = probs_prediction(raw, "probs", options)
        labels = core.check_labels(labels, raw.shape[1])
    except core.InputError:
        return None
    dist = prediction.dist
    report = core.calibration_report(labels, dist, convention, metrics=options.metrics)
    return bytes(Answer(_result(options, prediction, report, None)).response().body), int(labels.size)


@cache
def _plain_convention() -> tuple[CalibrationOptions, core.Convention]:
    """The options of a body that sends none, and their convention (both read only): resolved once."""
    options = validated_options(CalibrationOptions, {})
    return options, convention_of(options)


@router.post(
    "/calibration",
    response_model=CalibrationResult,
    responses=PROBLEM_RESPONSES,
    openapi_extra=request_body(CalibrationBody, ARRAY_FIELDS),
)
@scoring(
    inline_bytes=0,
    roles=ARRAY_FIELDS,
    loop_bytes=LOOP_BYTES,
    threaded=lambda body: asks_bootstrap(body),
    plain=Plain(frozenset({"probs", "labels"}), plain_calibration),
)
def score_calibration(body: Body) -> Response:
    """Calibration metrics with every convention named and echoed back.

    Binned errors (ECE, MCE, RMSCE, class-wise and marginal variants), adaptive and
    debiased estimators, smooth ECE, the Brier score with its Murphy decomposition,
    NLL and accuracy, Spiegelhalter's Z and cumulative KS/Kuiper tests, reliability
    bins with Wilson intervals, and optional bootstrap intervals. `preset` reproduces
    torchmetrics, scikit-learn, netcal or Guo et al.'s _ECELoss exactly.
    """
    return calibration_answer(body).response()


def asks_bootstrap(body: Body) -> bool:
    """Whether `body` asks for bootstrap intervals (``{}`` too: 1,000 resamples by default).

    Such a body is scored in a worker thread even when small (:func:`service.api.deps.scoring`).
    """
    return body.fields.get("bootstrap") is not None


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
    # (a field sent as null is its default, as the document says: not "sent", so no preset refuses it)
    sent: dict[str, Any] = {
        name: getattr(options, name)
        for name in CONVENTION_FIELDS
        if name in options.model_fields_set and getattr(options, name) is not None
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


def reliability_bins(bins: Sequence[core.Reliability], *, weighted: bool = False) -> list[ReliabilityBins]:
    """The answer's reliability bins (sequence and multilabel answers), `weight_sum` when `weighted`."""
    return [ReliabilityBins(**document) for document in reliability_documents(bins, weighted=weighted)]


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
    computation found (bins, target, clipping). The model of :func:`convention_document`.
    """
    document = convention_document(
        options, conv, input=input, form=form, dtype=dtype, weighted=weighted, stated=stated
    )
    return CalibrationConvention(**document)


def convention_result(
    options: CalibrationOptions,
    prediction: Prediction,
    report: core.CalibrationReport,
    *,
    weighted: bool = False,
) -> CalibrationConvention:
    """The `convention` of an N×K or binary answer (:func:`calibration_convention`)."""
    return CalibrationConvention(**_convention(options, prediction, report, weighted=weighted))


def _convention(
    options: CalibrationOptions, prediction: Prediction, report: core.CalibrationReport, *, weighted: bool
) -> Document:
    conv = report.convention
    dist = prediction.dist
    factor = brier_factor(conv.brier_scale, dist.n_classes, binary=dist.binary)
    matches = (
        core.PRESETS[conv.preset].matches
        if conv.preset
        else "Xent conventions as stated; any preset reproduces its peer exactly"
    )
    return convention_document(
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
) -> Document:
    """CalibrationResult's JSON document, fields in its order (formats/answers.py)."""
    scalars = dict(report.scalars)
    if "nll" in scalars:
        scalars["nll"] *= _nll_scale(options)
    dist = prediction.dist
    reliability = report.reliability
    return {
        "n": int(dist.log_probs.shape[0]),
        "n_ignored": int(n_ignored),
        "n_classes": int(dist.n_classes),
        "metrics": metrics_document(scalars),
        "per_class": float_lists(report.per_class),
        "reliability": reliability_documents(reliability, weighted=weighted) if reliability else None,
        "top_k_accuracy": float_dict(top_k),
        "bootstrap": None if boot is None else document_of(boot),
        "convention": _convention(options, prediction, report, weighted=weighted),
    }
