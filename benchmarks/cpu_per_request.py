"""Server CPU per request of several apps, runs alternated, for before/after comparisons.

    python -m benchmarks.cpu_per_request [--rounds 3] [--seconds 4] APP [APP ...]

Each APP is ``module:name`` (a ``create_app`` factory is called), optionally prefixed with the
source tree to import it from, ``/path/to/checkout=service.app:create_app`` (e.g. a
``git archive`` of the commit before a change). Every round starts each server in turn and loads
it with the raw generator (``benchmarks._rawload``, 16 clients, the 32×10 JSON body), printing
requests/s and the server's CPU µs per request (``benchmarks.http``'s CPU column).
"""

import argparse
import sys

from benchmarks.http import ROOT, Server, _raw_load, route_bodies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("apps", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    body = route_bodies()["/v1/cross-entropy"]
    for _ in range(args.rounds):
        for spec in args.apps:
            tree, _, app = spec.rpartition("=")
            env = {"PYTHONPATH": tree or str(ROOT)}
            server = Server(app, factory=app.endswith("create_app"), env=env, cwd=tree or None)
            try:
                _raw_load(server, body, 16, 1.0)
                r = _raw_load(server, body, 16, args.seconds)
            finally:
                server.stop()
            sys.stdout.write(f"{spec}\t{r['rps']:.0f} requests/s\t{r['cpu_us']:.0f} µs CPU/request\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
