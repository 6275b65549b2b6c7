"""Process-level set-up for ``python -m service serve``: metrics directory and log format."""

import atexit
import os
import shutil
import tempfile
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_dir(workers: int) -> None:
    """With several workers, give prometheus-client a fresh shared directory (removed at exit).

    Must run before any worker imports prometheus_client: workers are spawned and
    inherit the environment. An operator's own ``PROMETHEUS_MULTIPROC_DIR`` is kept.
    """
    if workers < 2 or os.environ.get(MULTIPROC_ENV):
        return
    path = tempfile.mkdtemp(prefix="xent-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)


def log_config(level: str) -> dict[str, Any]:
    """Uvicorn's logging set-up plus ``xent.access``: bare JSON lines on stdout."""
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
    }
    return config
