import numpy as np
import pytest

from service.core import (
    Distribution,
    InputError,
    check_class_weights,
    check_labels,
    check_logits,
    check_probabilities,
    check_targets,
)


def test_check_logits_rejects_non_finite_with_index():
    with pytest.raises(InputError, match=r"`logits\[1\]\[0\]` must be finite; got nan") as info:
        check_logits([[0.0, 1.0], [np.nan, 0.0]])
    assert info.value.index == (1, 0)
    assert info.value.field == "logits"


def test_check_logits_rejects_single_class():
    with pytest.raises(InputError, match=r"K ≥ 2 classes per row; got K = 1"):
        check_logits([[0.0], [1.0]])


def test_check_logits_rejects_empty_batch():
    with pytest.raises(InputError, match="empty batch"):
        check_logits(np.zeros((0, 3)))


def test_check_logits_rejects_three_dimensions():
    with pytest.raises(InputError, match=r"got shape \(1, 2, 2\)"):
        check_logits(np.zeros((1, 2, 2)))


def test_check_logits_rejects_strings():
    with pytest.raises(InputError, match="must hold numbers"):
        check_logits([["a", "b"]])


def test_check_probabilities_rejects_out_of_range():
    with pytest.raises(InputError, match=r"`probs\[0\]\[0\]` must lie in \[0, 1\]; got -0.5"):
        check_probabilities([[-0.5, 1.5]])


def test_check_probabilities_rejects_bad_row_sum_with_row_index():
    probs = np.full((20, 2), 0.5)
    probs[17] = [0.5, 0.4]
    with pytest.raises(InputError, match=r"`probs\[17\]` must sum to 1 within 1e-06") as info:
        check_probabilities(probs)
    assert info.value.index == (17,)


def test_check_probabilities_tolerance_follows_dtype():
    probs = np.array([[0.5, 0.50005]], dtype=np.float32)
    assert check_probabilities(probs).dtype == np.float32
    with pytest.raises(InputError):
        check_probabilities(probs.astype(np.float64))


def test_check_probabilities_normalize_divides_rows():
    out = check_probabilities([[1.0, 3.0], [0.2, 0.2]], normalize=True)
    np.testing.assert_allclose(out, [[0.25, 0.75], [0.5, 0.5]])


def test_check_probabilities_normalize_rejects_zero_rows():
    with pytest.raises(InputError, match=r"`probs\[1\]` must have a positive sum"):
        check_probabilities([[1.0, 0.0], [0.0, 0.0]], normalize=True)


def test_check_probabilities_binary_vector_in_unit_interval():
    np.testing.assert_array_equal(check_probabilities([0.0, 1.0]), [0.0, 1.0])
    with pytest.raises(InputError, match=r"`probs\[1\]` must lie in \[0, 1\]"):
        check_probabilities([0.0, 1.01])


def test_check_labels_rejects_out_of_range():
    with pytest.raises(InputError, match=r"`labels\[2\]` must lie in \[0, 3\); got 3"):
        check_labels([0, 1, 3], 3)


def test_check_labels_rejects_negative():
    with pytest.raises(InputError, match=r"must lie in \[0, 2\); got -1"):
        check_labels([-1], 2)


def test_check_labels_rejects_fractions_but_accepts_integral_floats():
    np.testing.assert_array_equal(check_labels([1.0, 0.0], 2), [1, 0])
    with pytest.raises(InputError, match=r"`labels\[1\]` must hold integers; got 0.5"):
        check_labels([1.0, 0.5], 2)


def test_check_labels_allows_ignore_index_outside_range():
    np.testing.assert_array_equal(check_labels([-100, 1], 2, ignore_index=-100), [-100, 1])


def test_check_labels_rejects_booleans():
    with pytest.raises(InputError, match="must hold integers; got dtype bool"):
        check_labels([True, False], 2)


def test_check_targets_checks_rows_and_shape():
    with pytest.raises(InputError, match=r"must be N×3 like the predictions"):
        check_targets([[0.5, 0.5]], 3, binary=False)
    with pytest.raises(InputError, match=r"`targets\[0\]` must sum to 1"):
        check_targets([[0.5, 0.4]], 2, binary=False)


def test_check_class_weights_length_and_sign():
    with pytest.raises(InputError, match=r"one weight per class \(3\)"):
        check_class_weights([1.0, 2.0], 3)
    with pytest.raises(InputError, match=r"`class_weights\[1\]` must be non-negative"):
        check_class_weights([1.0, -2.0], 2)


def test_eps_outside_unit_interval_is_rejected():
    with pytest.raises(InputError, match="`eps` must lie in"):
        Distribution.from_probs([[0.5, 0.5]], eps=1.5)
