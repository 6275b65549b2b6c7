"""Isotonic calibration of unbounded scores (``decision_function`` outputs), as scikit-learn does it.

scikit-learn's ``CalibratedClassifierCV(method="isotonic")`` fits one
``IsotonicRegression(out_of_bounds="clip")`` per class on the classifier's raw score
(not on a probability): binary scores (a length-N vector) get one map, whose output is
P(positive), with P(negative) = 1 − it; N×K scores get one map per class, one-vs-rest,
and each row is divided by its sum — a row whose maps all give 0 becomes uniform, 1/K.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._typing import FloatArray, IntArray
from ..errors import InputError
from .nonparametric import OPTIMUM, _assemble, _truth_columns, isotonic_knots
from .recalibration import FitInfo


def check_scores(scores: np.ndarray, *, field: str = "scores") -> FloatArray:
    """Return raw scores as a float array: finite, a length-N vector or N×K with K ≥ 3, or raise.

    Examples
    --------
    >>> check_scores(np.array([-3.5, 0.0, 12.0]))
    array([-3.5,  0. , 12. ])
    """
    array = np.asarray(scores)
    if array.dtype.kind in "iub" or array.dtype == np.float16:
        array = array.astype(np.float64)
    if array.dtype.kind != "f":
        raise InputError(field, f"must hold numbers; got dtype {array.dtype}")
    if array.ndim == 2 and array.shape[1] < 3 or array.ndim not in (1, 2) or array.shape[0] == 0:
        raise InputError(
            field,
            "must be a length-N vector (binary: the positive class's score, as sklearn's decision_function) "
            f"or N×K with K ≥ 3; got shape {list(array.shape)}",
        )
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(field, f"must be finite; got {array[index]}", index=index)
    return array


def _score_columns(scores: FloatArray) -> FloatArray:
    return scores[:, None] if scores.ndim == 1 else scores


@dataclass(frozen=True)
class IsotonicScoreCalibration:
    """One non-decreasing piecewise-linear map per class from a raw score to a probability.

    Between knots values are interpolated linearly, beyond the end knots the end values
    hold (``out_of_bounds="clip"``).
    """

    x: Sequence[FloatArray]
    y: Sequence[FloatArray]

    def log_probs(self, scores: FloatArray) -> FloatArray:
        """N×K log-probabilities: sklearn's ``_CalibratedClassifier.predict_proba``, logged."""
        columns = _score_columns(scores)
        if columns.shape[1] != len(self.x):
            raise InputError(
                "parameters.knots",
                f"must hold one knot set per mapped class ({columns.shape[1]}); got {len(self.x)}",
            )
        mapped = np.stack(  # one np.interp per class: knot sets differ in length
            [np.interp(columns[:, c], self.x[c], self.y[c]) for c in range(columns.shape[1])], axis=1
        )
        return _assemble(mapped, scores.ndim == 1)


def _weighted_knots(s: FloatArray, t: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Knots as ``IsotonicRegression._build_y``: zero weights dropped, ties pooled, PAVA, runs trimmed."""
    kept = w > 0
    return isotonic_knots(s[kept], t[kept], w[kept])


def fit_isotonic_scores(
    scores: FloatArray,
    *,
    labels: IntArray | None = None,
    targets: FloatArray | None = None,
    sample_weight: FloatArray | None = None,
) -> tuple[IsotonicScoreCalibration, FitInfo]:
    """Fit isotonic regression of each class's indicator on that class's raw score.

    Parameters
    ----------
    scores : ndarray of shape (N,) or (N, K), K ≥ 3
        Any real scores, increasing with the class's likelihood (``decision_function``).
    labels : ndarray of int, shape (N,), optional
        True classes (binary: 0 or 1).
    targets : ndarray of shape (N, K), optional
        Soft targets instead of labels (binary: the N×2 rows [1 − t, t]).
    sample_weight : ndarray of shape (N,), optional
        Non-negative weights: samples of weight 0 are left out, tied scores pooled by their
        weighted mean (``IsotonicRegression.fit(sample_weight=…)``).

    Returns
    -------
    IsotonicScoreCalibration, FitInfo
        Knots in score space per class; ties in a score are pooled first and only the
        ends of each constant run kept, as ``IsotonicRegression``. Matches
        ``CalibratedClassifierCV(FrozenEstimator(clf), method="isotonic")`` fitted on
        the same scores: its ``predict_proba`` on new scores equals this map's output.

    Examples
    --------
    >>> fit, _ = fit_isotonic_scores(np.array([-7.0, -1.0, 3.0, 40.0]), labels=np.array([0, 1, 0, 1]))
    >>> fit.x[0].tolist(), fit.y[0].tolist()
    ([-7.0, -1.0, 3.0, 40.0], [0.0, 0.5, 0.5, 1.0])
    """
    columns = _score_columns(scores).astype(np.float64)
    binary = scores.ndim == 1
    k = 2 if binary else columns.shape[1]
    truth = _truth_columns(labels, targets, k, binary)
    weights = np.ones(columns.shape[0]) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if not weights.max() > 0:
        raise InputError("sample_weight", "must have a positive total; got 0")
    weights = weights / weights.max()  # invariant to a common factor: no overflow near 1e308
    knots = [_weighted_knots(columns[:, c], truth[:, c], weights) for c in range(columns.shape[1])]
    return IsotonicScoreCalibration([x for x, _ in knots], [y for _, y in knots]), OPTIMUM
