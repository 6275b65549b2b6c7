"""A throw-away PostgreSQL cluster for the tests: initdb in a temporary directory, loopback only.

`postgres_server` yields the URL of a superuser on a cluster it started (or of the server that
``XENT_TEST_DATABASE_URL`` names); `fresh_database` creates an empty database on it for one test.
When running as root (CI), the cluster runs as an unprivileged system user (PostgreSQL refuses root):
``xent-pg``, created if missing, else ``nobody``. Trust authentication, TCP on 127.0.0.1 only (no
Unix socket), a free port; stopped (``-m immediate``) and deleted at the end.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

USER = "xent-pg"


def binaries() -> Path | None:
    """The directory holding initdb and pg_ctl (PATH first, then Debian's newest), or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).resolve().parent)):
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True
    )
    return Path(candidates[0]).parent if candidates else None


def _unprivileged_user() -> str:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        created = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            capture_output=True,
        )
        if created.returncode != 0:
            return "nobody"
    return USER


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def cluster(*, fast: bool = True) -> Iterator[str]:
    """Start a cluster, yield ``postgresql://postgres@127.0.0.1:<port>/postgres``, then delete it.

    `fast`: ``fsync=off`` (the tests kill Xent processes, never the server); False keeps the
    server's durable defaults, for benchmarks.
    """
    bindir = binaries()
    if bindir is None:
        raise FileNotFoundError(
            "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql"
        )
    root = Path(tempfile.mkdtemp(prefix="xent-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = _unprivileged_user()
        info = pwd.getpwnam(user)
        os.chown(root, info.pw_uid, info.pw_gid)
        root.chmod(0o700)
        prefix = ["runuser", "-u", user, "--"]
    data, log = root / "data", root / "server.log"
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C"}

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, env=env, cwd=root)
        if done.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}{server_log}")

    options = f"-h 127.0.0.1 -p {port} -c unix_socket_directories='' -c max_connections=200"
    if fast:
        options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=on"
    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """Create an empty database on the server, yield its URL, drop it (closing its sessions)."""
    import psycopg

    name = f"xent_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url, _, query = server_url.partition("?")
    base, _, _ = url.rpartition("/")
    try:
        yield f"{base}/{name}" + (f"?{query}" if query else "")
    finally:
        with psycopg.connect(server_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
