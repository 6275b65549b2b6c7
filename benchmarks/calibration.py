"""Calibration metrics: Xent's core against torchmetrics and netcal on the same arrays.

Run with ``python -m benchmarks.calibration`` (``--quick`` for a smaller N). Everything runs
on one thread (``torch.set_num_threads(1)``); times are the median thread CPU time over
repeats (``benchmarks._timing.median_ms``), which other processes on a shared machine
disturb far less than wall time. The bootstrap also prints wall time. Every row prints
the ECE it computed, so the peers can be seen to agree.
"""

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from benchmarks._timing import median_ms


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """(median thread CPU seconds, the value of the last call)."""
    box: list[object] = []
    ms = median_ms(lambda: box.append(fn()), repeats)
    return ms / 1e3, box[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--bootstrap-n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-bootstrap", action="store_true", help="the single-pass rows only")
    args = parser.parse_args()
    if args.quick:
        args.n, args.bootstrap_n, args.repeats = 100_000, 10_000, 1

    import torch
    from netcal.metrics import ACE, ECE, MCE
    from torchmetrics.functional.classification import multiclass_calibration_error

    from service.core import Convention, Distribution, calibration_report
    from service.core.calibration import prepare
    from service.core.calibration.bootstrap import bootstrap_intervals

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    logits = (2.5 * rng.standard_normal((args.n, args.k))).astype(np.float32)
    labels = rng.integers(0, args.k, size=args.n)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs_t, labels_t = torch.from_numpy(probs), torch.from_numpy(labels)
    print(
        f"N={args.n:,} K={args.k} float32 probabilities; {os.cpu_count()} cores; torch threads "
        f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}"
    )

    def xent(metrics: list[str] | None, validate: bool = True) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            # validate=True checks every value and row sum (the service always does); then logs with eps.
            dist = Distribution.from_probs(probs, validate=validate)
            return calibration_report(labels, dist, Convention(n_bins=15), metrics=metrics).scalars

        return run

    rows: list[tuple[str, str, float, float]] = []
    floor, _ = timed(lambda: np.exp(probs), args.repeats)  # the floor the targets are stated against
    t, v = timed(xent(["ece"]), args.repeats)
    rows.append(("ECE, top-label, 15 bins", "xent", t, v["ece"]))
    t, v = timed(xent(["ece"], validate=False), args.repeats)
    rows.append(("ECE, top-label, 15 bins", "xent, no validation", t, v["ece"]))
    t, v = timed(
        lambda: multiclass_calibration_error(probs_t, labels_t, args.k, n_bins=15).item(), args.repeats
    )
    rows.append(("ECE, top-label, 15 bins", "torchmetrics 1.9.0", t, v))
    t, v = timed(lambda: ECE(bins=15).measure(probs, labels), args.repeats)
    rows.append(("ECE, top-label, 15 bins", "netcal 1.4.0", t, v))

    t, v = timed(xent(None), args.repeats)
    rows.append(("full report (all metrics)", "xent", t, v["ece"]))

    def torchmetrics_all() -> float:
        out = [
            multiclass_calibration_error(probs_t, labels_t, args.k, n_bins=15, norm=n).item()
            for n in ("l1", "l2", "max")
        ]
        return out[0]

    t, v = timed(torchmetrics_all, args.repeats)
    rows.append(("ECE + RMSCE + MCE", "torchmetrics 1.9.0", t, v))

    def netcal_all() -> float:
        out = [m(bins=15).measure(probs, labels) for m in (ECE, MCE, ACE)]
        return out[0]

    t, v = timed(netcal_all, args.repeats)
    rows.append(("ECE + MCE + ACE", "netcal 1.4.0", t, v))

    print(f"{'one np.exp pass over probs':28s} {'numpy (floor)':20s} {floor:8.3f} s")
    for task, who, seconds, ece in rows:
        ratio = f"   {seconds / floor:5.2f}× the exp pass" if who.startswith("xent") else ""
        print(f"{task:28s} {who:20s} {seconds:8.3f} s   ECE {ece:.6f}{ratio}")
    if args.no_bootstrap:
        return

    n_boot = args.bootstrap_n
    dist = Distribution.from_probs(probs[:n_boot])
    prep = prepare(labels[:n_boot], dist, Convention(n_bins=15), resample=True)
    cheap = {"ece", "mce", "rmsce", "calibration_error", "ace_netcal", "debiased_l2", "brier", "nll"}
    cheap |= {"accuracy", "mean_confidence", "confidence_gap", "spiegelhalter_z", "ks_statistic"}
    murphy = {"brier_reliability", "brier_resolution", "brier_uncertainty"}
    runs: list[tuple[set[str], str, int]] = [
        ({"ece"}, "ECE", 1000),
        (cheap, "binned + per-sample scalars", 1000),
        # Per-class and smoothed scalars cost ~K·N per resample: timed on 100, reported per 1000.
        ({"ace_nixon"}, "ace_nixon", 100),
        (murphy, "Brier decomposition", 100),
        ({"smooth_ece"}, "smooth_ece", 100),
    ]
    for names, label, n_res in runs:
        start = time.perf_counter()
        cpu, _ = timed(
            lambda names=names, n_res=n_res: bootstrap_intervals(prep, n_resamples=n_res, names=names), 1
        )
        wall = (time.perf_counter() - start) / 2  # timed() runs a warm-up call and one timed call
        scale = 1000 / n_res
        note = "" if n_res == 1000 else f" (n={n_res} timed, ×{scale:.0f})"
        print(
            f"bootstrap n=1000, N={n_boot:,}: {label:28s} {cpu * scale:8.3f} s CPU, "
            f"{wall * scale:.3f} s wall{note}"
        )


if __name__ == "__main__":
    main()
