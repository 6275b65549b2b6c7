"""Smooth ECE (Błasiok & Nakkiran 2023), computed as the authors' ``relplot`` package does.

The residuals ``r = c - o`` are kernel-smoothed over confidence with a Gaussian kernel
reflected at 0 and 1, on a grid: each pair is split linearly between its two nearest
grid points, the grid is convolved with the kernel, and the result is interpolated at
mesh points. smECE_σ = Σ |r̂(t)| d̂(t) / Σ d̂(t) over the mesh, d̂ the smoothed density
(+1e-4). The bandwidth σ* is the fixed point σ = smECE_σ, found by ten bisection steps
on [0, 1] (``relplot.smECE``, version 1.0.3, matched to 1e-12).

relplot convolves with ``np.convolve`` (direct, O(n²) on its 1,000–3,000-point grids); here
the convolution is a product of real FFTs of the next power of two, equal up to rounding
(~1e-16 of the grid's mass): the grids' spectra are taken once per grid size, the kernel's
once per (size, σ) and cached across calls, so each σ costs one inverse FFT.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .._typing import FloatArray, IntArray
from ..cancel import checkpoint

ComplexArray = np.ndarray[Any, np.dtype[np.complex128]]

#: Largest samples × grid points smoothed one sample at a time (see :func:`smooth_ece_weighted`).
_UNIT_GRID_ELEMENTS = 1 << 22

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


def _grid_size(sigma: float) -> int:
    return max(2000, round(20 / sigma)) // 2 + 1


#: Per grid size: the spectra (:func:`_grid_spectrum`) of the rounded residuals and ones (density).
Grids = dict[int, "ComplexArray"]


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
        rows = np.stack([_round_to_grid(f, residual, n_grid), _round_to_grid(f, np.ones_like(f), n_grid)])
        cached = _grid_spectrum(rows)  # the grids depend on σ only through n_grid
        if grids is not None:
            grids[n_grid] = cached
    smoothed, density = _smooth_spectrum(cached, n_grid, sigma)  # both grids in one inverse FFT
    density = density + DENSITY_FLOOR
    # np.add.reduce is np.sum's own reduction (the same pairwise sum) without its Python steps
    return float(np.add.reduce(np.abs(smoothed / density) * density) / np.add.reduce(density))


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
            checkpoint()
            midpoint = (start + end) / 2
            if accepted(midpoint):
                end = midpoint
            else:
                start = midpoint
    return SmoothECE(smooth_ece_at(conf, outcome, start, grids=grids), start)


def _round_rows(f: FloatArray, values: FloatArray, weights: FloatArray, n_grid: int) -> FloatArray:
    """:func:`_round_to_grid` of R weighted copies of the sample at once (R×n_grid)."""
    scaled = f * (n_grid - 1)
    lower = scaled.astype(np.int64).clip(0, n_grid - 2)
    frac = scaled - lower
    n_res, n = weights.shape
    keys = (np.arange(n_res)[:, None] * (n_grid + 1) + lower[None, :]).ravel()
    size = n_res * (n_grid + 1)
    below = np.bincount(keys, weights=(weights * ((1 - frac) * values)).ravel(), minlength=size)
    above = np.bincount(keys + 1, weights=(weights * (frac * values)).ravel(), minlength=size)
    return np.asarray((below + above).reshape(n_res, n_grid + 1)[:, :n_grid], dtype=np.float64)


def _fft_size(n: int) -> int:
    """The power of two that holds the 2n - 1 reflected grid points an n-point kernel reaches."""
    return 1 << int(2 * n - 2).bit_length()


def _grid_spectrum(grid: FloatArray) -> ComplexArray:
    """Real FFT of each row reflected at both ends, cut to the 2n - 1 points the outputs use.

    relplot convolves ``[g[::-1][:-1], g, g[::-1][1:]]`` (3n - 2 points) with the n-point kernel
    and keeps the n "valid" outputs from n // 2 on; those read only the points n // 2 to
    n // 2 + 2n - 2, whose valid outputs a circular convolution of 2n - 1 points or more leaves
    unaliased.
    """
    n = grid.shape[1]
    flipped = grid[:, ::-1]
    extended = np.concatenate([flipped[:, :-1], grid, flipped[:, 1:]], axis=1)[:, n // 2 : n // 2 + 2 * n - 1]
    return np.fft.rfft(extended, _fft_size(n), axis=1)


@dataclass(frozen=True)
class _Kernel:
    """relplot's Gaussian kernel on n points of [0, 1], by its spectrum, and its mesh for one σ."""

    spectrum: ComplexArray
    #: Grid point at or below each mesh point and the next one, and the mesh point's shares of them.
    below: IntArray
    above: IntArray
    share_below: FloatArray
    share_above: FloatArray


#: Largest grid whose kernels are kept: relplot's smallest grid (σ ≥ 0.01), ≤ 32 KiB a kernel.
CACHED_GRID = 1001


def _kernel(n: int, sigma: float) -> _Kernel:
    """The kernel and mesh of (n, σ) (read-only arrays); those of grids up to `CACHED_GRID` are cached.

    The bisection visits the same dyadic σ values (1, 1/2, 1/4, ...) for every sample, so most
    requests find their kernels made: at most 128 of ≤ 32 KiB are kept. A smaller σ has a
    larger grid (up to 10,001 points, ~0.4 MiB a kernel) and is made each time.
    """
    return _cached_kernel(n, sigma) if n <= CACHED_GRID else _make_kernel(n, sigma)


def _make_kernel(n: int, sigma: float) -> _Kernel:
    t = np.linspace(0, 1, n)
    kernel = np.exp(-(t - 0.5) * (t - 0.5) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    mesh = np.linspace(0, 1, max(round(10 / sigma), MESH_POINTS))
    step = 1 / (n - 1)
    index = (mesh * (n - 1)).astype(np.int64).clip(0, n - 2)
    share = (mesh - index * step) / step
    made = _Kernel(np.fft.rfft(kernel, _fft_size(n)), index, index + 1, 1 - share, share)
    for array in (made.spectrum, made.below, made.above, made.share_below, made.share_above):
        array.flags.writeable = False
    return made


_cached_kernel = lru_cache(maxsize=128)(_make_kernel)


def _smooth_spectrum(spectrum: ComplexArray, n: int, sigma: float) -> FloatArray:
    """Rows of :func:`_grid_spectrum` smoothed by the kernel, interpolated linearly at σ's mesh.

    The n centred points of ``np.convolve(extended, kernel, "valid")``, as relplot takes them.
    """
    kernel = _kernel(n, sigma)
    full = np.fft.irfft(spectrum * kernel.spectrum, _fft_size(n), axis=1)
    smoothed = full[:, n - 1 : 2 * n - 1]  # the valid outputs begin at n - 1 of the full convolution
    lower = smoothed[:, kernel.below]
    lower *= kernel.share_below
    upper = smoothed[:, kernel.above]
    upper *= kernel.share_above
    return np.asarray(np.add(lower, upper, out=lower), dtype=np.float64)


def _smooth_rows(grid: FloatArray, sigma: float) -> FloatArray:
    """Kernel smoothing (relplot's) of each row: reflected Gaussian convolution by FFT, then interpolation."""
    return _smooth_spectrum(_grid_spectrum(grid), grid.shape[1], sigma)


def smooth_ece_weighted(
    conf: FloatArray, outcome: FloatArray, weights: FloatArray, *, eps: float = 1e-3
) -> tuple[FloatArray, FloatArray]:
    """:func:`smooth_ece` of R resamples given as multiplicities (R×N): values and σ* per resample.

    Grids are weighted sums (one ``np.bincount`` per grid size over all resamples); the
    kernel smoothing runs on every resample's grid at once (FFT convolution, equal to
    ``np.convolve`` up to rounding), and the bisection steps all resamples together,
    grouping those at the same candidate σ: a loop over the ten steps and the distinct
    σ values, never over samples or resamples. When a σ is shared by more resamples than there
    are samples, each sample's own grid is smoothed instead and the resamples are their
    weighted sums (R×N @ N×mesh): the bootstrap of a small sample costs N smoothings per σ,
    not R.
    """
    f = conf.astype(np.float64, copy=False)
    residual = f - outcome.astype(np.float64, copy=False)
    ones = np.ones_like(f)
    n_res = weights.shape[0]
    cache: dict[int, tuple[FloatArray, FloatArray]] = {}

    def at(sigma: float, rows: np.ndarray) -> FloatArray:
        n_grid = _grid_size(sigma)
        if rows.size > f.size and f.size * n_grid <= _UNIT_GRID_ELEMENTS:
            # Fewer samples than resamples: smoothing is linear in the grid and the grid in the
            # weights, so smooth each sample's own grid once and weight the results.
            unit = np.eye(f.size)
            smoothed = weights[rows] @ _smooth_rows(_round_rows(f, residual, unit, n_grid), sigma)
            density = weights[rows] @ _smooth_rows(_round_rows(f, ones, unit, n_grid), sigma)
        else:
            if n_grid not in cache:
                grids = (_round_rows(f, residual, weights, n_grid), _round_rows(f, ones, weights, n_grid))
                cache[n_grid] = grids
            grid_r, grid_d = cache[n_grid]
            smoothed = _smooth_rows(grid_r[rows], sigma)
            density = _smooth_rows(grid_d[rows], sigma)
        density = density + DENSITY_FLOOR
        return np.asarray(np.sum(np.abs(smoothed / density) * density, axis=1) / np.sum(density, axis=1))

    def evaluate(sigmas: FloatArray, rows: np.ndarray) -> FloatArray:
        values = np.zeros(rows.size)
        for sigma in np.unique(sigmas):
            checkpoint()
            pick = sigmas == sigma
            values[pick] = at(float(sigma), rows[pick])
        return values

    def accepted(sigmas: FloatArray, rows: np.ndarray) -> np.ndarray:
        ok = sigmas < eps
        check = ~ok
        ok[check] = sigmas[check] < evaluate(sigmas[check], rows[check])
        return ok

    all_rows = np.arange(n_res)
    start = np.ones(n_res)
    searching = all_rows[~accepted(start, all_rows)]
    end = np.zeros(n_res)
    for _ in range(10):
        checkpoint()
        midpoint = (start[searching] + end[searching]) / 2
        ok = accepted(midpoint, searching)
        end[searching[ok]] = midpoint[ok]
        start[searching[~ok]] = midpoint[~ok]
    return evaluate(start, all_rows), start
