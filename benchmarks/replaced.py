"""Xent's current code beside the code it replaced, on the same seeded data, one thread.

    python -m benchmarks.replaced [--quick]

- The six row statistics of ``/v1/divergence`` (``divergence_rows``, one blocked pass) against
  the whole-array formulas of ``service.core.entropy`` the route used before (still in the core
  API), 1M×10 float32 from probabilities and from logits: time, and the peak of traced
  allocations (NumPy reports its buffers to ``tracemalloc``).
- Binary cross-entropy from logits, 10M values with int64 labels, float32 and float64:
  ``service.core.sigmoid.binary_nll`` against the kernel it replaced (session 7's, copied here
  as ``_binary_nll_before``: ``-|x|`` by abs and negate, NumPy's scalar-operand ``maximum``, a
  fresh label mask per block, the ``1/u`` of the ``log1p`` correction).
- A JSON answer with 1M per-sample losses: ``respond`` (orjson from the array's buffer) against
  the Pydantic path it replaced (``tolist()``, then ``model_dump_json``), float32 and float64.
"""

import argparse
import importlib
import sys
import tracemalloc
from collections.abc import Callable

import numpy as np
import scipy.special as sp

from benchmarks._timing import median_ms, table
from service.api.routes import json_response, respond
from service.api.schemas import CrossEntropyConvention, CrossEntropyResult
from service.core import Distribution, divergence_rows
from service.core.sigmoid import BLOCK_BYTES, binary_nll

# `service.core` re-exports a function named `entropy`: the module is imported by name.
entropy_formulas = importlib.import_module("service.core.entropy")


def _whole_array(p: Distribution, q: Distribution) -> list[np.ndarray]:
    e = entropy_formulas
    pp, lp, qq, lq = p.probs, p.log_probs, q.probs, q.log_probs
    return [
        e.kl_divergence(pp, lp, lq),
        e.kl_divergence(qq, lq, lp),
        e.js_divergence(pp, qq),
        e.entropy(pp, lp),
        e.entropy(qq, lq),
        e.cross_entropy_rows(pp, lq),
    ]


def _peak_mb(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _row(case: str, code: str, fn: Callable[[], object], repeats: int) -> dict[str, object]:
    return {
        "case": case,
        "code": code,
        "ms": f"{median_ms(fn, repeats):.1f}",
        "peak traced MB": f"{_peak_mb(fn):.0f}",
    }


def divergences(n: int, repeats: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    zp = rng.standard_normal((n, 10), dtype=np.float32)
    zq = 2 * rng.standard_normal((n, 10), dtype=np.float32)
    probs = (sp.softmax(zp, axis=1), sp.softmax(zq, axis=1))
    rows = []
    for name, kind in (("probabilities", "probs"), ("logits", "logits")):

        def pair(kind: str = kind) -> tuple[Distribution, Distribution]:
            if kind == "probs":
                return Distribution.from_probs(probs[0]), Distribution.from_probs(probs[1])
            return Distribution.from_logits(zp), Distribution.from_logits(zq)

        case = f"six divergence statistics from {name}, {n:,}×10 float32"
        rows.append(_row(case, "divergence_rows", lambda pair=pair: divergence_rows(*pair()), repeats))
        rows.append(
            _row(case, "whole-array formulas (before)", lambda pair=pair: _whole_array(*pair()), repeats)
        )
    return rows


def _binary_nll_before(labels: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Session 7's ``service.core.sigmoid._blocked`` with labels, as it was."""
    flat, y = x.reshape(-1), labels.reshape(-1)
    out = np.empty(flat.shape, x.dtype)
    step = max(1, BLOCK_BYTES // x.itemsize)
    scratch = np.empty((3, min(step, flat.size)), x.dtype)
    for start in range(0, flat.size, step):
        block = slice(start, start + step)
        xb = flat[block]
        t, u, c = scratch[:, : xb.size]
        np.abs(xb, out=c)
        np.negative(c, out=t)
        np.exp(t, out=t)
        np.add(t, 1, out=u)
        np.subtract(u, 1, out=c)
        np.subtract(t, c, out=c)
        np.divide(c, u, out=c)
        np.log(u, out=u)
        u += c
        np.maximum(xb, 0, out=c)
        np.multiply(xb, y[block] == 1, out=t)
        c -= t
        np.add(c, u, out=out[block])
    return out.reshape(x.shape)


def binary_logits(n: int, repeats: int) -> list[dict[str, object]]:
    rows = []
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(1)
        z = (3 * rng.standard_normal(n)).astype(dtype)
        y = rng.integers(0, 2, size=n)
        now, before = binary_nll(y, z), _binary_nll_before(y, z)
        np.testing.assert_allclose(now, before, rtol=4 * np.finfo(dtype).eps)  # the same losses
        case = f"binary CE from logits, {n:,} {np.dtype(dtype).name} + int64 labels"
        for code, kernel in (("binary_nll", binary_nll), ("session 7's kernel (before)", _binary_nll_before)):
            rows.append(_row(case, code, lambda k=kernel, y=y, z=z: k(y, z), repeats))
    return rows


def _result() -> CrossEntropyResult:
    convention = CrossEntropyConvention(
        input="logits", form="categorical", truth="labels", dtype="float32", base="e", unit="nats",
        reduction="none", eps=0.0, n_clipped=0, tolerance=1e-6, n_normalized=0, label_smoothing=0.0,
        class_weights=False, ignore_index=None, matches="torch.nn.functional.cross_entropy",
    )  # fmt: skip
    return CrossEntropyResult(
        n=0, n_ignored=0, loss=None, accuracy=0.5, mean_entropy=1.0, convention=convention
    )


def _before(result: CrossEntropyResult, losses: np.ndarray) -> bytes:
    return bytes(json_response(result.model_copy(update={"losses": losses.tolist()})).body)


def _now(result: CrossEntropyResult, losses: np.ndarray) -> bytes:
    return bytes(respond(result, {"losses": losses}, binary=False).body)


def json_losses(n: int, repeats: int) -> list[dict[str, object]]:
    result = _result()
    rows = []
    for dtype in (np.float32, np.float64):
        losses = np.random.default_rng(1).exponential(size=n).astype(dtype)
        text = _now(result, losses)
        assert text == _before(result, losses)  # the same bytes
        case = f"JSON answer, {n:,} per-sample {np.dtype(dtype).name} losses ({len(text) / 1e6:.1f} MB)"
        rows.append(_row(case, "respond (orjson from the buffer)", lambda a=losses: _now(result, a), repeats))
        rows.append(_row(case, "tolist + Pydantic (before)", lambda a=losses: _before(result, a), repeats))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="sizes / 10")
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else 1_000_000
    rows = divergences(n, 5) + binary_logits(10 * n, 5) + json_losses(n, 5)
    sys.stdout.write(table(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
