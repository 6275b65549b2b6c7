"""Core kernels against the peers, single-threaded, same seeded data, one process.

    python -m benchmarks.core [--quick]

Each line: Xent's time, each peer's time as a ratio to Xent (> 1: Xent is faster), and Xent as
a ratio to the floor of one ``np.exp`` pass over the same array in its dtype.

Every contender starts from the same arrays: KL(p‖q) is timed from the two probability arrays
for all three (torch as ``F.kl_div(torch.log(q), p)``, its log inside the timed region; Xent
with its default eps floor on both sides; scipy as ``rel_entr``). The six statistics of
``/v1/divergence`` are timed the same way against scipy's functions for each. Binary CE from
logits also lists one blocked ``exp`` and one ``log`` pass and nothing else: the least any
softplus needs of NumPy, so the distance from Xent's time to the 2× target is visible.
"""

import argparse
import sys

import numpy as np
import scipy.special as sp
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import log_loss

from benchmarks._timing import median_ms, table
from service.core import Distribution, DivergenceRows, divergence_rows, nll, relative_entropy

torch.set_num_threads(1)


def _xent_ce_logits(z: np.ndarray, y: np.ndarray) -> float:
    return float(nll(y, Distribution.from_logits(z, validate=False)).mean(dtype=np.float64))


def _xent_ce_probs(p: np.ndarray, y: np.ndarray) -> float:
    return float(nll(y, Distribution.from_probs(p, validate=False)).mean(dtype=np.float64))


def _xent_kl(p: np.ndarray, q: np.ndarray) -> float:
    dp, dq = Distribution.from_probs(p, validate=False), Distribution.from_probs(q, validate=False)
    return float(relative_entropy(dp, dq).mean(dtype=np.float64))


def categorical(n: int, k: int, dtype: type, repeats: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    z = (3 * rng.standard_normal((n, k))).astype(dtype)
    y = rng.integers(0, k, size=n)
    p = sp.softmax(z.astype(np.float64), axis=1).astype(dtype)
    q = sp.softmax(rng.standard_normal((n, k)), axis=1).astype(dtype)
    tz, ty, tp, tq = torch.from_numpy(z), torch.from_numpy(y), torch.from_numpy(p), torch.from_numpy(q)
    floor = median_ms(lambda: np.exp(z), repeats)
    name = f"{n:,}×{k} {np.dtype(dtype).name}"
    rows = []
    xent = median_ms(lambda: _xent_ce_logits(z, y), repeats)
    peers = {
        "torch F.cross_entropy": median_ms(lambda: F.cross_entropy(tz, ty), repeats),
        "scipy log_softmax+gather": median_ms(
            lambda: -sp.log_softmax(z, axis=1)[np.arange(n), y].mean(dtype=np.float64), repeats
        ),
    }
    rows += [_row(f"CE from logits, {name}", xent, floor, peers)]
    xent = median_ms(lambda: _xent_ce_probs(p, y), repeats)
    peers = {"sklearn log_loss": median_ms(lambda: log_loss(y, p, labels=np.arange(k)), max(1, repeats // 2))}
    rows += [_row(f"CE from probs, {name}", xent, floor, peers)]
    xent = median_ms(lambda: _xent_kl(p, q), repeats)
    peers = {
        "torch F.kl_div": median_ms(lambda: F.kl_div(torch.log(tq), tp, reduction="batchmean"), repeats),
        "scipy rel_entr": median_ms(lambda: sp.rel_entr(p, q).sum(axis=1).mean(), repeats),
    }
    rows += [_row(f"KL(p‖q) from probs, {name}", xent, floor, peers)]
    few = max(1, repeats // 2)
    xent = median_ms(lambda: _xent_divergences(p, q), few)
    peers = {
        "scipy (rel_entr ×2, jensenshannon, entropy ×2, xlogy)": median_ms(
            lambda: _scipy_divergences(p, q), few
        )
    }
    rows += [_row(f"KL both ways, JS, H(p), H(q), H(p, q) from probs, {name}", xent, floor, peers)]
    return rows


def _xent_divergences(p: np.ndarray, q: np.ndarray) -> list[float]:
    rows = divergence_rows(Distribution.from_probs(p), Distribution.from_probs(q))
    return [
        float(np.mean(getattr(rows, name), dtype=np.float64)) for name in DivergenceRows.__dataclass_fields__
    ]


def _scipy_divergences(p: np.ndarray, q: np.ndarray) -> list[float]:
    rows = [
        sp.rel_entr(p, q).sum(axis=1),
        sp.rel_entr(q, p).sum(axis=1),
        jensenshannon(p, q, axis=1) ** 2,
        scipy_entropy(p, axis=1),
        scipy_entropy(q, axis=1),
        -sp.xlogy(p, q).sum(axis=1),
    ]
    return [float(np.mean(values, dtype=np.float64)) for values in rows]


def binary(n: int, dtype: type, repeats: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(1)
    z = (3 * rng.standard_normal(n)).astype(dtype)
    y = rng.integers(0, 2, size=n)
    p = sp.expit(z)
    tz, ty = torch.from_numpy(z), torch.from_numpy(y.astype(dtype))
    floor = median_ms(lambda: np.exp(z), repeats)
    name = f"binary {n:,} {np.dtype(dtype).name}"
    xent = median_ms(lambda: _xent_ce_logits(z, y), repeats)
    peers = {
        "torch BCE with logits": median_ms(lambda: F.binary_cross_entropy_with_logits(tz, ty), repeats),
        "one exp + one log pass, nothing else": median_ms(lambda: _exp_and_log(z), repeats),
    }
    rows = [_row(f"CE from logits, {name}", xent, floor, peers)]
    xent = median_ms(lambda: _xent_ce_probs(p, y), repeats)
    peers = {"sklearn log_loss": median_ms(lambda: log_loss(y, p), max(1, repeats // 2))}
    rows.append(_row(f"CE from probs, {name}", xent, floor, peers))
    return rows


def _exp_and_log(z: np.ndarray) -> np.ndarray:
    """The least softplus asks of NumPy: an ``exp`` and a ``log`` over every element, by cache blocks."""
    out, step = np.empty_like(z), 1 << 16
    scratch = np.empty(min(step, z.size), z.dtype)
    for start in range(0, z.size, step):
        chunk = z[start : start + step]
        block = scratch[: chunk.size]
        np.exp(chunk, out=block)
        np.log(block, out=out[start : start + step])
    return out


def _row(case: str, xent: float, floor: float, peers: dict[str, float]) -> dict[str, object]:
    return {
        "case": case,
        "Xent ms": f"{xent:.1f}",
        "Xent / one exp pass": f"{xent / floor:.2f}",
        "peers (time / Xent)": ", ".join(f"{name} {ms / xent:.2f}×" for name, ms in peers.items()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="sizes / 10 and fewer repeats")
    args = parser.parse_args(argv)
    scale, repeats = (10, 3) if args.quick else (1, 5)
    rows: list[dict[str, object]] = []
    for dtype in (np.float32, np.float64):
        rows += categorical(1_000_000 // scale, 10, dtype, repeats)
        rows += categorical(100_000 // scale, 1_000, dtype, repeats)
        rows += binary(10_000_000 // scale, dtype, repeats)
    sys.stdout.write(table(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
