"""A fit whose line search finds no lower loss: converged only where float64 can tell no better point."""

import numpy as np
import pytest

from service.core.maps.recalibration import minimize_mean_loss, stalled_at_optimum


def _flat_around(x0: float, gradient: float):
    """A loss lowest at `x0` as float64 tells it (any other point 4e-16 higher), reporting `gradient`."""

    def loss_grad(x):
        return (0.5 if x[0] == x0 else 0.5 + 4e-16), np.array([gradient])

    return loss_grad


def test_a_stop_with_a_gradient_below_float64s_resolution_is_converged_and_says_why():
    x, info = minimize_mean_loss(_flat_around(3.0, 5e-9), [3.0])  # 5e-9 > GTOL: L-BFGS-B says ABNORMAL
    assert x == pytest.approx([3.0]) and info.converged
    assert (
        info.message
        == "CONVERGENCE: NO LOWER LOSS IN FLOAT64 (PROJECTED GRADIENT 5.0e-09, LINE SEARCH STOPPED)"
    )


def test_a_stop_with_a_gradient_float64_resolves_is_not_converged():
    _, info = minimize_mean_loss(_flat_around(3.0, 1e-4), [3.0])
    assert not info.converged and info.message.startswith("ABNORMAL")
    _, info = minimize_mean_loss(_flat_around(3.0, 1e-4), [3.0], bounds=[(None, 3.0)])  # free to go down
    assert not info.converged


@pytest.mark.parametrize(
    ("y", "grad", "bounds", "stalled"),
    [
        ([0.0, 0.0], [1e-8, -1e-8], None, True),
        ([0.0, 0.0], [1e-8, -2e-8], None, False),  # 2e-8 > √ε ≈ 1.49e-8
        ([1.0, 0.0], [1e-3, 1e-9], [(1.0, None), (None, None)], True),  # pushing against its lower bound
        ([1.0, 0.0], [-1e-3, 1e-9], [(1.0, None), (None, None)], False),  # pulling away from it
        ([0.0, 5.0], [1e-9, -1e-3], [(None, None), (None, 5.0)], True),  # against its upper bound
    ],
)
def test_the_projected_gradient_decides(y, grad, bounds, stalled):
    message = stalled_at_optimum(0.5, np.array(y), np.array(grad), bounds)
    assert (message is not None) is stalled


def test_a_loss_of_larger_magnitude_has_a_proportionally_larger_resolution():
    assert stalled_at_optimum(1e4, np.zeros(1), np.array([1e-5]), None) is not None  # 1e-5 ≤ 1.49e-8 · 1e4
    assert stalled_at_optimum(np.inf, np.zeros(1), np.zeros(1), None) is None  # not even a finite loss
