"""Between plain-JSON parameter sets and the core's recalibration maps: fit one, apply one."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from service import core
from service.core._typing import FloatArray
from service.core.maps.binary import BetaCalibration, PlattScaling, fit_beta, fit_platt
from service.core.maps.nonparametric import HistogramBinning, IsotonicCalibration, fit_histogram, fit_isotonic
from service.core.maps.scaling import MatrixScaling, VectorScaling, fit_matrix_scaling, fit_vector_scaling
from service.core.maps.score_isotonic import IsotonicScoreCalibration, fit_isotonic_scores
from service.core.maps.score_sigmoid import SigmoidScoreCalibration, fit_sigmoid_scores
from service.core.maps.temperature import TemperatureScaling

from .formats.inputs import Truth
from .schemas.recalibration import RecalibrateOptions
from .schemas.recalibration_maps import (
    BetaParameters,
    HistogramParameters,
    IsotonicParameters,
    Knots,
    MatrixParameters,
    Parameters,
    PlattParameters,
    SigmoidParameters,
    TemperatureParameters,
    VectorParameters,
)


class Map(Protocol):
    """A fitted recalibration map of the core."""

    def log_probs(self, scores: FloatArray) -> FloatArray:
        """Recalibrated N×K log-probabilities."""
        ...


@dataclass(frozen=True)
class Fitted:
    """A parameter set and how its fit ended."""

    parameters: Parameters
    converged: bool
    iterations: int
    message: str


BINARY_ONLY = {"platt", "beta"}


def check_form(method: str, scores: FloatArray, field: str) -> None:
    """422 unless `scores` suit `method` (Platt and beta need binary predictions)."""
    if method in BINARY_ONLY and scores.ndim == 2 and scores.shape[1] != 2:
        raise core.InputError(
            field,
            f"must be binary (a length-N vector or N×2) for method {method}; got K = {scores.shape[1]}",
        )


def _array(values: Any, field: str, shape: tuple[int, ...]) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except ValueError:
        raise core.InputError(field, "must be a rectangular array") from None
    if array.shape != shape:
        raise core.InputError(
            field, f"must have shape {list(shape)} to match the predictions; got {list(array.shape)}"
        )
    return array


def _mapped_classes(scores: FloatArray) -> int:
    """Classes mapped by one-vs-rest maps: 1 (binary: the positive class) or K."""
    return 1 if scores.ndim == 1 or scores.shape[1] == 2 else int(scores.shape[1])


def _temperature(p: TemperatureParameters, scores: FloatArray) -> Map:
    if not p.temperature >= 0:
        raise core.InputError("parameters.temperature", f"must be ≥ 0 (or Infinity); got {p.temperature}")
    return TemperatureScaling(p.temperature)


def _vector(p: VectorParameters, scores: FloatArray) -> Map:
    k = 2 if scores.ndim == 1 else scores.shape[1]
    return VectorScaling(_array(p.scale, "parameters.scale", (k,)), _array(p.bias, "parameters.bias", (k,)))


def _matrix(p: MatrixParameters, scores: FloatArray) -> Map:
    k = 2 if scores.ndim == 1 else scores.shape[1]
    return MatrixScaling(
        _array(p.weights, "parameters.weights", (k, k)), _array(p.bias, "parameters.bias", (k,))
    )


def _platt(p: PlattParameters, scores: FloatArray) -> Map:
    return PlattScaling(p.a, p.b)


def _beta(p: BetaParameters, scores: FloatArray) -> Map:
    return BetaCalibration(p.a, p.b, p.c)


def _isotonic(p: IsotonicParameters, scores: FloatArray) -> Map:
    mapped = _mapped_classes(scores)
    if len(p.knots) != mapped:
        raise core.InputError(
            "parameters.knots", f"must hold {mapped} knot set(s) for these predictions; got {len(p.knots)}"
        )
    xs, ys = [], []
    for c, knots in enumerate(p.knots):  # validation of a few knot lists, not of samples
        x = np.asarray(knots.x, dtype=np.float64)
        if len(knots.y) != x.size:
            raise core.InputError(
                "parameters.knots",
                f"must pair every x with a y; got {x.size} x, {len(knots.y)} y",
                index=(c,),
            )
        if np.any(np.diff(x) < 0):
            raise core.InputError("parameters.knots", "must have non-decreasing x", index=(c,))
        xs.append(x)
        ys.append(np.asarray(knots.y, dtype=np.float64))
    return IsotonicScoreCalibration(xs, ys) if p.input == "scores" else IsotonicCalibration(xs, ys)


def _histogram(p: HistogramParameters, scores: FloatArray) -> Map:
    edges = np.asarray(p.edges, dtype=np.float64)
    if np.any(np.diff(edges) <= 0) or edges[0] != 0 or edges[-1] != 1:
        raise core.InputError("parameters.edges", "must increase strictly from 0 to 1")
    values = _array(p.values, "parameters.values", (_mapped_classes(scores), edges.size - 1))
    return HistogramBinning(edges, values)


def _sigmoid(p: SigmoidParameters, scores: FloatArray) -> Map:
    if len(p.b) != len(p.a):
        raise core.InputError(
            "parameters.b", f"must hold as many intercepts as slopes ({len(p.a)}); got {len(p.b)}"
        )
    return SigmoidScoreCalibration(np.asarray(p.a, dtype=np.float64), np.asarray(p.b, dtype=np.float64))


_BUILDERS: dict[str, Callable[[Any, FloatArray], Map]] = {
    "temperature": _temperature,
    "vector": _vector,
    "matrix": _matrix,
    "platt": _platt,
    "beta": _beta,
    "isotonic": _isotonic,
    "histogram": _histogram,
    "sigmoid": _sigmoid,
}


def apply_parameters(parameters: Parameters, scores: FloatArray, field: str = "logits") -> FloatArray:
    """Recalibrated N×K log-probabilities of `scores` under `parameters` (validated against them)."""
    check_form(parameters.method, scores, field)
    on_scores = isinstance(parameters, SigmoidParameters) or (
        isinstance(parameters, IsotonicParameters) and parameters.input == "scores"
    )
    if on_scores != (field == "scores") and not isinstance(parameters, PlattParameters):
        raise core.InputError(
            "scores" if field == "scores" else "parameters.input",
            "apply to platt, sigmoid and isotonic parameters fitted on raw scores (input: scores) only"
            if field == "scores"
            else f"map raw scores (sigmoid, or isotonic with input scores); send `scores`, not `{field}`",
        )
    return _BUILDERS[parameters.method](parameters, scores).log_probs(scores)


def _fit_temperature(scores: FloatArray, truth: Truth, options: RecalibrateOptions) -> Fitted:
    fit = core.fit_temperature(
        scores,
        labels=truth.labels,
        targets=truth.targets,
        sample_weight=truth.sample_weight,
        rtol=options.rtol,
        max_iter=options.max_iter,
        validate=False,
    )
    return Fitted(
        TemperatureParameters(temperature=fit.temperature), fit.converged, fit.iterations, fit.reason
    )


def _fit_vector(scores: FloatArray, truth: Truth, options: RecalibrateOptions) -> Fitted:
    fit, info = fit_vector_scaling(
        scores,
        labels=truth.labels,
        targets=truth.targets,
        l2=options.l2,
        sample_weight=truth.sample_weight,
        max_iter=options.max_iter,
    )
    return _fitted(VectorParameters(method="vector", scale=fit.scale.tolist(), bias=fit.bias.tolist()), info)


def _fit_matrix(scores: FloatArray, truth: Truth, options: RecalibrateOptions) -> Fitted:
    fit, info = fit_matrix_scaling(
        scores,
        labels=truth.labels,
        targets=truth.targets,
        l2=options.l2,
        off_diagonal=options.off_diagonal,
        bias_l2=options.bias_l2,
        sample_weight=truth.sample_weight,
        max_iter=options.max_iter,
    )
    return _fitted(
        MatrixParameters(method="matrix", weights=fit.weights.tolist(), bias=fit.bias.tolist()), info
    )


def _fit_platt(scores: FloatArray, truth: Truth, options: RecalibrateOptions) -> Fitted:
    fit, info = fit_platt(
        scores,
        labels=truth.labels,
        targets=truth.targets,
        target_smoothing=options.target_smoothing,
        sample_weight=truth.sample_weight,
        max_iter=options.max_iter,
    )
    return _fitted(PlattParameters(method="platt", a=fit.a, b=fit.b), info)


def _fit_beta(scores: FloatArray, truth: Truth, options: RecalibrateOptions) -> Fitted:
    fit, info = fit_beta(
        scores,
        labels=truth.labels,
        targets=truth.targets,
        sample_weight=truth.sample_weight,
        max_iter=options.max_iter,
    )
    return _fitted(BetaParameters(method="beta", a=fit.a, b=fit.b, c=fit.c), info)


def _fit_isotonic(scores: FloatArray, truth: Truth, options: RecalibrateOptions) -> Fitted:
    fit, info = fit_isotonic(
        scores, labels=truth.labels, targets=truth.targets, sample_weight=truth.sample_weight
    )
    knots = [Knots(x=x.tolist(), y=y.tolist()) for x, y in zip(fit.x, fit.y, strict=True)]
    return _fitted(IsotonicParameters(method="isotonic", knots=knots), info)


def fit_isotonic_on_scores(scores: FloatArray, truth: Truth) -> Fitted:
    """Isotonic maps of raw scores per class (sklearn's CalibratedClassifierCV(method="isotonic"))."""
    fit, info = fit_isotonic_scores(
        scores, labels=truth.labels, targets=truth.targets, sample_weight=truth.sample_weight
    )
    knots = [Knots(x=x.tolist(), y=y.tolist()) for x, y in zip(fit.x, fit.y, strict=True)]
    return _fitted(IsotonicParameters(method="isotonic", knots=knots, input="scores"), info)


def _fit_sigmoid(scores: FloatArray, truth: Truth, options: RecalibrateOptions) -> Fitted:
    fit, info = fit_sigmoid_scores(
        scores,
        labels=truth.labels,
        targets=truth.targets,
        sample_weight=truth.sample_weight,
        max_iter=options.max_iter,
    )
    return _fitted(SigmoidParameters(method="sigmoid", a=fit.a.tolist(), b=fit.b.tolist()), info)


def _fit_histogram(scores: FloatArray, truth: Truth, options: RecalibrateOptions) -> Fitted:
    fit, info = fit_histogram(
        scores,
        labels=truth.labels,
        targets=truth.targets,
        sample_weight=truth.sample_weight,
        n_bins=options.n_bins,
    )
    parameters = HistogramParameters(method="histogram", edges=fit.edges.tolist(), values=fit.values.tolist())
    return _fitted(parameters, info)


def _fitted(parameters: Parameters, info: Any) -> Fitted:
    return Fitted(parameters, info.converged, info.iterations, info.message)


FITTERS: dict[str, Callable[[FloatArray, Truth, RecalibrateOptions], Fitted]] = {
    "temperature": _fit_temperature,
    "vector": _fit_vector,
    "matrix": _fit_matrix,
    "platt": _fit_platt,
    "beta": _fit_beta,
    "isotonic": _fit_isotonic,
    "histogram": _fit_histogram,
    "sigmoid": _fit_sigmoid,
}
