"""Process-level set-up for ``python -m service serve``: worker environment, malloc, shutdown, log format."""

import atexit
import ctypes
import functools
import importlib.util
import os
import shutil
import signal
import tempfile
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: After the drain (``service.api.middleware.drain``) hands over, uvicorn only has idle connections to
#: close and responses already computed to send, or requests past the grace to cancel.
CLOSE_S = 5


#: glibc malloc settings for the workers (docs/operations.md, Memory): two arenas, not one per
#: threadpool thread; a fixed 128 KiB mmap threshold, so every large NumPy array or buffer is
#: mmap-ed and given back to the system when freed (without it glibc raises the threshold to
#: the largest block freed so far, up to 32 MiB, and later large arrays are carved out of the
#: heap, which fragments and keeps growing: soak RSS 276.5 MiB at the end before, 221-230 with
#: it); and an 8 MiB trim threshold, so the heap keeps up to 8 MiB of free top instead of
#: giving back (and page-faulting in again) every freed 128 KiB: a 4.6 MB binary request fell
#: from ~9,400 page faults and ~52 ms to ~2,200 and ~28 ms, soak throughput rose ~120 -> ~147 req/s.
MALLOC_ENV = {
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": "131072",
    "MALLOC_TRIM_THRESHOLD_": str(8 << 20),
}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # mallopt parameters, glibc <malloc.h>


def prepare_workers(workers: int) -> None:
    """Environment for spawned workers: a shared metrics directory and glibc malloc settings.

    Must run before the workers start: they are spawned and inherit the environment.
    With one worker uvicorn serves from this process, whose malloc has already read its
    environment: :func:`tune_malloc` sets the same values with ``mallopt`` instead. Values
    the operator set are kept.
    """
    if workers < 2:
        tune_malloc()
        return
    for name, value in MALLOC_ENV.items():
        os.environ.setdefault(name, value)
    if os.environ.get(MULTIPROC_ENV):
        return
    path = tempfile.mkdtemp(prefix="xent-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)


def tune_malloc() -> bool:
    """Apply :data:`MALLOC_ENV` to this process through glibc's ``mallopt``; False where there is none."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    ok = True
    params = {
        "MALLOC_ARENA_MAX": _M_ARENA_MAX,
        "MALLOC_MMAP_THRESHOLD_": _M_MMAP_THRESHOLD,
        "MALLOC_TRIM_THRESHOLD_": _M_TRIM_THRESHOLD,
    }
    for name, param in params.items():
        if name not in os.environ:
            ok = mallopt(param, int(MALLOC_ENV[name])) == 1 and ok
    return ok


def trim_malloc() -> bool:
    """Give the memory glibc holds free back to the system (``malloc_trim(0)``); False where there is none.

    Called once a worker has been idle for ``XENT_IDLE_TRIM_S`` (:class:`service.api.middleware.limits.Gate`):
    the 8 MiB trim threshold keeps free heap for the next request while requests come, and this
    hands it back, with any whole free pages inside the heaps, once they stop.
    """
    trim = _malloc_trim()
    return trim is not None and trim(0) == 1


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None


def http_protocol() -> str:
    """The HTTP protocol of ``xent serve``: :mod:`.one_write` where httptools is installed."""
    if importlib.util.find_spec("httptools") is None:
        return "auto"
    from .one_write import PROTOCOL

    return PROTOCOL


def close_timeout(settings: "Settings") -> int:
    """The graceful-shutdown timeout given to uvicorn, which starts once the drain has handed over.

    The drain already waited up to ``shutdown_grace_s`` for the requests in flight, so
    uvicorn gets a short while more, never more than the grace itself: a shutdown takes
    at most ``shutdown_grace_s + min(shutdown_grace_s, 5)`` seconds.
    """
    return min(settings.shutdown_grace_s, CLOSE_S)


def exit_zero_on_sigterm() -> None:
    """Make a SIGTERM stop ``xent serve`` with status 0 rather than "killed by SIGTERM".

    uvicorn re-raises the signal it caught once its graceful shutdown is complete, into
    the handler that was there before it; with the default one the process would die of
    it (status 143). uvicorn installs its own handlers when it starts serving (and the
    multiprocess supervisor its own), so this one only sees a SIGTERM that arrives
    before (while the app is imported) or after (the re-raise) serving.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


def log_config(level: str) -> dict[str, Any]:
    """Uvicorn's logging set-up plus ``xent.access`` (JSON lines, stdout) and ``xent.error`` (stderr)."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {
        key: (dict(value) if isinstance(value, dict) else value) for key, value in LOGGING_CONFIG.items()
    }
    config["formatters"] = {**config["formatters"], "json_line": {"format": "%(message)s"}}
    config["handlers"] = {
        **config["handlers"],
        "xent_access": {
            "class": "service.api.middleware.access_log.AccessLineHandler",
            "formatter": "json_line",
            "stream": "ext://sys.stdout",
        },
    }
    config["loggers"] = {
        **config["loggers"],
        "xent.access": {"handlers": ["xent_access"], "level": level.upper(), "propagate": False},
        "xent.error": {"handlers": ["default"], "level": "INFO", "propagate": False},
    }
    return config
