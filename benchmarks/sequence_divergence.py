"""Peak server memory of ``/v1/divergence`` on a B×T×K float16 (or BF16) teacher/student pair.

Both sides go as one OIP binary body to a real ``python -m service serve``; the server's peak
resident set (``VmHWM``) is read from /proc and set against the body. The per-position KL is
checked against torch's on the same (widened) values.

Run: ``python -m benchmarks.sequence_divergence [--b 4 --t 1024 --k 32000 --datatype FP16]``.
"""

import argparse
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import orjson
import torch

from benchmarks.sequences import _status


def http_memory(b: int, t: int, k: int, datatype: str) -> dict[str, str]:
    """Post the pair once (after one small request) and return the server's memory figures."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    side = b * t * k * 2
    header = {
        "inputs": [
            {
                "name": n,
                "shape": [b, t, k],
                "datatype": datatype,
                "parameters": {"role": n, "binary_data_size": side},
            }
            for n in ("p_logits", "q_logits")
        ],
        "parameters": {"reduction": "mean"},
    }
    head = orjson.dumps(header)
    head += b" " * (-len(head) % 64)
    total = len(head) + 2 * side
    buffer = np.empty(total, np.uint8)
    buffer[: len(head)] = np.frombuffer(head, np.uint8)
    sides = [buffer[len(head) + i * side : len(head) + (i + 1) * side].view(np.uint16) for i in (0, 1)]
    rng = np.random.default_rng(5)
    dtype = torch.float16 if datatype == "FP16" else torch.bfloat16
    for i in range(b):  # a sequence at a time: the client never holds a float32 copy either
        z = torch.from_numpy(2 * rng.standard_normal((t, k), dtype=np.float32))
        for j, values in enumerate((z, z + torch.from_numpy(rng.standard_normal((t, k), dtype=np.float32)))):
            sides[j][i * t * k : (i + 1) * t * k] = (
                values.to(dtype).view(torch.int16).numpy().view(np.uint16).ravel()
            )
    env = {
        **os.environ,
        "XENT_MAX_BODY_BYTES": str(total + 1024),
        "XENT_MAX_ELEMENTS": str(2 * b * t * k + 1),
        "XENT_REQUEST_TIMEOUT_S": "900",
        "XENT_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
        "content-length": str(total),
    }
    view = memoryview(buffer)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=900) as client:
            for _ in range(300):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            small = client.post(
                "/v1/divergence", json={"p_logits": [[[0.0, 1.0]]], "q_logits": [[[1.0, 0.0]]]}
            )
            assert small.status_code == 200, small.text
            baseline = _status(server.pid, "VmRSS")
            start = time.perf_counter()
            answer = client.post(
                "/v1/divergence",
                content=(bytes(view[i : i + (1 << 20)]) for i in range(0, total, 1 << 20)),
                headers=headers,
            )
            wall = time.perf_counter() - start
            assert answer.status_code == 200, answer.text
            peak = _status(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(30)
    words = [s.reshape(b, t, k)[0] for s in sides]  # torch on the first sequence's same values
    lp, lq = (torch.log_softmax(torch.from_numpy(w.view(np.int16)).view(dtype).double(), -1) for w in words)
    first = float(torch.nn.functional.kl_div(lq, lp, log_target=True, reduction="none").sum(-1).mean())
    got = answer.json()["sequences"]["sum"]["kl_pq"][0] / t
    mib = 2**20
    return {
        "case": f"B={b} T={t} K={k} {datatype} pair, binary body {total / mib:,.0f} MiB",
        "server RSS before": f"{baseline / mib:,.0f} MiB",
        "server peak RSS (VmHWM)": f"{peak / mib:,.0f} MiB",
        "peak / body": f"{peak / total:.2f}×",
        "(peak − before) / body": f"{(peak - baseline) / total:.2f}×",
        "POST wall time": f"{wall:.1f} s",
        "sequence 0 mean KL vs torch": f"{got:.6f} vs {first:.6f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--b", type=int, default=4)
    parser.add_argument("--t", type=int, default=1024)
    parser.add_argument("--k", type=int, default=32_000)
    parser.add_argument("--datatype", choices=["FP16", "BF16"], default="FP16")
    args = parser.parse_args()
    for key, value in http_memory(args.b, args.t, args.k, args.datatype).items():
        print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
