import sys

import numpy as np
import pytest
import scipy.special as sp

from service.core import InputError, check_probabilities
from service.core.narrow_rows import row_argmax

kernel = sys.modules["service.core.narrow_rows"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [2, 10, 63, 64, 300])
def test_row_argmax_matches_numpy_across_blocks_with_ties(rng, monkeypatch, dtype, k):
    monkeypatch.setattr(kernel, "BLOCK_BYTES", 13 * k * np.dtype(dtype).itemsize)  # 13 rows a block
    values = rng.integers(0, 4, size=(1001, k)).astype(dtype)  # many ties
    values[5] = 0.0  # a row that is all ties
    values[6, -1] = 1e30
    index, maxima = row_argmax(values)
    np.testing.assert_array_equal(index, values.argmax(axis=1))
    np.testing.assert_array_equal(maxima, values.max(axis=1))
    assert maxima.dtype == dtype


def test_row_argmax_places_nan_like_argmax():
    values = np.array([[0.1, np.nan, 0.9], [0.3, 0.2, 0.5]])
    index, maxima = row_argmax(values)
    np.testing.assert_array_equal(index, [1, 2])
    np.testing.assert_array_equal(maxima, [np.nan, 0.5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_check_probabilities_fast_path_keeps_the_exact_tolerance(rng, dtype):
    probs = sp.softmax(rng.standard_normal((5000, 10)), axis=1)
    probs[1234] *= 1 + 5e-4  # row sum off by 5e-4: beyond float32's 1e-4 and float64's 1e-6
    with pytest.raises(InputError, match=r"`probs\[1234\]` must sum to 1 within") as error:
        check_probabilities(probs.astype(dtype))
    assert error.value.index == (1234,)
    probs[1234] /= 1 + 5e-4
    tolerance = {np.float32: 1e-4, np.float64: 1e-6}[dtype]
    probs[77] *= 1 + 0.999 * tolerance  # just inside: the exact float64 check decides, and passes
    checked = check_probabilities(probs.astype(dtype))
    assert checked.dtype == dtype


@pytest.mark.parametrize(
    "bad, match", [(np.nan, "must be finite"), (np.inf, "must be finite"), (-0.1, r"\[0, 1\]")]
)
def test_check_probabilities_fast_path_still_names_the_first_bad_value(rng, bad, match):
    probs = sp.softmax(rng.standard_normal((3000, 10)), axis=1)
    probs[2999, 3] = bad
    with pytest.raises(InputError, match=match) as error:
        check_probabilities(probs)
    assert error.value.index == (2999, 3)
