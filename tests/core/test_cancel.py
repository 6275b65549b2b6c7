"""Cooperative cancellation: checkpoint() raises once the context's deadline has passed,
and every long loop of the core calls it."""

import asyncio
import math
import subprocess
import sys
import threading
import time

import anyio.to_thread
import numpy as np
import pytest

from service.core import Cancelled, Convention, Distribution, checkpoint, deadline, fit_temperature
from service.core.calibration import prepare
from service.core.calibration.bootstrap import bootstrap_intervals
from service.core.calibration.smooth_ece import smooth_ece
from service.core.logsumexp import softmax_summary
from service.core.maps.nonparametric import fit_isotonic
from service.core.maps.scaling import fit_vector_scaling


def test_no_deadline_never_raises():
    for _ in range(1000):
        checkpoint()


def test_checkpoint_raises_only_once_the_deadline_has_passed():
    with deadline(0.2):
        checkpoint()  # not yet
        time.sleep(0.25)
        with pytest.raises(Cancelled):
            checkpoint()
    checkpoint()  # the block's deadline is gone with it


def test_deadlines_nest_and_restore():
    with deadline(60):
        with deadline(0), pytest.raises(Cancelled):
            checkpoint()
        checkpoint()  # back to the outer, far deadline
        with deadline(None):
            checkpoint()


def test_the_deadline_reaches_worker_threads_of_asyncio_and_anyio():
    def probe() -> str:
        try:
            checkpoint()
        except Cancelled:
            return "cancelled"
        return "running"

    async def main() -> list[str]:
        with deadline(0):
            via_asyncio = asyncio.create_task(asyncio.to_thread(probe))
            via_anyio = asyncio.create_task(anyio.to_thread.run_sync(probe))
        with deadline(60):
            far = asyncio.create_task(anyio.to_thread.run_sync(probe))
        return [await via_asyncio, await via_anyio, await far]

    assert asyncio.run(main()) == ["cancelled", "cancelled", "running"]


def test_a_plain_thread_does_not_inherit_the_deadline():
    seen: list[str] = []
    with deadline(0):
        thread = threading.Thread(target=lambda: seen.append("ran") or checkpoint())
        thread.start()
        thread.join()
    assert seen == ["ran"]


def test_a_deadline_passing_mid_loop_stops_the_kernel_early(rng):
    logits = rng.standard_normal((400_000, 10)).astype(np.float32)  # ~30 blocks
    full = math.inf
    for _ in range(3):  # its fastest run: a first, cold or descheduled one may take 4× a later one
        started = time.perf_counter()
        softmax_summary(logits)
        full = min(full, time.perf_counter() - started)
    with deadline(full / 4), pytest.raises(Cancelled):
        softmax_summary(logits)


@pytest.fixture
def calibration_sample(rng):
    probs = rng.dirichlet(np.ones(4), size=500)
    labels = (probs.cumsum(axis=1) > rng.random((500, 1))).argmax(axis=1)  # drawn from probs: informative
    return labels, probs


KERNELS = {
    "softmax_summary": lambda labels, probs: softmax_summary(np.log(probs)),
    "bootstrap": lambda labels, probs: bootstrap_intervals(
        prepare(labels, Distribution.from_probs(probs), Convention()), n_resamples=50
    ),
    "temperature": lambda labels, probs: fit_temperature(3 * np.log(probs), labels=labels),
    "l-bfgs-b": lambda labels, probs: fit_vector_scaling(np.log(probs), labels=labels),
    "isotonic": lambda labels, probs: fit_isotonic(probs, labels=labels),
    "smooth_ece": lambda labels, probs: smooth_ece(probs.max(axis=1), (probs.argmax(axis=1) == labels) * 1.0),
}


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_long_loop_checks_the_deadline(kernel, calibration_sample):
    KERNELS[kernel](*calibration_sample)  # runs to the end without a deadline
    with deadline(0), pytest.raises(Cancelled):
        KERNELS[kernel](*calibration_sample)


def test_the_core_module_needs_no_web_framework():
    code = "import sys, service.core.cancel; assert not {'fastapi', 'pydantic'} & sys.modules.keys()"
    subprocess.run([sys.executable, "-c", code], check=True)
