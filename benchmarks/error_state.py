"""The cost of raising NumPy's overflow around one 32×10 subtraction: instructions under callgrind.

    python -m benchmarks.error_state MODE N

MODE is ``plain`` (the subtraction alone), ``errstate`` (inside ``np.errstate(over="raise")``) or
``contextvar`` (:mod:`service.core.overflow`: the context variable set and reset). Under
callgrind, ``(Collected(MODE, N₂) − Collected(MODE, N₁)) / (N₂ − N₁)`` is the instructions per
use, e.g.::

    export OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m benchmarks.error_state errstate 200
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m benchmarks.error_state errstate 2200

2026-12-07 01:15 UTC, this 2-core AMD EPYC VM (N₁ = 200, N₂ = 2,200): plain 12,102, contextvar
14,932, errstate 23,011 (the subtraction included), i.e. ~2,800 and ~10,900 for the switch.
"""

import sys

import numpy as np

from service.core.overflow import ERROR_STATE, RAISE_OVER


def main(argv: list[str]) -> int:
    mode, n = argv[0], int(argv[1])
    z = np.random.default_rng(0).normal(size=(32, 10))
    m = z.max(axis=1)[:, None]
    for _ in range(n):
        if mode == "plain":
            _ = z - m
        elif mode == "errstate":
            with np.errstate(over="raise"):
                _ = z - m
        elif mode == "contextvar":
            token = ERROR_STATE.set(RAISE_OVER)
            try:
                _ = z - m
            finally:
                ERROR_STATE.reset(token)
        else:
            raise SystemExit(f"MODE must be plain, errstate or contextvar; got {mode!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
