"""Language-model scoring: (B, T, K) token cross-entropy vs torch, and a chat logprobs response.

    python -m benchmarks.sequences [--quick]

1. B = 8, T = 2,048, K = 32,000 float32 logits (2.1 GB), labels with 5 % ``-100``: Xent's
   :func:`token_scores` (loss, rank and top-1 confidence, or the loss alone) against
   ``F.cross_entropy(z.view(-1, K), y.view(-1), reduction="none")`` on the same tensor (shared
   memory, one thread), plus one ``np.exp`` pass over the array as the floor; and the peak
   extra memory each needs, measured by ``tracemalloc`` (Xent) and from the array sizes torch
   allocates (its log-softmax is a second B×T×K array).
2. 1,000-choice OpenAI chat completions (16 or 64 tokens per choice, 5 or 0 top_logprobs,
   with ``bytes``; JSON as a server sends it): ``orjson.loads`` alone, :func:`parse_logprobs`
   + :func:`score_logprobs` + top-1 calibration on the decoded object, both together, and
   ``POST /v1/logprobs`` in-process (``TestClient``, wall time).
"""

import argparse
import time
import tracemalloc

import numpy as np
import orjson
import torch
import torch.nn.functional as F

from benchmarks._timing import median_ms, table
from service.core import parse_logprobs, score_logprobs, token_scores, top1_calibration

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
    label = f"{n_choices} × {length} tokens × {k} alternatives ({len(raw) / 2**20:.1f} MiB)"
    rows = [
        {
            "response": label,
            "path": "orjson.loads alone",
            "ms": f"{median_ms(lambda: orjson.loads(raw)):.1f}",
        },
        {
            "response": label,
            "path": "parse + score + calibration (decoded)",
            "ms": f"{median_ms(lambda: score(decoded)):.1f}",
        },
        {
            "response": label,
            "path": "orjson.loads + parse + score + calibration",
            "ms": f"{median_ms(lambda: score(orjson.loads(raw))):.1f}",
        },
    ]
    with TestClient(create_app()) as client:
        client.post("/v1/logprobs", content=body, headers={"content-type": "application/json"})
        times = []
        for _ in range(5):
            start = time.perf_counter()
            r = client.post("/v1/logprobs", content=body, headers={"content-type": "application/json"})
            times.append(time.perf_counter() - start)
        assert r.status_code == 200, r.text
    rows.append(
        {
            "response": label,
            "path": "POST /v1/logprobs (TestClient, wall)",
            "ms": f"{np.median(times) * 1e3:.1f}",
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="B=2 T=512 and 100 choices")
    args = parser.parse_args()
    b, t = (2, 512) if args.quick else (8, 2048)
    print(table(sequences(b, t, 32_000)))
    print()
    n = 100 if args.quick else 1000
    print(table(logprobs(n, 16, 5) + logprobs(n, 64, 5) + logprobs(n, 16, 0)))


if __name__ == "__main__":
    main()
