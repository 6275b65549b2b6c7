"""Per-sequence byte and word counts of PerplexityTotals: whole floats read as integers, totals exact.

Found by the contract test: `words` in an FP64 tensor of whole numbers was refused ("must hold
non-negative integers"), though 2.0 is an integer (JSON Schema's rule, which the server keeps for
labels). And an int64 sum of counts near 2**62 wrapped to a negative total.
"""

import numpy as np
import pytest

from service.core import InputError
from service.core.language.perplexity import PerplexityTotals

NLL = [2.0, 4.0, 1.0]
TOKENS = [1, 2, 1]


def test_whole_floats_count_as_the_integers():
    as_floats = PerplexityTotals.from_sequences(
        NLL, TOKENS, bytes=np.array([12.0, 7.0, 0.0]), words=[2.0, 1.0, 3.0]
    )
    as_ints = PerplexityTotals.from_sequences(NLL, TOKENS, bytes=np.array([12, 7, 0]), words=[2, 1, 3])
    assert (as_floats.bytes, as_floats.words) == (as_ints.bytes, as_ints.words) == (19, 6)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_whole_floats_of_every_width_count_as_the_integers(dtype):
    """An FP16 tensor of counts too (found by the contract test: 2**63 cast to float16 overflowed)."""
    totals = PerplexityTotals.from_sequences(
        NLL, TOKENS, bytes=np.array([12, 7, 2048], dtype), words=[1, 2, 3]
    )
    assert totals.bytes == 2067 and totals.words == 6


@pytest.mark.parametrize(
    "counts", [[1.5, 2.0, 3.0], [-1.0, 2.0, 3.0], [np.inf, 1.0, 1.0], [np.nan, 1.0, 1.0]]
)
def test_fractions_negatives_and_non_finite_counts_are_refused(counts):
    with pytest.raises(InputError, match="must hold non-negative integers"):
        PerplexityTotals.from_sequences(NLL, TOKENS, bytes=np.array(counts))


def test_totals_near_int64_are_exact_and_past_it_refused():
    near = np.array([2**62, 2**62 - 6, 5], dtype=np.int64)  # an int64 sum's partial sums stay below 2**63
    assert PerplexityTotals.from_sequences(NLL, TOKENS, bytes=near).bytes == 2**63 - 1
    past = np.array([2**62, 2**62, 5], dtype=np.int64)  # an int64 sum wraps to −2**63 + 5
    with pytest.raises(InputError, match=r"must total at most 2\*\*63 − 1"):
        PerplexityTotals.from_sequences(NLL, TOKENS, bytes=past)
