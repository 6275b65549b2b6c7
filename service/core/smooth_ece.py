"""Smooth ECE (Błasiok & Nakkiran 2023), computed as the authors' ``relplot`` package does.

The residuals ``r = c - o`` are kernel-smoothed over confidence with a Gaussian kernel
reflected at 0 and 1, on a grid: each pair is split linearly between its two nearest
grid points, the grid is convolved with the kernel, and the result is interpolated at
mesh points. smECE_σ = Σ |r̂(t)| d̂(t) / Σ d̂(t) over the mesh, d̂ the smoothed density
(+1e-4). The bandwidth σ* is the fixed point σ = smECE_σ, found by ten bisection steps
on [0, 1] (``relplot.smECE``, version 1.0.3, matched to 1e-12).
"""

from dataclasses import dataclass

import numpy as np

from ._typing import FloatArray

#: relplot's ``config.smECE_mesh_pts`` and ``BaseKernelMixin.smooth`` density floor.
MESH_POINTS = 200
DENSITY_FLOOR = 1e-4


def _round_to_grid(f: FloatArray, values: FloatArray, n_grid: int) -> FloatArray:
    """Split each value between grid points ``floor(f (n-1))`` and the next, linearly."""
    scaled = f * (n_grid - 1)
    lower = scaled.astype(np.int64).clip(0, n_grid - 2)
    frac = scaled - lower
    below = np.bincount(lower, weights=(1 - frac) * values, minlength=n_grid)
    above = np.bincount(lower + 1, weights=frac * values, minlength=n_grid)
    return np.asarray(below + above, dtype=np.float64)


def _reflected_smooth(grid: FloatArray, sigma: float) -> FloatArray:
    """Convolve grid values with a Gaussian of width σ, reflecting at both ends."""
    n = grid.size
    t = np.linspace(0, 1, n)
    kernel = np.exp(-(t - 0.5) * (t - 0.5) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    extended = np.concatenate([grid[::-1][:-1], grid, grid[::-1][1:]])
    return np.convolve(extended, kernel, "valid")[n // 2 : n // 2 + n]


def _interpolate(t: FloatArray, y: FloatArray) -> FloatArray:
    """Linear interpolation of ``i / (len(y) - 1) ↦ y[i]`` at `t`."""
    n = y.size
    step = 1 / (n - 1)
    idx = (t * (n - 1)).astype(np.int64).clip(0, n - 2)
    residual = (t - idx * step) / step
    return y[idx] * (1 - residual) + y[idx + 1] * residual


def _kernel_apply(grid: FloatArray, mesh: FloatArray, sigma: float) -> FloatArray:
    return _interpolate(mesh, _reflected_smooth(grid, sigma))


def _grid_size(sigma: float) -> int:
    return max(2000, round(20 / sigma)) // 2 + 1


#: Grid values per grid size: the rounded residuals and the rounded ones (density).
Grids = dict[int, tuple[FloatArray, FloatArray]]


def smooth_ece_at(
    conf: FloatArray, outcome: FloatArray, sigma: float, *, grids: Grids | None = None
) -> float:
    """Smooth ECE at a fixed bandwidth σ (``relplot.smECE_sigma``).

    Examples
    --------
    >>> round(smooth_ece_at(np.array([0.9, 0.9]), np.array([1.0, 1.0]), 0.1), 6)
    0.099995
    """
    n_grid = _grid_size(sigma)
    cached = None if grids is None else grids.get(n_grid)
    if cached is None:
        f = conf.astype(np.float64, copy=False)
        residual = f - outcome.astype(np.float64, copy=False)
        cached = (_round_to_grid(f, residual, n_grid), _round_to_grid(f, np.ones_like(f), n_grid))
        if grids is not None:
            grids[n_grid] = cached
    mesh = np.linspace(0, 1, max(round(10 / sigma), MESH_POINTS))
    smoothed = _kernel_apply(cached[0], mesh, sigma)
    density = _kernel_apply(cached[1], mesh, sigma) + DENSITY_FLOOR
    return float(np.sum(np.abs(smoothed / density) * density) / np.sum(density))


@dataclass(frozen=True)
class SmoothECE:
    """The smooth ECE and the bandwidth σ* it was evaluated at."""

    value: float
    sigma: float


def smooth_ece(conf: FloatArray, outcome: FloatArray, *, eps: float = 1e-3) -> SmoothECE:
    """Smooth ECE at the fixed-point bandwidth: σ* = 1 if smECE_1 > 1, else ten bisection steps.

    A candidate σ is accepted when ``σ < eps`` or ``σ < smECE_σ``; the largest rejected
    bound is returned, as ``relplot.smECE(f, y, return_width=True)``.

    Examples
    --------
    >>> result = smooth_ece(np.array([0.2, 0.9, 0.6]), np.array([0.0, 1.0, 1.0]))
    >>> round(result.sigma, 6)
    0.183594
    """
    grids: Grids = {}  # the grids depend on σ only through their size

    def accepted(sigma: float) -> bool:
        return sigma < eps or sigma < smooth_ece_at(conf, outcome, sigma, grids=grids)

    start = 1.0
    if not accepted(start):
        end = 0.0
        for _ in range(10):
            midpoint = (start + end) / 2
            if accepted(midpoint):
                end = midpoint
            else:
                start = midpoint
    return SmoothECE(smooth_ece_at(conf, outcome, start, grids=grids), start)
