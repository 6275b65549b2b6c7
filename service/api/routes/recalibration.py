"""``POST /v1/temperature``, ``POST /v1/recalibrate`` and ``POST /v1/apply``."""

import functools
import math
from dataclasses import replace
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter
from starlette.responses import Response

from service import core
from service.api.deps import INLINE_BYTES, Plain, scoring
from service.api.formats.answers import Document
from service.api.formats.inputs import Body, Prediction, read_truth
from service.api.formats.plain import general_answer, plain_logits
from service.api.maps import FITTERS, apply_parameters, check_form, fit_isotonic_on_scores
from service.api.schemas import ProblemDetails
from service.api.schemas.recalibration import (
    ApplyBody,
    ApplyOptions,
    ApplyResult,
    Parameters,
    RecalibrateBody,
    RecalibrateOptions,
    RecalibrateResult,
    TemperatureBody,
    TemperatureOptions,
    TemperatureParameters,
    TemperatureResult,
)
from service.core._typing import FloatArray

from . import BINARY_OUTPUT_RESPONSE, PROBLEM_RESPONSES, Answer, request_body
from .recalibration_document import convention, convention_document, metrics, metrics_document
from .recalibration_inputs import check_weight_sum, read_fit, read_scores
from .recalibration_validation import temperature_fitter, validation
from .temperature_sequences import sequence_apply_fields, sequence_fit_fields, sequence_values

router = APIRouter(prefix="/v1", tags=["recalibration"])


MISSING_EXTRA_RESPONSE = {
    "model": ProblemDetails,
    "description": "The method needs scipy, which this installation lacks (install the `maps` extra).",
    "content": {"application/problem+json": {}},
}


#: Array fields; B×T×K sequence inputs add a B×T `mask`.
ARRAY_FIELDS = ("logits", "probs", "scores", "labels", "targets", "sample_weight", "mask")
#: /v1/temperature's arrays: a temperature divides logits, never raw scores.
TEMPERATURE_FIELDS = tuple(name for name in ARRAY_FIELDS if name != "scores")

TEMPERATURE_PEER = (
    "scipy.optimize.minimize_scalar on the same NLL (to 1e-6 relative); "
    'sklearn CalibratedClassifierCV(method="temperature") (≥1.8)'
)


@router.post(
    "/temperature",
    response_model=TemperatureResult,
    responses={**BINARY_OUTPUT_RESPONSE, **PROBLEM_RESPONSES},
    openapi_extra=request_body(TemperatureBody, ARRAY_FIELDS),
)
@scoring(inline_bytes=0, roles=ARRAY_FIELDS)
def fit_temperature(body: Body) -> Response:
    """Fit the temperature T minimising the mean NLL of softmax(logits / T) (binary: σ(z / T)).

    Exact: a safeguarded Newton iteration on β = 1/T (the NLL is convex in β) with
    analytic first and second derivatives, one pass over the data per iteration,
    until the Newton step is below `rtol`·β. Probabilities are fitted as logits
    log(max(p, eps)). Degenerate batches are answered with `converged: false` and a
    `reason`, not an error: separable (T → 0), uninformative (T → ∞), constant logits.
    B×T×K token logits (or probs, as log(max(p, eps))) with B×T `labels` (and `mask`,
    `ignore_index`) fit one T over every scored token, streamed a block of rows at a time; the
    answer echoes the shape and token counts.
    """
    return temperature_answer(body).response()


def temperature_answer(body: Body) -> Answer:
    """The temperature fit of `body`, with the recalibrated probabilities when asked."""
    options = body.options(TemperatureOptions, ARRAY_FIELDS)
    sequences = sequence_values(body)
    if sequences is not None:  # B×T×K token logits
        return Answer(TemperatureResult(**sequence_fit_fields(body, options, *sequences)))
    prediction, scores, truth, n_ignored = read_fit(body, options)
    weights = truth.sample_weight
    fit = core.fit_temperature(
        scores,
        labels=truth.labels,
        targets=truth.targets,
        sample_weight=weights,
        rtol=options.rtol,
        max_iter=options.max_iter,
        validate=False,
    )
    parameters = TemperatureParameters(temperature=fit.temperature)
    after = apply_parameters(parameters, scores, prediction.field)
    return Answer(
        TemperatureResult(
            temperature=fit.temperature,
            converged=fit.converged,
            reason=fit.reason,
            iterations=fit.iterations,
            gradient=fit.gradient,
            n=after.shape[0],
            n_ignored=n_ignored,
            before=metrics(prediction.dist.log_probs, truth, options.base),
            after=metrics(after, truth, options.base),
            parameters=parameters,
            validation=validation(options, prediction, scores, truth, temperature_fitter(options)),
            convention=convention(prediction, truth, options, TEMPERATURE_PEER),
        ),
        _probs_out(after, prediction) if options.return_probs else {},
        options.binary_data_output,
    )


@router.post(
    "/recalibrate",
    response_model=RecalibrateResult,
    responses={**BINARY_OUTPUT_RESPONSE, **PROBLEM_RESPONSES, 501: MISSING_EXTRA_RESPONSE},
    openapi_extra=request_body(RecalibrateBody, ARRAY_FIELDS),
)
@scoring(inline_bytes=0, roles=ARRAY_FIELDS)
def fit_recalibration(body: Body) -> Response:
    """Fit a recalibration map (`method`) and return its parameters as plain JSON, with before/after metrics.

    | method | fits | parameters | cost | prefer when |
    |---|---|---|---|---|
    | temperature | softmax(z/T) | 1 | a few passes (exact Newton) | the default; any K, small N |
    | vector | softmax(w⊙z + b) | 2K | L-BFGS, O(NK) per step | classes miscalibrated differently |
    | matrix | softmax(zWᵀ + b) | K² + K | L-BFGS, O(NK²) per step | K ≤ 50, large N, use off_diagonal |
    | platt | σ(a·s + b) | 2 | L-BFGS, O(N) | binary scores (SVM margins, logits) |
    | beta | σ(c + a ln q − b ln(1−q)) | 3 | L-BFGS, O(N) | binary probabilities bunched near 0/1 |
    | isotonic | monotone knots | ≤ distinct q | PAVA, O(N log N) per class | thousands of samples |
    | histogram | equal-width bins | bins per class | one pass | a simple, robust baseline |
    | sigmoid | σ(a_k·s_k + b_k), raw scores | 2 per class | L-BFGS, O(NK) | decision_function outputs |

    Maps act on the logits as sent, or on log(max(p, eps)) for probabilities;
    isotonic and histogram map softmax/sigmoid probabilities, one-vs-rest for
    K > 2 with rows renormalised; with raw `scores` (decision_function outputs)
    isotonic and sigmoid map the scores themselves, as sklearn's CalibratedClassifierCV.
    `/v1/apply` with the returned `parameters`
    reproduces `after` exactly. B×T×K token logits (B×T `labels`, `mask`, `ignore_index`)
    take method temperature only: one T over every scored token, as /v1/temperature.
    """
    return recalibrate_answer(body).response()


def recalibrate_answer(body: Body) -> Answer:
    """The fitted map of `body`, with the recalibrated probabilities when asked."""
    options = body.options(RecalibrateOptions, ARRAY_FIELDS)
    sequences = sequence_values(body) if body.fields.get("scores") is None else None
    if sequences is not None:  # B×T×K token logits
        fields = sequence_fit_fields(body, options, *sequences)
        del fields["temperature"], fields["gradient"]  # in `parameters`; the answer has no gradient
        return Answer(RecalibrateResult(method=options.method, message=fields.pop("reason"), **fields))
    prediction, scores, truth, n_ignored = read_fit(body, options, method=options.method)
    check_form(options.method, scores, prediction.field)
    on_scores = prediction.field == "scores" and options.method == "isotonic"  # maps in score space
    if options.method == "sigmoid" and prediction.field != "scores":
        raise core.InputError(
            "method", f'"sigmoid" maps raw `scores` (decision_function outputs); got `{prediction.field}`'
        )
    fitter = FITTERS[options.method]
    if on_scores:
        fitter = lambda s, t, _: fit_isotonic_on_scores(s, t)  # noqa: E731
    fitted = fitter(scores, truth, options)
    after = apply_parameters(fitted.parameters, scores, prediction.field)
    return Answer(
        RecalibrateResult(
            method=options.method,
            parameters=fitted.parameters,
            converged=fitted.converged,
            iterations=fitted.iterations,
            message=fitted.message,
            n=after.shape[0],
            n_ignored=n_ignored,
            before=metrics(prediction.dist.log_probs, truth, options.base),
            after=metrics(after, truth, options.base),
            validation=validation(
                options, prediction, scores, truth, lambda s, t: fitter(s, t, options).parameters
            ),
            convention=convention(prediction, truth, options, _PEERS[options.method]),
        ),
        _probs_out(after, prediction) if options.return_probs else {},
        options.binary_data_output,
    )


_PEERS = {
    "temperature": TEMPERATURE_PEER,
    "vector": "torch autograd gradient zero at the fit (Guo et al. 2017)",
    "matrix": "sklearn LogisticRegression(C=inf) on the logits when unpenalised (Kull et al. 2019 ODIR)",
    "platt": "sklearn CalibratedClassifierCV(method='sigmoid') with target_smoothing (A = -a, B = -b)",
    "beta": "sklearn LogisticRegression(C=inf) on [ln q, -ln(1-q)] when a, b > 0 (Kull et al. 2017)",
    "isotonic": "sklearn IsotonicRegression(out_of_bounds='clip'), one-vs-rest as CalibratedClassifierCV",
    "histogram": "mean label per equal-width bin (Zadrozny & Elkan 2001)",
    "sigmoid": "sklearn CalibratedClassifierCV(method='sigmoid') on raw scores (A = -a, B = -b)",
}


def plain_apply(fields: dict[str, Any], max_elements: int) -> tuple[bytes, int] | None:
    """The answer to ``{"logits": N×K floats, "temperature": T > 0}`` and nothing else.

    What :func:`apply_answer` answers (:class:`service.api.deps.Plain`), by the same calls: the
    probabilities softmax(logits / T) in its answer to a plain request; None for the general
    path whenever the request is not that after all.
    """
    logits, temperature = plain_logits(fields["logits"], "logits"), fields["temperature"]
    if (
        logits is None
        or logits.size > max_elements
        or type(temperature) not in (int, float)
        or not 0 < temperature < math.inf
    ):
        return None
    # the general path's map (TemperatureScaling.log_probs) is this call, its parameters checked already
    probs = np.exp(core.apply_temperature(logits, float(temperature), validate=False))
    if not np.isfinite(probs).all():  # written with "NaN"/"Infinity" strings by the general path
        return None
    n = int(probs.shape[0])
    return orjson.dumps({**_plain_answer(), "n": n, "probs": probs}, option=orjson.OPT_SERIALIZE_NUMPY), n


@functools.cache
def _plain_answer() -> Document:
    """The general path's answer to a plain request, without its probabilities."""
    return general_answer(apply_answer, {"logits": [[0.0, 1.0]], "temperature": 1.0})


@router.post(
    "/apply",
    response_model=ApplyResult,
    responses={**BINARY_OUTPUT_RESPONSE, **PROBLEM_RESPONSES},
    openapi_extra=request_body(ApplyBody, ARRAY_FIELDS),
)
@scoring(
    inline_bytes=INLINE_BYTES,
    roles=ARRAY_FIELDS,
    plain=Plain(frozenset({"logits", "temperature"}), plain_apply),
)
def apply_recalibration(body: Body) -> Response:
    """Apply fitted parameters (as /v1/temperature or /v1/recalibrate returned them) to new predictions.

    Send `parameters` (the object from a fit) or a bare `temperature`. Send
    `labels` or `targets` too to have the output scored: on the fitting batch this
    reproduces the fit's "after" metrics exactly. B×T×K token logits (or probs) take a temperature
    and B×T `labels` (`mask`, `ignore_index`): the answer scores softmax(logits / T) over
    the scored tokens a block at a time, without returning (or building) the B×T×K `probs`.
    """
    return apply_answer(body).response()


def apply_answer(body: Body) -> Answer:
    """The recalibrated probabilities of `body`, scored when the truth was sent."""
    options = body.options(ApplyOptions, ARRAY_FIELDS)
    parameters = _pick_parameters(options)
    sequences = sequence_values(body) if body.fields.get("scores") is None else None
    if sequences is not None:  # B×T×K token logits: scored, never a second B×T×K tensor
        return Answer(ApplyResult(**sequence_apply_fields(body, options, parameters, *sequences)))
    if options.ignore_index is not None:
        raise core.InputError("ignore_index", "applies to B×T×K sequence inputs only on /v1/apply")
    prediction, scores = read_scores(body, options, method=parameters.method)
    after = apply_parameters(parameters, scores, prediction.field)
    scored = body.fields.get("labels") is not None or body.fields.get("targets") is not None
    truth = read_truth(body, prediction, vocabulary=options) if scored else None
    if truth is not None and body.fields.get("sample_weight") is not None:
        weights = core.check_sample_weight(body.array("sample_weight"), prediction.dist.n_samples)
        truth = replace(truth, sample_weight=weights.astype(np.float64))
        check_weight_sum(truth, 0)
    result: Document = {  # ApplyResult's JSON document, fields in its order (formats/answers.py)
        "n": int(after.shape[0]),
        "method": parameters.method,
        "probs": None,  # placed by `respond`, from the arrays
        "metrics": None if truth is None else metrics_document(after, truth, options.base),
        "convention": None if truth is None else convention_document(prediction, truth, options, ""),
    }
    return Answer(result, _probs_out(after, prediction), options.binary_data_output)


def _pick_parameters(options: ApplyOptions) -> Parameters:
    if options.parameters is not None and options.temperature is not None:
        raise core.InputError(
            "temperature", "must not be sent with `parameters` (exactly one of the two); got both"
        )
    if options.parameters is None and options.temperature is None:
        raise core.InputError(
            "parameters", "or `temperature` is required (exactly one of the two); got neither"
        )
    if options.parameters is not None:
        return options.parameters
    assert options.temperature is not None
    if not options.temperature >= 0:
        raise core.InputError("temperature", f"must be ≥ 0 (or Infinity); got {options.temperature}")
    return TemperatureParameters(temperature=options.temperature)


def _probs_out(log_probs: FloatArray, prediction: Prediction) -> dict[str, FloatArray]:
    """The recalibrated probabilities as the per-sample output `probs` (binary: the positive class)."""
    probs = np.exp(log_probs)
    return {"probs": probs[:, 1] if prediction.dist.binary else probs}
