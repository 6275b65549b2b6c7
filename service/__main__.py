"""Command line: ``xent serve`` runs the service, ``xent openapi`` its spec, ``xent score`` scores files."""

import argparse
import json
import sys
from collections.abc import Sequence

from service import __version__
from service.cli import health, score
from service.settings import Settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.api.serving import (
        close_timeout,
        exit_zero_on_sigterm,
        http_protocol,
        log_config,
        prepare_workers,
    )

    overrides = {k: v for k, v in vars(args).items() if k in ("host", "port", "workers") and v is not None}
    settings = Settings(**overrides)
    prepare_workers(settings.workers)
    exit_zero_on_sigterm()
    uvicorn.run(
        args.app,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        access_log=False,  # the app writes its own JSON access log
        http=http_protocol(),  # a turn's writes to a connection sent as one (service/api/one_write.py)
        timeout_graceful_shutdown=close_timeout(settings),
    )
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from service.app import create_app

    text = json.dumps(create_app(Settings()).openapi(), indent=2, ensure_ascii=False) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xent`` console script."""
    parser = argparse.ArgumentParser(prog="xent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"xent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the HTTP service (settings from XENT_* env)")
    serve.add_argument("--host", help="interface to bind (XENT_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (XENT_PORT, default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (XENT_WORKERS, default 1)")
    serve.add_argument("--app", default="service.app:create_app", help=argparse.SUPPRESS)
    serve.set_defaults(handler=_serve)
    openapi = commands.add_parser("openapi", help="print the OpenAPI document as JSON")
    openapi.add_argument("--output", "-o", help="write to this file instead of stdout")
    openapi.set_defaults(handler=_openapi)
    score.add_parser(commands)
    health.add_parser(commands)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
