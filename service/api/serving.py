"""Process-level set-up for ``python -m service serve``: worker environment and log format."""

import atexit
import os
import shutil
import signal
import tempfile
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: After the drain (``service.api.drain``) hands over, uvicorn only has idle connections to
#: close and responses already computed to send, or requests past the grace to cancel.
CLOSE_S = 5


def prepare_workers(workers: int) -> None:
    """Environment for spawned workers: a shared metrics directory, and fewer malloc arenas.

    Must run before the workers start: they are spawned and inherit the environment.
    ``MALLOC_ARENA_MAX=2`` keeps glibc from giving each of the threadpool's threads an
    arena of its own; in the 20,000-request soak it cut the workers' RSS by ~40% and
    flattened its growth (README, Reliability). Values the operator set are kept.
    """
    if workers < 2:
        return
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    if os.environ.get(MULTIPROC_ENV):
        return
    path = tempfile.mkdtemp(prefix="xent-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)


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
            "class": "logging.StreamHandler",
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
