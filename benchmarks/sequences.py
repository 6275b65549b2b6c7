"""Language-model scoring: (B, T, K) token cross-entropy vs torch, and a chat logprobs response.

    python -m benchmarks.sequences [--quick]

1. B = 8, T = 2,048, K = 32,000 float32 logits (2.1 GB), labels with 5 % ``-100``: Xent's
   :func:`token_scores` (loss, rank and top-1 confidence, or the loss alone) against
   ``F.cross_entropy(z.view(-1, K), y.view(-1), reduction="none")`` on the same tensor (shared
   memory, one thread), plus one ``np.exp`` pass over the array as the floor; and the peak
   extra memory each needs, measured by ``tracemalloc`` (Xent) and from the array sizes torch
   allocates (its log-softmax is a second B×T×K array).
2. ``--part temperature``: a temperature fit on the same shape against torch's L-BFGS, time
   and peak RSS, each in its own process (:mod:`benchmarks.sequence_temperature`).
3. 1,000-choice OpenAI chat completions (16 or 64 tokens per choice, 5 or 0 top_logprobs,
   with ``bytes``; JSON as a server sends it): ``orjson.loads`` alone, :func:`parse_logprobs`
   + :func:`score_logprobs` + top-1 calibration on the decoded object, both together, and
   the typed chat reader the route uses on such bodies (``read_chat``: msgspec decode + flat
   parse), and ``POST /v1/logprobs`` in-process (``TestClient``: wall time and process CPU).
4. ``--part classwise``: the per-(class, bin) sums behind ``/v1/calibration`` on B×T×K with a
   class-wise or marginal target or the Brier decomposition (:func:`class_bin_sums`), on
   2×512×32,000 float32 logits (32.8M pairs), 15 uniform bins: CPU time of the call.
"""

import argparse
import gc
import time
import tracemalloc

import numpy as np
import orjson
import torch
import torch.nn.functional as F

from benchmarks._timing import median_ms, table
from service.core import class_bin_sums, parse_logprobs, score_logprobs, token_scores, top1_calibration

torch.set_num_threads(1)


def sequences(b: int, t: int, k: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    z = np.empty((b, t, k), np.float32)
    for i in range(b):  # filled a sequence at a time: no float64 temporary of the whole tensor
        z[i] = rng.standard_normal((t, k), dtype=np.float32) * 3
    y = rng.integers(0, k, (b, t))
    y[rng.random((b, t)) < 0.05] = -100
    zt, yt = torch.from_numpy(z), torch.from_numpy(y)

    def run_torch() -> None:
        F.cross_entropy(zt.view(-1, k), yt.view(-1), reduction="none")

    mine = token_scores(y, z, confidence=True)
    ref = F.cross_entropy(zt.view(-1, k), yt.view(-1), reduction="none").numpy().reshape(b, t)
    err = float(np.abs(mine.nll - ref).max())
    tracemalloc.start()
    token_scores(y, z, confidence=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    floor = median_ms(lambda: np.exp(z[:1]), repeats=3) * b  # one exp pass, a sequence at a time
    rows = []
    for name, fn in (
        ("xent token_scores (loss, rank, confidence)", lambda: token_scores(y, z, confidence=True)),
        ("xent token_scores (loss only)", lambda: token_scores(y, z, ranks=False)),
        ("torch F.cross_entropy(reduction='none')", run_torch),
    ):
        ms = median_ms(fn, repeats=3)
        rows.append({"contender": name, "ms": f"{ms:.0f}", "× one exp pass": f"{ms / floor:.2f}"})
    rows.append({"contender": "one np.exp pass (floor)", "ms": f"{floor:.0f}", "× one exp pass": "1.00"})
    print(
        f"B={b} T={t} K={k} float32: input {z.nbytes / 2**20:.0f} MiB; xent peak extra "
        f"{peak / 2**20:.1f} MiB (torch: a {z.nbytes / 2**20:.0f} MiB log-softmax); "
        f"max |Δ| vs torch {err:.2e}"
    )
    return rows


def chat_response(n_choices: int, length: int, k: int) -> bytes:
    rng = np.random.default_rng(1)
    logp = np.log(rng.dirichlet(np.full(50, 0.3), (n_choices, length)))
    choices = []
    for i in range(n_choices):
        content = []
        for j in range(length):
            best = np.argsort(-logp[i, j])[:5]
            t = int(best[0] if rng.random() < 0.7 else best[-1])
            order = best[:k]
            content.append(
                {
                    "token": f"t{t}",
                    "logprob": float(logp[i, j, t]),
                    "bytes": list(f"t{t}".encode()),
                    "top_logprobs": [
                        {"token": f"t{c}", "logprob": float(logp[i, j, c]), "bytes": list(f"t{c}".encode())}
                        for c in order
                    ],
                }
            )
        choices.append(
            {"index": i, "message": {"role": "assistant", "content": "…"}, "logprobs": {"content": content}}
        )
    return orjson.dumps(
        {"id": "chatcmpl-bench", "object": "chat.completion", "model": "m", "choices": choices}
    )


def _paused(raw: bytes) -> object:
    """``orjson.loads`` with the cyclic collector paused, as the service decodes bodies ≥ 1 MiB."""
    gc.disable()
    try:
        return orjson.loads(raw)
    finally:
        gc.enable()


def logprobs(n_choices: int, length: int, k: int) -> list[dict[str, object]]:
    raw = chat_response(n_choices, length, k)
    decoded = orjson.loads(raw)

    def score(obj: object) -> None:
        scores = score_logprobs(parse_logprobs([obj]))
        if scores.confidence.size:
            top1_calibration(scores.confidence, scores.correct)

    from fastapi.testclient import TestClient

    from service.app import create_app

    body = b'{"response": ' + raw + b"}"
    from service.api.formats.chat_logprobs import read_chat
    from service.api.routes.logprobs import FIELDS

    assert read_chat(body, FIELDS) is not None
    label = f"{n_choices} × {length} tokens × {k} alternatives ({len(raw) / 2**20:.1f} MiB)"
    timed = {
        "orjson.loads alone": lambda: orjson.loads(raw),
        "orjson.loads, collector paused": lambda: _paused(raw),
        "parse + score + calibration (decoded)": lambda: score(decoded),
        "paused orjson.loads + parse + score + calibration": lambda: score(_paused(raw)),
        "typed reader (msgspec): decode + parse, what the route runs": lambda: read_chat(body, FIELDS),
    }
    rows = [{"response": label, "path": path, "ms": f"{median_ms(fn):.1f}"} for path, fn in timed.items()]
    with TestClient(create_app()) as client:
        client.post("/v1/logprobs", content=body, headers={"content-type": "application/json"})
        wall, cpu = [], []
        for _ in range(5):
            start, start_cpu = time.perf_counter(), time.process_time()
            r = client.post("/v1/logprobs", content=body, headers={"content-type": "application/json"})
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        assert r.status_code == 200, r.text
    for path, values in (("wall", wall), ("process CPU, client + server", cpu)):
        ms = f"{np.median(values) * 1e3:.1f}"
        rows.append({"response": label, "path": f"POST /v1/logprobs (TestClient, {path})", "ms": ms})
    return rows


def classwise(b: int, t: int, k: int) -> list[dict[str, object]]:
    """CPU time of :func:`class_bin_sums` on (B, T, K) float32 logits, per target."""
    from service.core.calibration.conventions import Convention

    rng = np.random.default_rng(0)
    z = rng.standard_normal((b, t, k), dtype=np.float32) * 3
    y = rng.integers(0, k, (b, t))
    convention = Convention(n_bins=15)
    label = f"{b}×{t}×{k:,} float32 ({b * t * k / 1e6:.1f}M pairs)"
    cases = {
        "classwise": ("classwise", False),
        "marginal": ("marginal", False),
        "Brier decomposition (top_label)": ("top_label", True),
        "classwise + Brier decomposition": ("classwise", True),
    }
    rows = []
    for name, (target, brier) in cases.items():
        ms = median_ms(
            lambda t=target, b=brier: class_bin_sums(y, z, convention, target=t, brier=b),
            repeats=3,
        )
        rows.append({"case": label, "sums": name, "ms": f"{ms:.0f}"})
    return rows


def sequences_http(b: int, t: int, k: int) -> list[dict[str, object]]:
    """B×T×K float32 logits as an OIP binary body to /v1/cross-entropy, in process, vs the core."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    rng = np.random.default_rng(2)
    z = rng.standard_normal((b, t, k), dtype=np.float32) * 3
    y = rng.integers(0, k, (b, t))
    header = {
        "inputs": [
            {
                "name": "z",
                "shape": [b, t, k],
                "datatype": "FP32",
                "parameters": {"role": "logits", "binary_data_size": z.nbytes},
            },
            {
                "name": "y",
                "shape": [b, t],
                "datatype": "INT64",
                "parameters": {"role": "labels", "binary_data_size": y.nbytes},
            },
        ],
        "parameters": {"ignore_index": -100},
    }
    head = orjson.dumps(header)
    blob = head + z.tobytes() + y.tobytes()
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}
    settings = Settings(max_body_bytes=len(blob) + 1024, max_elements=z.size + y.size + 1)
    expected = float(F.cross_entropy(torch.from_numpy(z).view(-1, k), torch.from_numpy(y).view(-1)))
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/cross-entropy", content=blob, headers=headers)
        assert r.status_code == 200, r.text
        assert abs(r.json()["loss"] - expected) < 1e-5 * expected
        wall, cpu = [], []
        for _ in range(3):
            start, start_cpu = time.perf_counter(), time.process_time()
            client.post("/v1/cross-entropy", content=blob, headers=headers)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    core_ms = median_ms(lambda: token_scores(y, z, confidence=True, entropy=True), repeats=3)
    torch_ms = median_ms(
        lambda: F.cross_entropy(torch.from_numpy(z).view(-1, k), torch.from_numpy(y).view(-1)), 3
    )
    label = f"B={b} T={t} K={k} float32 ({z.nbytes / 2**20:.0f} MiB, binary)"
    return [
        {
            "case": label,
            "path": "POST /v1/cross-entropy (TestClient, wall)",
            "ms": f"{np.median(wall) * 1e3:.0f}",
        },
        {
            "case": label,
            "path": "POST /v1/cross-entropy (process CPU: client + server)",
            "ms": f"{np.median(cpu) * 1e3:.0f}",
        },
        {
            "case": label,
            "path": "core token_scores (loss, rank, confidence, entropy)",
            "ms": f"{core_ms:.0f}",
        },
        {"case": label, "path": "torch F.cross_entropy (mean)", "ms": f"{torch_ms:.0f}"},
    ]


def _status(pid: int, key: str) -> int:
    """A /proc/<pid>/status figure (``VmHWM``, ``VmRSS``) in bytes."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def http_memory(b: int, t: int, k: int) -> list[dict[str, object]]:
    """B×T×K float32 logits as one OIP binary body to a real server: its peak RSS against the body.

    Starts ``python -m service serve`` on a free port, sends one small request (baseline), then
    the whole body streamed from one client buffer with its Content-Length, and reads the
    server's ``VmHWM`` (peak resident set) from /proc. The loss is checked against torch's on the
    same tensor.
    """
    import os
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    n_logits, n_labels = b * t * k * 4, b * t * 8
    header: dict[str, object] = {
        "inputs": [
            {
                "name": "z",
                "shape": [b, t, k],
                "datatype": "FP32",
                "parameters": {"role": "logits", "binary_data_size": n_logits},
            },
            {
                "name": "y",
                "shape": [b, t],
                "datatype": "INT64",
                "parameters": {"role": "labels", "binary_data_size": n_labels},
            },
        ],
        "parameters": {"ignore_index": -100},
    }
    head = orjson.dumps(header)
    head += b" " * (-len(head) % 64)  # tensors 64-byte aligned in the client's buffer too
    total = len(head) + n_logits + n_labels
    buffer = np.empty(total, np.uint8)
    buffer[: len(head)] = np.frombuffer(head, np.uint8)
    z = buffer[len(head) : len(head) + n_logits].view(np.float32).reshape(b, t, k)
    y = buffer[len(head) + n_logits :].view(np.int64).reshape(b, t)
    rng = np.random.default_rng(3)
    for i in range(b):
        z[i] = rng.standard_normal((t, k), dtype=np.float32) * 3
    y[:] = rng.integers(0, k, (b, t))
    y[rng.random((b, t)) < 0.05] = -100
    expected = float(F.cross_entropy(torch.from_numpy(z).view(-1, k), torch.from_numpy(y).view(-1)))
    env = {
        **os.environ,
        "XENT_MAX_BODY_BYTES": str(total + 1024),
        "XENT_MAX_ELEMENTS": str(b * t * (k + 1) + 1),
        "XENT_REQUEST_TIMEOUT_S": "900",
        "XENT_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
        "content-length": str(total),
    }
    view = memoryview(buffer)
    chunk = 1 << 20
    try:
        with httpx.Client(base_url=url, timeout=900) as client:
            for _ in range(300):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            small = client.post("/v1/cross-entropy", json={"logits": [[[0.0, 1.0]]], "labels": [[1]]})
            assert small.status_code == 200, small.text
            baseline = _status(server.pid, "VmRSS")
            start = time.perf_counter()
            r = client.post(
                "/v1/cross-entropy",
                content=(bytes(view[i : i + chunk]) for i in range(0, total, chunk)),
                headers=headers,
            )
            wall = time.perf_counter() - start
            assert r.status_code == 200, r.text
            peak = _status(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(30)
    loss = r.json()["loss"]
    assert abs(loss - expected) < 1e-5 * expected, (loss, expected)
    mib = 2**20
    label = f"B={b} T={t} K={k} float32, binary body {total / mib:,.0f} MiB"
    return [
        {
            "case": label,
            "figure": "server RSS before (after one small request)",
            "value": f"{baseline / mib:,.0f} MiB",
        },
        {"case": label, "figure": "server peak RSS (VmHWM)", "value": f"{peak / mib:,.0f} MiB"},
        {"case": label, "figure": "peak / body", "value": f"{peak / total:.2f}×"},
        {"case": label, "figure": "(peak − before) / body", "value": f"{(peak - baseline) / total:.2f}×"},
        {"case": label, "figure": "POST wall time (send + score)", "value": f"{wall:.1f} s"},
        {"case": label, "figure": "loss vs torch F.cross_entropy", "value": f"{loss:.6f} vs {expected:.6f}"},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="B=2 T=512 and 100 choices")
    parser.add_argument(
        "--part",
        choices=["all", "sequences", "http", "logprobs", "temperature", "classwise"],
        default="all",
    )
    parser.add_argument(
        "--http-memory",
        action="store_true",
        help="only: B×T×K (8×2048×32000, 2.1 GB; --quick 2×512) to a real server, its peak RSS",
    )
    args = parser.parse_args()
    if args.http_memory:
        b, t = (2, 512) if args.quick else (8, 2048)
        print(table(http_memory(b, t, 32_000)))
        return
    b, t = (2, 512) if args.quick else (8, 2048)
    if args.part == "temperature":  # its own processes: each contender's peak RSS is its own
        from benchmarks.sequence_temperature import temperature_fit

        print(table(temperature_fit(b, t, 32_000)))
        return
    if args.part == "classwise":
        print(table(classwise(2, 512, 32_000)))
        return
    if args.part in ("all", "sequences"):
        print(table(sequences(b, t, 32_000)))
        print()
    if args.part in ("all", "http"):
        print(table(sequences_http(2, 512, 32_000)))
        print()
    if args.part in ("sequences", "http"):
        return
    n = 100 if args.quick else 1000
    print(table(logprobs(n, 16, 5) + logprobs(n, 64, 5) + logprobs(n, 16, 0)))


if __name__ == "__main__":
    main()
