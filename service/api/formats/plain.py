"""A plain request's arrays: JSON lists NumPy converts whole, checked as the general path checks them.

A route's plain request (:class:`service.api.deps.Plain`) is its arrays and nothing else. These
readers give an array only when the general path would take the same value without an error,
and None otherwise, so that the general path, not this one, reads it and words the error.
"""

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from service.core import InputError, check_logits

from .answers import Document
from .arrays import ArrayReader
from .inputs import Body


def plain_array(value: Any) -> np.ndarray | None:
    """`value` as an array when it is a JSON list NumPy converts whole into numbers; else None.

    The body was checked for boolean elements already: anything else (a tensor object, ragged
    rows, strings, null) is None.
    """
    if type(value) is not list:
        return None
    try:
        array = np.array(value)
    except (ValueError, OverflowError):
        return None
    return array if array.dtype.kind in "fiu" else None


def plain_logits(value: Any, field: str) -> np.ndarray | None:
    """N×K logits (K ≥ 2, sent as floats: integers' tolerance differs) the general path accepts; else None."""
    array = plain_array(value)
    if array is None or array.dtype != np.float64 or array.ndim != 2 or array.shape[1] < 2:
        return None
    try:
        return check_logits(array, field=field)
    except InputError:
        return None


def general_answer(answer: Callable[[Body], Any], fields: dict[str, Any]) -> Document:
    """The JSON document `answer` (a route's general path, giving an ``Answer``) gives `fields`.

    A route takes its plain answers' template from it, for one plain request, once.
    """
    result: Document = answer(Body(fields, ArrayReader(sys.maxsize, may_hold_booleans=False))).document()
    return result
