"""The held-out check of a recalibration fit: refit on folds (or a holdout), score the rest."""

from collections.abc import Callable
from typing import Any

import numpy as np

from service import core
from service.api.formats.inputs import Prediction, Truth
from service.api.maps import apply_parameters
from service.api.schemas.recalibration import (
    FitOptions,
    FoldsValidation,
    Parameters,
    TemperatureOptions,
    TemperatureParameters,
    ValidationReport,
)
from service.core._typing import FloatArray

from .recalibration_document import metrics
from .recalibration_inputs import subset

#: Fits a parameter set on (log-probabilities, truth).
Fitter = Callable[[FloatArray, Truth], Parameters]


def temperature_fitter(options: TemperatureOptions) -> Fitter:
    """The temperature fit under `options`, as a :data:`Fitter`."""

    def fit(scores: FloatArray, truth: Truth) -> Parameters:
        result = core.fit_temperature(
            scores,
            labels=truth.labels,
            targets=truth.targets,
            sample_weight=truth.sample_weight,
            rtol=options.rtol,
            max_iter=options.max_iter,
            validate=False,
        )
        return TemperatureParameters(temperature=result.temperature)

    return fit


def validation(
    options: FitOptions, prediction: Prediction, scores: FloatArray, truth: Truth, fit: Fitter
) -> ValidationReport | None:
    """The report of `options.validation` (None when not asked): `fit` refitted on each split."""
    check = options.validation
    if check is None:
        return None
    log_probs = prediction.dist.log_probs
    n = log_probs.shape[0]
    if isinstance(check, FoldsValidation):
        splits = core.fold_splits(n, check.folds, seed=check.seed)
    else:
        splits = core.holdout_split(n, check.holdout, seed=check.seed)
    recalibrated = np.empty_like(log_probs)
    fitted: list[dict[str, Any]] = []
    for fit_rows, eval_rows in splits:  # k fits: a loop over folds, not samples
        parameters = fit(scores[fit_rows], subset(truth, fit_rows))
        fitted.append(parameters.model_dump(mode="json"))
        recalibrated[eval_rows] = apply_parameters(parameters, scores[eval_rows], prediction.field)
    evaluated = np.sort(np.concatenate([rows for _, rows in splits]))
    scored = subset(truth, evaluated)
    return ValidationReport(
        scheme="folds" if isinstance(check, FoldsValidation) else "holdout",
        seed=check.seed,
        n_fit=max(rows.size for rows, _ in splits),
        n_eval=int(evaluated.size),
        parameters=fitted,
        before=metrics(log_probs[evaluated], scored, options.base),
        after=metrics(recalibrated[evaluated], scored, options.base),
    )
