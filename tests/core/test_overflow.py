"""Pins the NumPy internals :mod:`service.core.overflow` uses to raise overflow cheaply."""

import numpy as np
import pytest

from service.core.overflow import ERROR_STATE, RAISE_OVER

BIG = np.array([1.7e308])


def test_overflow_raises_inside_and_warns_outside():
    token = ERROR_STATE.set(RAISE_OVER)
    try:
        with pytest.raises(FloatingPointError):
            _ = BIG + BIG
        with pytest.warns(RuntimeWarning, match="invalid"):  # the other errors as NumPy's default
            _ = np.array([0.0]) * np.inf
    finally:
        ERROR_STATE.reset(token)
    with pytest.warns(RuntimeWarning, match="overflow"):
        _ = BIG + BIG


def test_the_callers_own_state_comes_back():
    with np.errstate(over="ignore", invalid="ignore"):
        token = ERROR_STATE.set(RAISE_OVER)
        try:
            assert np.geterr()["over"] == "raise"
        finally:
            ERROR_STATE.reset(token)
        assert np.geterr() == {**np.geterr(), "over": "ignore", "invalid": "ignore"}
        assert np.isinf(BIG + BIG)[0]  # ignored, as the caller asked
    assert np.geterr()["over"] == "warn"


def test_the_state_is_numpys_errstate():
    token = ERROR_STATE.set(RAISE_OVER)
    try:
        assert np.geterr() == {"divide": "warn", "over": "raise", "under": "ignore", "invalid": "warn"}
    finally:
        ERROR_STATE.reset(token)
