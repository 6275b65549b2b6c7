"""Shape and value checks that return converted arrays or raise :class:`InputError`.

Every check is one vectorised pass; the first offending element is located only
on the error path.
"""

import functools
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._typing import BoolArray, FloatArray, IntArray
from .errors import InputError

#: Default tolerance on ``|sum(row) - 1|`` by the dtype the client sent.
SUM_TOLERANCE: dict[str, float] = {"float16": 1e-2, "float32": 1e-4, "float64": 1e-6}


def default_tolerance(dtype: np.dtype[Any]) -> float:
    """Row-sum tolerance for probabilities sent in `dtype` (integers count as float64)."""
    return SUM_TOLERANCE.get(dtype_name(dtype), SUM_TOLERANCE["float64"])


@functools.cache
def dtype_name(dtype: Any) -> str:
    """``np.dtype(dtype).name``, cached: NumPy computes it in Python, ~4 µs a call.

    Examples
    --------
    >>> dtype_name(np.float32), dtype_name(np.dtype("<f8"))
    ('float32', 'float64')
    """
    return np.dtype(dtype).name


def first_index(mask: BoolArray) -> tuple[int, ...]:
    """Index (as a tuple) of the first True element of `mask` in C order."""
    flat = int(np.flatnonzero(mask.ravel())[0])
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def as_float_array(values: ArrayLike, *, field: str) -> FloatArray:
    """Return `values` as a float array: float16 is widened to float32, integers to float64."""
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        return array.astype(np.float64)
    if array.dtype.kind != "f":
        raise InputError(field, f"must hold numbers; got dtype {array.dtype}")
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.itemsize > 8:
        return array.astype(np.float64)
    return array


def _check_prediction_shape(array: FloatArray, field: str) -> None:
    if array.ndim not in (1, 2):
        raise InputError(
            field,
            f"must be N×K (categorical) or a length-N vector (binary); got shape {array.shape}",
        )
    if array.shape[0] == 0:
        raise InputError(field, "must hold at least one sample; got an empty batch")
    if array.ndim == 2 and array.shape[1] < 2:
        raise InputError(field, f"must have K ≥ 2 classes per row; got K = {array.shape[1]}")


def _check_finite(array: FloatArray, field: str) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        index = first_index(~finite)
        raise InputError(field, f"must be finite; got {array[index]}", index=index)


def check_logits(logits: ArrayLike, *, field: str = "logits") -> FloatArray:
    """Return `logits` as a finite N×K float array (K ≥ 2) or a length-N vector, or raise.

    Examples
    --------
    >>> check_logits([[0, 1]]).dtype
    dtype('float64')
    """
    array = as_float_array(logits, field=field)
    _check_prediction_shape(array, field)
    _check_finite(array, field)
    return array


def _check_unit_interval(array: FloatArray, field: str) -> None:
    outside = (array < 0) | (array > 1)
    if outside.any():
        index = first_index(outside)
        raise InputError(field, f"must lie in [0, 1]; got {array[index]}", index=index)


def _check_row_sums(array: FloatArray, field: str, tolerance: float) -> None:
    error = np.abs(array.sum(axis=1, dtype=np.float64) - 1.0)
    bad = error > tolerance
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        total = float(array[row].sum(dtype=np.float64))
        raise InputError(
            field,
            f"must sum to 1 within {tolerance:g} (or send normalize: true); got {total:.10g}",
            index=(row,),
        )


def _plainly_valid(array: FloatArray, tolerance: float) -> bool:
    """True when N×K `array` is plainly valid probabilities; False means "run the exact checks".

    Plainly valid: every value is finite and in [0, 1], and every row sums to 1 within
    `tolerance` with room to spare for rounding.

    Two whole-array reductions and, for short rows, one ``einsum`` row sum in the array's dtype
    (3–4× faster than ``sum(axis=1)`` on K = 10); its rounding error, at most ~K·eps, is kept
    out of the margin so a row passing here passes the float64 check too.
    """
    if not (array.min() >= 0 and array.max() <= 1):  # NaN fails both comparisons, ±inf one
        return False
    k = array.shape[1]
    margin = 4 * k * float(np.finfo(array.dtype).eps)
    if k >= 64 or margin >= tolerance / 2:
        return False
    error = np.abs(np.einsum("ij->i", array) - 1)
    return bool(error.max() <= tolerance - margin)


def check_probabilities(
    probs: ArrayLike,
    *,
    field: str = "probs",
    tolerance: float | None = None,
    normalize: bool = False,
) -> FloatArray:
    """Return `probs` as validated probabilities, or raise.

    Parameters
    ----------
    probs : array-like, shape (n_samples, n_classes) or (n_samples,)
        Class probabilities per row, or the positive-class probability (binary).
    field : str, default="probs"
        Name used in error messages.
    tolerance : float, optional
        Allowed ``|sum(row) - 1|``. Default by the dtype sent: 1e-6 for float64,
        1e-4 for float32, 1e-2 for float16 (see ``SUM_TOLERANCE``).
    normalize : bool, default=False
        Divide each row by its sum instead of checking it. Rows then need only be
        non-negative with a positive sum.

    Returns
    -------
    probs : ndarray
        float32 for float16/float32 input, float64 otherwise.

    Examples
    --------
    >>> check_probabilities([[0.2, 0.9]], normalize=True)
    array([[0.18181818, 0.81818182]])
    """
    raw = np.asarray(probs)
    if tolerance is None:
        tolerance = default_tolerance(raw.dtype)
    array = as_float_array(raw, field=field)
    _check_prediction_shape(array, field)
    if array.ndim == 2 and not normalize and _plainly_valid(array, tolerance):
        return array  # finite, in [0, 1], rows summing to 1: the exact checks below would all pass
    _check_finite(array, field)
    if array.ndim == 1:
        _check_unit_interval(array, field)
        return array
    if not normalize:
        _check_unit_interval(array, field)
        _check_row_sums(array, field, tolerance)
        return array
    negative = array < 0
    if negative.any():
        index = first_index(negative)
        raise InputError(field, f"must be non-negative; got {array[index]}", index=index)
    totals = array.sum(axis=1, keepdims=True, dtype=np.float64)
    empty = totals[:, 0] <= 0
    if empty.any():
        raise InputError(field, "must have a positive sum to be normalised; got 0", index=first_index(empty))
    return (array / totals).astype(array.dtype, copy=False)


def check_labels(
    labels: ArrayLike,
    n_classes: int,
    *,
    field: str = "labels",
    ignore_index: int | None = None,
) -> IntArray:
    """Return `labels` as a 1-D int64 array in ``[0, n_classes)``, or raise.

    Integral floats (``1.0``) are accepted; booleans and fractions are not. A label
    equal to `ignore_index` may lie outside the range (PyTorch's ``-100``).

    Examples
    --------
    >>> check_labels([0, 2.0], 3)
    array([0, 2])
    """
    array = np.asarray(labels)
    if array.ndim != 1:
        raise InputError(field, f"must be a 1-D list of class indices; got shape {array.shape}")
    if array.shape[0] == 0:
        raise InputError(field, "must hold at least one label; got an empty batch")
    if array.dtype.kind == "f":
        array = integral_floats(array, field=field)
    elif array.dtype.kind not in "iu":
        raise InputError(field, f"must hold integers; got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if ignore_index is None and array.view(np.uint64).max() < n_classes:
        return array  # one reduction: negative labels are above 2**63 as unsigned
    if ignore_index == -1 and (array.view(np.uint64) + np.uint64(1)).max() <= n_classes:
        return array  # as unsigned, label + 1 wraps -1 to 0 and every other negative above 2**63
    outside = (array < 0) | (array >= n_classes)
    if ignore_index is not None:
        outside &= array != ignore_index
    if outside.any():
        index = first_index(outside)
        raise InputError(field, f"must lie in [0, {n_classes}); got {array[index]}", index=index)
    return array


def integral_floats(array: FloatArray, *, field: str = "labels") -> IntArray:
    """Return integers sent as floats (``2.0``, as JSON Schema counts them) as int64, or raise.

    A fraction, a non-finite value or a magnitude above 2**53 (where floats skip integers) is a
    422 naming `field`, as :func:`check_labels` reads labels.

    Examples
    --------
    >>> integral_floats(np.array([0.0, 3.0]))
    array([0, 3])
    """
    fractional = ~np.isfinite(array) | (array != np.round(array))
    if fractional.any():
        index = first_index(fractional)
        raise InputError(field, f"must hold integers; got {array[index]}", index=index)
    if array.size and float(np.abs(array).max()) > 2**53:  # a Python float: 2**53 overflows float16
        raise InputError(field, "must hold integers below 2**53 when sent as floats")
    return array.astype(np.int64)


def check_targets(
    targets: ArrayLike,
    n_classes: int,
    *,
    binary: bool,
    field: str = "targets",
    tolerance: float | None = None,
) -> FloatArray:
    """Return soft labels, N×K rows of probabilities (or a length-N vector if `binary`).

    Examples
    --------
    >>> check_targets([0.25, 1], 2, binary=True)
    array([0.25, 1.  ])
    """
    array = check_probabilities(targets, field=field, tolerance=tolerance)
    if binary and array.ndim != 1:
        raise InputError(field, f"must be a length-N vector for binary predictions; got shape {array.shape}")
    if not binary and array.shape[1:] != (n_classes,):
        raise InputError(field, f"must be N×{n_classes} like the predictions; got {array.shape}")
    return array


def check_class_weights(weights: ArrayLike, n_classes: int, *, field: str = "class_weights") -> FloatArray:
    """Return per-class weights: a length-K vector of finite, non-negative floats.

    Examples
    --------
    >>> check_class_weights([1, 2], 2)
    array([1., 2.])
    """
    return _weights(weights, (n_classes,), f"one weight per class ({n_classes})", field)


def check_sample_weight(weights: ArrayLike, n_samples: int, *, field: str = "sample_weight") -> FloatArray:
    """Return per-sample weights: a length-N vector of finite, non-negative floats (scikit-learn's).

    Examples
    --------
    >>> check_sample_weight([1, 0.5], 2)
    array([1. , 0.5])
    """
    return _weights(weights, (n_samples,), f"one weight per sample ({n_samples})", field, shape_word="shape ")


def _weights(
    weights: ArrayLike, shape: tuple[int], what: str, field: str, *, shape_word: str = ""
) -> FloatArray:
    """`weights` as finite, non-negative floats of `shape`, or an InputError naming `field`."""
    array = as_float_array(weights, field=field)
    if array.shape != shape:
        raise InputError(field, f"must hold {what}; got {shape_word}{array.shape}")
    _check_finite(array, field)
    negative = array < 0
    if negative.any():
        index = first_index(negative)
        raise InputError(field, f"must be non-negative; got {array[index]}", index=index)
    return array


def check_same_length(field: str, length: int, expected: int, *, other: str) -> None:
    """Raise unless `field` has as many samples as `other`."""
    if length != expected:
        raise InputError(field, f"must have as many samples as `{other}` ({expected}); got {length}")
