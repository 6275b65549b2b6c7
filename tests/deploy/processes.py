"""Run a container's command outside the container: same argv, same environment, loopback port."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = str(Path(sys.executable).parent)
IMAGE_VENV_BIN = "/opt/xent/bin"


@dataclass
class Dockerfile:
    """The final stage of a Dockerfile: its ENV, CMD and HEALTHCHECK command."""

    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    user: str | None = None
    stages: int = 0

    @classmethod
    def parse(cls, path: Path) -> "Dockerfile":
        """Read the instructions this test needs (continuation lines joined)."""
        text = path.read_text().replace("\\\n", " ")
        parsed = cls()
        for line in text.splitlines():
            words = line.strip().split(None, 1)
            if not words or words[0].startswith("#"):
                continue
            op, rest = words[0].upper(), words[1] if len(words) > 1 else ""
            if op == "FROM":
                parsed.stages += 1
                parsed.env, parsed.cmd, parsed.healthcheck, parsed.user = {}, [], [], None
            elif op == "ENV":
                parsed.env.update(dict(item.split("=", 1) for item in shlex.split(rest)))
            elif op == "CMD":
                parsed.cmd = json.loads(rest)
            elif op == "USER":
                parsed.user = rest.strip()
            elif op == "HEALTHCHECK":
                parsed.healthcheck = json.loads(rest[rest.index("CMD") + 3 :])
        return parsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def host_env(image_env: dict[str, str], port: int) -> dict[str, str]:
    """The image's environment on this machine: its venv is ours, and it binds loopback only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XENT_")}
    for name, value in image_env.items():
        env[name] = value.replace(IMAGE_VENV_BIN, VENV_BIN).replace("$PATH", os.environ.get("PATH", ""))
    env["XENT_HOST"] = "127.0.0.1"
    env["XENT_PORT"] = str(port)
    return env


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET (error statuses too, with their connection closed)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


@contextmanager
def serving(
    argv: list[str], env: dict[str, str], *, timeout: float = 60.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `argv`, wait until ``/healthz`` answers, yield the process; SIGTERM it afterwards."""
    url = f"http://127.0.0.1:{env['XENT_PORT']}/healthz"
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert process.poll() is None, f"{argv} exited: {process.stdout.read().decode()}"  # type: ignore[union-attr]
            try:
                if get(url, timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{argv} did not answer {url} within {timeout} s"
            time.sleep(0.2)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()  # type: ignore[union-attr]


def worker_processes(pid: int) -> int:
    """How many uvicorn worker processes (multiprocessing spawns) `pid` runs."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    count = 0
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        count += b"spawn_main" in cmdline
    return count
