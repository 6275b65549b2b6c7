"""Statistical tests of calibration: Spiegelhalter's Z and cumulative (KS / Kuiper) statistics.

All take confidence/outcome pairs ``c``, ``o`` (length N) and optional per-sample
multiplicities ``weights`` (R×N, for the bootstrap), and return one value per resample.
"""

import math
from dataclasses import dataclass

import numpy as np

from .._typing import FloatArray


def normal_sf(z: FloatArray) -> FloatArray:
    """Upper tail ``1 - Φ(z)`` of the standard normal, ``erfc(z / √2) / 2`` elementwise.

    Examples
    --------
    >>> float(normal_sf(np.array([0.0]))[0])
    0.5
    """
    flat = np.asarray(z, dtype=np.float64).ravel()
    out = np.fromiter((0.5 * math.erfc(v / math.sqrt(2)) for v in flat), np.float64, flat.size)
    return out.reshape(np.shape(z))


def _weighted_sum(values: FloatArray, weights: FloatArray | None) -> FloatArray:
    return values.sum(keepdims=True) if weights is None else weights @ values


def spiegelhalter_z(conf: FloatArray, outcome: FloatArray, weights: FloatArray | None = None) -> FloatArray:
    """Spiegelhalter's (1986) Z: ``Σ (o - c)(1 - 2c) / sqrt(Σ (1 - 2c)² c (1 - c))``.

    Equals ``(B - E[B]) / sqrt(Var[B])`` for the Brier sum ``B = Σ (o - c)²`` under the
    hypothesis that outcomes are Bernoulli(c). Positive Z: outcomes farther from the
    forecasts than calibrated forecasts would be. NaN when every c is 0, ½ or 1.

    Examples
    --------
    >>> spiegelhalter_z(np.array([0.2, 0.8]), np.array([0.0, 1.0]))
    array([-0.70710678])
    """
    c = conf.astype(np.float64, copy=False)
    o = outcome.astype(np.float64, copy=False)
    s = 1 - 2 * c
    num = _weighted_sum((o - c) * s, weights)
    var = _weighted_sum(s * s * c * (1 - c), weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, num / np.sqrt(var), np.nan)


def two_sided_p(z: FloatArray) -> FloatArray:
    """Two-sided normal p-value ``2 (1 - Φ(|z|))`` (NaN stays NaN)."""
    return np.where(np.isnan(z), np.nan, 2 * normal_sf(np.abs(np.nan_to_num(z))))


@dataclass(frozen=True)
class CumulativeStats:
    """Tygert's cumulative calibration statistics, scaled by their null standard deviation.

    Attributes
    ----------
    ks, kuiper : ndarray, shape (R,)
        ``max_k |C_k| / σ`` and ``(max_k C_k - min_k C_k) / σ`` with ``C_0 = 0``.
    """

    ks: FloatArray
    kuiper: FloatArray


def cumulative_stats(
    conf: FloatArray, outcome: FloatArray, weights: FloatArray | None = None, *, presorted: bool = False
) -> CumulativeStats:
    """Cumulative differences of outcomes and confidences in order of confidence.

    ``C_k = (1/N) Σ_{j ≤ k} (o_(j) - c_(j))`` over the pairs sorted by c (stable, so
    ties keep input order), ``σ = sqrt(Σ c (1 - c)) / N`` (Arrieta-Ibarra, Gujral, Tannen,
    Tygert & Xu 2022, "Metrics of calibration for probabilistic predictions"). Under
    calibration ``C / σ`` tends to standard Brownian motion on [0, 1].
    """
    if presorted:
        c = conf.astype(np.float64, copy=False)
        d = outcome.astype(np.float64) - c
    else:
        order = np.argsort(conf, kind="stable")
        c = conf[order].astype(np.float64)
        d = outcome[order].astype(np.float64) - c
        weights = None if weights is None else weights[:, order]
    if weights is None:
        path = np.cumsum(d)[None, :]
        var = np.sum(c * (1 - c), keepdims=True)
    else:
        path = np.cumsum(weights * d, axis=1)
        var = weights @ (c * (1 - c))
    top = np.maximum(path.max(axis=1), 0.0)
    bottom = np.minimum(path.min(axis=1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(var > 0, 1 / np.sqrt(var), np.nan)
    return CumulativeStats(np.maximum(top, -bottom) * scale, (top - bottom) * scale)


def ks_brownian_p(x: FloatArray) -> FloatArray:
    """``P(sup_{t≤1} |W_t| ≥ x)`` for standard Brownian motion W.

    Below 3: ``1 - (4/π) Σ_{k≥0} (-1)^k / (2k+1) exp(-(2k+1)² π² / (8x²))`` (40 terms);
    from 3 on, where that difference from 1 loses relative precision:
    ``4 Σ_{k≥0} (-1)^k (1 - Φ((2k+1) x))`` (reflection principle, 3 terms).

    Examples
    --------
    >>> round(float(ks_brownian_p(np.array([2.0]))[0]), 6)
    0.091001
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    out = np.full(x.shape, np.nan)
    large = np.isfinite(x) & (x >= 3)
    small = np.isfinite(x) & (x < 3)
    if large.any():
        k = np.arange(3)
        terms = ((-1.0) ** k) * normal_sf((2 * k + 1) * x[large][:, None])
        out[large] = np.clip(4 * terms.sum(axis=1), 0, 1)
    if small.any():
        k = np.arange(40)
        xs = np.maximum(x[small], 1e-3)[:, None]
        m = 2 * k + 1
        terms = ((-1.0) ** k) / m * np.exp(-(m * m) * np.pi**2 / (8 * xs * xs))
        out[small] = np.clip(1 - 4 / np.pi * terms.sum(axis=1), 0, 1)
    out[np.isinf(x)] = 0.0
    return out


def kuiper_brownian_p(x: FloatArray) -> FloatArray:
    """``P(max_{t≤1} W_t - min_{t≤1} W_t ≥ x)`` for standard Brownian motion W.

    ``1 - Σ_{m odd} (8 / (m² π²) + 8 / x²) exp(-m² π² / (2x²))``, obtained by
    integrating the eigenfunction series for W staying in an interval of width x
    over where that interval starts (the range distribution, Feller 1951).

    Examples
    --------
    >>> round(float(kuiper_brownian_p(np.array([2.0]))[0]), 6)
    0.181494
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    out = np.full(x.shape, np.nan)
    ok = np.isfinite(x)
    xs = np.clip(x[ok], 1e-3, 40.0)[:, None]
    m = (2 * np.arange(400) + 1).astype(np.float64)
    terms = (8 / (m * m * np.pi**2) + 8 / (xs * xs)) * np.exp(-(m * m) * np.pi**2 / (2 * xs * xs))
    out[ok] = np.clip(1 - terms.sum(axis=1), 0, 1)
    out[np.isinf(x)] = 0.0
    return out
