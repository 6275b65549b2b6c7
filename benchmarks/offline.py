"""Offline scoring: ``xent score DATASET`` on 10M rows × 10 classes float32, one process vs Dask.

Run with ``python -m benchmarks.offline`` (needs the ``dask`` extra; ``--rows`` for a smaller
dataset). It writes the dataset once (Parquet, a fixed-size-list float32 logits column and an
int64 label column, ``--files`` files of 2 row groups each) under ``--dir``, then times three
commands, each in a fresh process:

1. ``xent score DIR`` in one process;
2. ``xent score DIR --scheduler local`` (starts a 2-worker ``LocalCluster``: startup included);
3. ``xent score DIR --scheduler tcp://…`` on a 2-worker cluster this script started beforehand.

Reported per command: wall time, rows per second, CPU seconds (the command and every process it
waited for, plus the pre-started workers' CPU time during the run), and peak memory: the summed RSS of every
process involved (the command, its children, the pre-started workers), sampled every 20 ms with
psutil; for the one-process run also its exact ``ru_maxrss``. Finally the reports are checked
against the core on every row: ``calibration_report`` (the ``/v1/calibration`` computation)
and ``/v1/cross-entropy``'s own sequence (fused summary, ``nll``, float64 sum), at 1e-12.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

K = 10
EXACT = ("ece", "mce", "rmsce", "calibration_error", "ace_netcal", "debiased_l2", "brier", "accuracy")
EXACT += ("mean_confidence", "confidence_gap")


def file_arrays(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal((rows, K))).astype(np.float32)
    return logits, rng.integers(0, K, rows)


def write_dataset(directory: str, rows: int, files: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    per_file = rows // files
    marker = os.path.join(directory, f"_done_{rows}_{files}")
    if os.path.exists(marker):
        return
    os.makedirs(directory, exist_ok=True)
    for i in range(files):
        logits, labels = file_arrays(i, per_file)
        column = pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), K)
        table = pa.table({"logits": column, "label": pa.array(labels)})
        pq.write_table(
            table, os.path.join(directory, f"part-{i:03d}.parquet"), row_group_size=per_file // 2 + 1
        )
    open(marker, "w").close()


# The command, reporting its own high-water RSS (VmHWM: this process only, unlike ru_maxrss,
# which also counts the forking parent's pages).
_WRAPPER = (
    "import sys; from service.__main__ import main; rc = main(sys.argv[1:]); "
    "sys.stderr.write([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]); sys.exit(rc)"
)


def vmhwm_mb() -> float:
    """This process's high-water RSS, from /proc/self/status."""
    with open("/proc/self/status") as status:
        return float(next(line for line in status if line.startswith("VmHWM")).split()[1]) / 1024


def run(argv: list[str], extra_pids: list[int]) -> dict[str, float]:
    """Run ``xent score ...`` in a fresh process; wall and CPU time, peak memory (sampled sum, VmHWM)."""
    import psutil

    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    workers = [psutil.Process(p) for p in extra_pids]
    cpu_before = sum(sum(w.cpu_times()[:2]) for w in workers)
    peak = [0]
    done = threading.Event()
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        command = [sys.executable, "-c", _WRAPPER, "score", *argv]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=errors)

        def sample() -> None:
            while not done.is_set():
                total = 0
                with contextlib.suppress(psutil.Error):
                    root = psutil.Process(proc.pid)
                    for member in [root, *root.children(recursive=True), *workers]:
                        with contextlib.suppress(psutil.Error):
                            total += member.memory_info().rss
                peak[0] = max(peak[0], total)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        errors.seek(0)
        err = errors.read().decode()
    cpu = usage.ru_utime + usage.ru_stime + sum(sum(w.cpu_times()[:2]) for w in workers) - cpu_before
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"xent score failed: {err}")
    return {
        "wall": wall,
        "cpu": cpu,
        "peak_mb": peak[0] / 2**20,
        "hwm_mb": float(err.rsplit("VmHWM:", 1)[1].split()[0]) / 1024,
        "report": json.loads(out),
    }


def reference(rows: int, files: int) -> tuple[dict[str, float], float]:
    """``/v1/calibration``'s scalars and ``/v1/cross-entropy``'s loss on every row, in this process."""
    from service import core

    parts = [file_arrays(i, rows // files) for i in range(files)]
    logits = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    del parts
    dist = core.Distribution.from_logits(logits)
    dist.summarise(top=True, entropy=True, labels=labels)  # the route's fused pass
    ce = float(np.add.reduce(core.nll(labels, dist), dtype=np.float64)) / labels.size
    convention = core.resolve_convention(None, {})
    report = core.calibration_report(
        labels, core.Distribution.from_logits(logits), convention, metrics=list(EXACT)
    )
    return dict(report.scalars), ce


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "xent-offline-bench"))
    parser.add_argument("--no-check", action="store_true", help="skip the check against the core on all rows")
    args = parser.parse_args()
    directory = os.path.join(args.dir, f"{args.rows}")
    write_dataset(directory, args.rows, args.files)
    rows = args.rows // args.files * args.files
    print(f"dataset: {rows:,} rows × {K} float32 logits, {args.files} files × 2 row groups, {directory}")

    import distributed

    common = [directory, "--json", "--no-progress"]
    results = {"one process": run(common, [])}
    startup = "--scheduler local (2 workers, startup included)"
    results[startup] = run([*common, "--scheduler", "local", "--n-workers", "2"], [])
    options = {"n_workers": 2, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    with distributed.LocalCluster(**options) as cluster, distributed.Client(cluster) as client:
        pids = {pid for pair in client.run(lambda: [os.getpid(), os.getppid()]).values() for pid in pair}
        tcp = "--scheduler tcp:// (2 running workers)"
        results[tcp] = run([*common, "--scheduler", cluster.scheduler_address], sorted(pids))
        workers_hwm = sorted(client.run(vmhwm_mb).values())
    print(
        "\n| run | wall s | rows/s | CPU s, all processes | peak RSS, all processes, sampled (MB) |", end=""
    )
    print(" VmHWM of the command (MB) |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        cells = (
            f"{r['wall']:.1f}",
            f"{rows / r['wall']:,.0f}",
            f"{r['cpu']:.1f}",
            f"{r['peak_mb']:.0f}",
            f"{r['hwm_mb']:.0f}",
        )
        print(f"| {name} | {' | '.join(cells)} |")
    shown = ", ".join(f"{w:.0f}" for w in workers_hwm)
    print(f"\nVmHWM of the 2 pre-started workers after the tcp:// run: {shown} MB")
    local = results["one process"]["report"]
    for name, r in results.items():
        for metric, value in local["metrics"].items():
            np.testing.assert_allclose(
                r["report"]["metrics"][metric], value, rtol=1e-12, err_msg=f"{name} {metric}"
            )
    print("\nDask reports equal the one-process report (rtol 1e-12).")
    if not args.no_check:
        scalars, ce = reference(args.rows, args.files)
        for metric in EXACT:
            np.testing.assert_allclose(
                local["metrics"][metric], scalars[metric], rtol=1e-12, atol=0, err_msg=metric
            )
        np.testing.assert_allclose(local["metrics"]["cross_entropy"], ce, rtol=1e-12, atol=0)
        worst = max(abs(local["metrics"][m] / scalars[m] - 1) for m in EXACT if scalars[m])
        print(
            f"Equal to calibration_report and /v1/cross-entropy's computation on all {rows:,} rows "
            f"(largest relative difference {worst:.1e}; CE {local['metrics']['cross_entropy']:.12f})."
        )


if __name__ == "__main__":
    main()
