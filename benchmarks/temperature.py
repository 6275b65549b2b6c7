"""Temperature fit: Xent's exact Newton against the usual tools, one run each, single-threaded.

    python -m benchmarks.temperature [--quick]

Data: seeded synthetic float32 logits z·2.5 whose calibrated temperature is 2.5
(labels drawn from softmax(z)). Each tool gets the same arrays; each line gives
its wall time for one fit, the temperature found and the mean NLL at that
temperature, evaluated by one float64 scipy log-softmax for every tool (netcal:
the NLL of its own calibrated probabilities, since it fits probabilities).

Peers: the recipe of Guo et al. 2017 (torch LBFGS, lr 0.01, max_iter 50, T
initialised at 1.5); scikit-learn's ``CalibratedClassifierCV(method="temperature")``
(its calibrator, on the same logits); netcal's ``TemperatureScaling`` (if installed:
it is not a project dependency).
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.special import log_softmax  # noqa: E402
from sklearn.calibration import _TemperatureScaling  # noqa: E402

from benchmarks._timing import table  # noqa: E402
from service.core import fit_temperature  # noqa: E402

torch.set_num_threads(1)
TRUE_T = 2.5


def synthetic(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    z = 2.0 * rng.standard_normal((n, k))
    p = np.exp(log_softmax(z, axis=1))
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return (z * TRUE_T).astype(np.float32), labels


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits.astype(np.float64) / temperature
    return float(-np.mean(log_softmax(z, axis=1)[np.arange(len(labels)), labels]))


def xent(logits: np.ndarray, labels: np.ndarray) -> float:
    return fit_temperature(logits, labels=labels).temperature


def torch_lbfgs(logits: np.ndarray, labels: np.ndarray) -> float:
    z, y = torch.from_numpy(logits), torch.from_numpy(labels)
    temperature = torch.nn.Parameter(torch.ones(1) * 1.5)
    optimizer = torch.optim.LBFGS([temperature], lr=0.01, max_iter=50)
    criterion = torch.nn.CrossEntropyLoss()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = criterion(z / temperature, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(temperature.item())


def sklearn_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(1 / _TemperatureScaling().fit(logits, labels).beta_)


def netcal_probs(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    from netcal.scaling import TemperatureScaling

    probs = np.exp(log_softmax(logits.astype(np.float64), axis=1))
    model = TemperatureScaling()
    model.fit(probs, labels)
    return np.asarray(model.transform(probs), dtype=np.float64)


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    """`fn()`, its wall time and the CPU time of this thread (less disturbed by other processes), in s."""
    wall, cpu = time.perf_counter(), time.thread_time()
    value = fn()
    return value, time.perf_counter() - wall, time.thread_time() - cpu


def run(n: int, k: int) -> list[dict[str, object]]:
    logits, labels = synthetic(n, k)
    rows: list[dict[str, object]] = [
        {
            "N×K": f"{n:,}×{k:,}",
            "tool": "uncalibrated (T = 1)",
            "wall (ms)": "-",
            "CPU (ms)": "-",
            "T": "1",
            "NLL": f"{nll(logits, labels, 1.0):.9f}",
        }
    ]
    tools: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "xent fit_temperature": xent,
        "torch LBFGS (Guo et al.)": torch_lbfgs,
        "sklearn temperature": sklearn_temperature,
    }
    for name, tool in tools.items():
        tool(logits[:200], labels[:200])  # imports and first-call costs out of the way
        temperature, seconds, cpu = timed(lambda tool=tool: tool(logits, labels))  # type: ignore[misc]
        assert isinstance(temperature, float)
        rows.append(
            {
                "N×K": f"{n:,}×{k:,}",
                "tool": name,
                "wall (ms)": f"{seconds * 1e3:,.1f}",
                "CPU (ms)": f"{cpu * 1e3:,.1f}",
                "T": f"{temperature:.6f}",
                "NLL": f"{nll(logits, labels, temperature):.9f}",
            }
        )
    try:
        netcal_probs(logits[:200], labels[:200])
        probs, seconds, cpu = timed(lambda: netcal_probs(logits, labels))
    except ImportError:
        rows.append(
            {
                "N×K": f"{n:,}×{k:,}",
                "tool": "netcal (not installed)",
                "wall (ms)": "-",
                "CPU (ms)": "-",
                "T": "-",
                "NLL": "-",
            }
        )
    else:
        assert isinstance(probs, np.ndarray)
        chosen = np.maximum(probs[np.arange(n), labels], np.finfo(np.float64).tiny)
        rows.append(
            {
                "N×K": f"{n:,}×{k:,}",
                "tool": "netcal TemperatureScaling",
                "wall (ms)": f"{seconds * 1e3:,.1f}",
                "CPU (ms)": f"{cpu * 1e3:,.1f}",
                "T": "-",
                "NLL": f"{-np.mean(np.log(chosen)):.9f}",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    sizes = [(10_000, 10), (1_000, 1_000)] if args.quick else [(100_000, 10), (10_000, 1_000)]
    rows = [row for n, k in sizes for row in run(n, k)]
    print(table(rows))


if __name__ == "__main__":
    main()
