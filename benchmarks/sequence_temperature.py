"""Temperature fit on B×T×K token logits: Xent's streamed fit against torch's L-BFGS.

    python -m benchmarks.sequences --part temperature [--quick]

B = 8, T = 2,048, K = 32,000 float32 logits (2,000 MiB; --quick: 2 × 512), labels with 5 %
``-100``. Each contender runs in a fresh process, builds the same seeded tensor a sequence at a
time, and reports its wall time, its process CPU time and its peak resident set (``VmHWM``),
so the peak is its own:

- Xent: :func:`~service.core.fit_sequence_temperature` (the Newton fit, a cache-sized block at a
  time; float32 passes, then a float64 polish).
- torch: ``torch.optim.LBFGS`` (strong Wolfe line search) on ``log T`` minimising
  ``F.cross_entropy(z.view(-1, K) / T, y.view(-1), ignore_index=-100)``, one thread, as an
  evaluation job would write it. Each closure is a forward and a backward pass over B×T×K.

Both answers are then compared: the fitted T and torch's loss at each T.
"""

import json
import subprocess
import sys
import time

import numpy as np

MIB = 2**20


def _tensor(b: int, t: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    z = np.empty((b, t, k), np.float32)
    for i in range(b):  # in place, a sequence at a time: no temporary to raise the peak RSS
        rng.standard_normal(dtype=np.float32, out=z[i])
        z[i] *= 3
        z[i, np.arange(t), rng.integers(0, k, t)] += 6  # a confident top token: T is fitted above 1
    y = np.where(rng.random((b, t)) < 0.5, z.argmax(-1), rng.integers(0, k, (b, t)))
    y[rng.random((b, t)) < 0.05] = -100
    return z, y


def _status(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux ≥ 4.0), so the peak is the fit's, not the set-up's."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:  # not permitted here: the peak then includes building the tensor
        pass


def _xent(b: int, t: int, k: int) -> dict[str, float]:
    from service.core import fit_sequence_temperature

    z, y = _tensor(b, t, k)
    _reset_peak()
    before = _status("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    found = fit_sequence_temperature(y, z, ignore_index=-100)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "temperature": found.fit.temperature,
        "wall": wall,
        "cpu": cpu,
        "passes": found.fit.iterations,
        "input": z.nbytes,
        "before": before,
        "peak": _status("VmHWM"),
    }


def _torch(b: int, t: int, k: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    z, y = _tensor(b, t, k)
    zt, yt = torch.from_numpy(z).view(-1, k), torch.from_numpy(y).view(-1)
    _reset_peak()
    before = _status("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_t], max_iter=100, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )
    calls = 0

    def closure() -> torch.Tensor:
        nonlocal calls
        calls += 1
        optimizer.zero_grad()
        loss = F.cross_entropy(zt / torch.exp(log_t).float(), yt, ignore_index=-100)
        loss.backward()
        return loss

    optimizer.step(closure)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "temperature": float(torch.exp(log_t)),
        "wall": wall,
        "cpu": cpu,
        "passes": calls,
        "input": z.nbytes,
        "before": before,
        "peak": _status("VmHWM"),
    }


def _loss_at(b: int, t: int, k: int, temperatures: list[float]) -> list[float]:
    import torch
    import torch.nn.functional as F

    z, y = _tensor(b, t, k)
    n = int(np.count_nonzero(y != -100))
    sums = [0.0] * len(temperatures)
    for i in range(b):  # float64 a sequence at a time
        zi, yi = torch.from_numpy(z[i]).double(), torch.from_numpy(y[i])
        for j, s in enumerate(temperatures):
            sums[j] += float(F.cross_entropy(zi / s, yi, ignore_index=-100, reduction="sum"))
    return [total / n for total in sums]


def _run(part: str, b: int, t: int, k: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.sequence_temperature", part, str(b), str(t), str(k)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout))


def temperature_fit(b: int, t: int, k: int) -> list[dict[str, object]]:
    """Rows of the comparison table (each contender in its own process)."""
    found = {"xent fit_sequence_temperature": _run("xent", b, t, k), "torch LBFGS": _run("torch", b, t, k)}
    temperatures = [r["temperature"] for r in found.values()]
    losses = _loss_at(b, t, k, temperatures)
    label = f"B={b} T={t} K={k} float32 ({b * t * k * 4 / MIB:,.0f} MiB)"
    return [
        {
            "case": label,
            "contender": name,
            "T": f"{r['temperature']:.9f}",
            "wall s": f"{r['wall']:.1f}",
            "CPU s": f"{r['cpu']:.1f}",
            "Newton iterations (xent) / closures (torch)": int(r["passes"]),
            "peak RSS MiB": f"{r['peak'] / MIB:,.0f}",
            "peak − RSS before the fit MiB": f"{(r['peak'] - r['before']) / MIB:,.0f}",
            "torch CE at T (float64)": f"{loss:.9f}",
        }
        for (name, r), loss in zip(found.items(), losses, strict=True)
    ]


if __name__ == "__main__":
    part, *dims = sys.argv[1:]
    b, t, k = (int(d) for d in dims)
    print(json.dumps({"xent": _xent, "torch": _torch}[part](b, t, k)))  # noqa: T201
