"""``xent health``: exit 0 when the service answers ``/healthz`` (the container's HEALTHCHECK).

Uses only the standard library, so a probe every few seconds stays cheap.
"""

import argparse
import sys
import urllib.error
import urllib.request
from typing import Any

from service.settings import Settings


def add_parser(commands: Any) -> None:
    """Register ``health`` on the ``xent`` subcommand parser."""
    health = commands.add_parser("health", help="probe /healthz; exit 0 if live, 1 if not")
    health.add_argument("--url", help="base URL (default: http://127.0.0.1:$XENT_PORT)")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    health.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Probe ``/healthz``; return 0 when it answers 200."""
    base = args.url or f"http://127.0.0.1:{Settings().port}"
    try:
        with urllib.request.urlopen(f"{base.rstrip('/')}/healthz", timeout=args.timeout) as response:
            status = int(response.status)
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"xent health: {base} is not live: {exc}\n")
        return 1
    return 0 if status == 200 else 1
