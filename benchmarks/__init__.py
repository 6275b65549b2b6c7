"""Benchmarks: run as modules (``python -m benchmarks.core``) so this runs first.

Pins BLAS/OpenMP pools to one thread before NumPy, SciPy or torch are imported:
every comparison is single-threaded.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
