"""A plain request's arrays: JSON lists NumPy converts whole, checked as the general path checks them.

A route's plain request (:class:`service.api.deps.Plain`) is its arrays and nothing else. These
readers give an array only when the general path would take the same value without an error,
and None otherwise, so that the general path, not this one, reads it and words the error.
"""

import sys
from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np

from service.core import InputError, check_logits

from .answers import Document
from .arrays import ArrayReader
from .inputs import Body
from .payload import has_boolean_elements


def plain_array(value: Any) -> np.ndarray | None:
    """`value` as an array when it is a JSON list NumPy converts whole into numbers; else None.

    The body holds only numbers (:func:`numbers_only`): anything else (a tensor object, ragged
    rows, strings, null) is None.
    """
    if type(value) is not list:
        return None
    try:
        array = np.array(value)
    except (ValueError, OverflowError):
        return None
    return array if array.dtype.kind in "fiu" else None


def plain_matrix(value: Any) -> np.ndarray | None:
    """N×K floats (K ≥ 2, sent as floats: integers' tolerance differs) as float64; else None.

    Read by ``np.fromiter`` over the rows, half the cost of ``np.array`` (which first walks the
    lists to find their common type), so only from a body of numbers (:func:`numbers_only`):
    ``fromiter`` would read ``"1.5"`` as 1.5 and ``null`` as NaN (which the checks refuse). The
    first element decides the type, as ``np.array`` would: all integers are read as integers by
    the general path, floats and integers together as floats.
    """
    if type(value) is not list or not value:
        return None
    first = value[0]
    if type(first) is not list or len(first) < 2 or type(first[0]) is not float:
        return None
    n, k = len(value), len(first)
    try:
        if set(map(len, value)) != {k}:  # ragged: `fromiter` would stop at n·k elements all the same
            return None
        return np.fromiter(chain.from_iterable(value), np.float64, n * k).reshape(n, k)
    except (TypeError, ValueError, OverflowError):  # a row or element that is not a number
        return None


def plain_logits(value: Any, field: str) -> np.ndarray | None:
    """N×K logits (:func:`plain_matrix`) the general path accepts; else None."""
    array = plain_matrix(value)
    if array is None:
        return None
    try:
        return check_logits(array, field=field)
    except InputError:
        return None


def numbers_only(text: bytes | bytearray, fields: dict[str, Any]) -> bool:
    """Whether JSON `text` (parsed into `fields`) holds no string but its keys, no boolean in an array.

    A plain request's readers take only such a body. Every string takes two unescaped quotes,
    so a body with exactly two per key has no string value (nor an object inside an array,
    whose keys would be strings).
    """
    at = -1
    for _ in range(2 * len(fields)):  # memchr from quote to quote: `bytes.count` takes ~0.5 ns a byte
        at = text.find(b'"', at + 1)
    return text.find(b'"', at + 1) == -1 and not has_boolean_elements(text)


def general_answer(answer: Callable[[Body], Any], fields: dict[str, Any]) -> Document:
    """The JSON document `answer` (a route's general path, giving an ``Answer``) gives `fields`.

    A route takes its plain answers' template from it, for one plain request, once.
    """
    result: Document = answer(Body(fields, ArrayReader(sys.maxsize, may_hold_booleans=False))).document()
    return result
