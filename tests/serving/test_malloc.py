"""Issue 6 (soak memory): workers get glibc malloc settings that keep their RSS flat."""

import os
import subprocess
import sys

import pytest

from service.api import serving


def test_spawned_workers_inherit_the_malloc_settings(monkeypatch, tmp_path):
    for name in serving.MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(serving.MULTIPROC_ENV, str(tmp_path))
    serving.prepare_workers(2)
    assert {name: serving.os.environ[name] for name in serving.MALLOC_ENV} == {
        "MALLOC_ARENA_MAX": "2",
        "MALLOC_MMAP_THRESHOLD_": "131072",
        "MALLOC_TRIM_THRESHOLD_": str(8 << 20),
    }


def test_the_operator_s_values_are_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    monkeypatch.setenv(serving.MULTIPROC_ENV, str(tmp_path))
    serving.prepare_workers(4)
    assert serving.os.environ["MALLOC_MMAP_THRESHOLD_"] == "1048576"


def test_a_single_worker_tunes_its_own_malloc(monkeypatch):
    calls: list[bool] = []
    monkeypatch.setattr(serving, "tune_malloc", lambda: calls.append(True) or True)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    serving.prepare_workers(1)
    assert calls == [True]
    assert "MALLOC_ARENA_MAX" not in serving.os.environ  # nothing to pass on


#: Run in a fresh interpreter (glibc reads MALLOC_* at start-up), tuned by `tune_malloc` or not;
#: the script that follows prints one number read from `mallinfo2`.
PROLOGUE = """
import ctypes, sys
import numpy as np
from service.api.serving import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
class MallInfo2(ctypes.Structure):
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
"""


def _probe(script: str, mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", PROLOGUE + script, mode], env=env, check=True, capture_output=True
    )
    return int(out.stdout)


MMAPPED_MIB = """
big = np.ones(2 << 20); del big  # 16 MiB, mmap-ed then freed
kept = np.ones(1 << 19)          # 4 MiB
print(libc.mallinfo2().hblkhd >> 20)  # MiB held in mmap-ed blocks
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_large_arrays_stay_mmap_ed_after_a_larger_one_was_freed():
    # glibc's default: freeing the 16 MiB block raised the mmap threshold to 16 MiB, so the
    # 4 MiB array came from the heap, where freed space fragments rather than going back.
    assert _probe(MMAPPED_MIB, "default") == 0
    assert _probe(MMAPPED_MIB, "tuned") == 4


KEPT_KIB = """
blocks = [bytes(100_000) for _ in range(40)]  # 4 MB of heap blocks, each under the mmap threshold
del blocks
print(libc.mallinfo2().keepcost >> 10)  # KiB of free heap top kept rather than given back
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_the_heap_keeps_a_freed_top_instead_of_faulting_it_in_again():
    # glibc trims a free top over its threshold straight back: 128 KiB, or up to twice the largest
    # mmap-ed block freed so far (its dynamic threshold), which start-up allocations can raise a bit.
    assert _probe(KEPT_KIB, "default") < 1_024
    assert _probe(KEPT_KIB, "tuned") > 3_000  # within the 8 MiB trim threshold: kept for the next request


TRIMMED_KIB = """
from service.api.serving import trim_malloc
blocks = [bytes(100_000) for _ in range(80)]  # 8 MB of heap blocks, kept free within the threshold
del blocks
before = libc.mallinfo2().keepcost
assert trim_malloc()
print((before - libc.mallinfo2().keepcost) >> 10)  # KiB handed back by the trim
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_trim_malloc_hands_the_kept_free_heap_back():
    assert _probe(TRIMMED_KIB, "tuned") > 3_000


def test_trim_malloc_is_false_without_glibc(monkeypatch):
    monkeypatch.setattr(serving, "_malloc_trim", lambda: None)
    assert serving.trim_malloc() is False
