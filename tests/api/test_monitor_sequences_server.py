"""A language model's sums under a real 2-worker server: kill -9 during ``…/sequences`` writes.

Writers send keyed batches of chat completions; the server is killed mid-write. After the restart
each writer re-sends every batch it attempted with the same key: a batch whose sums were committed
before the kill is replayed (its key is stored in the transaction that added its sums), so the
replayed batches are exactly those the database held. Every acknowledged batch must be among them,
the sums read before the re-sends must equal one ``/v1/logprobs`` answer over the replayed batches'
documents (and the logprobs sent, summed here), and after the re-sends, over every batch attempted.
"""

import math
import threading
import time

import httpx
import numpy as np
import pytest

from tests.serving.server import free_port

from .test_monitors_server import Served

WRITERS = 8
DOCS = 2  # chat completions per batch
MONITOR = "lm-crash"


def _batch(seed: int) -> list[dict]:
    """`DOCS` chat completions of 1–12 tokens, each token with its bytes."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(DOCS):
        lp = rng.uniform(-6.0, -0.05, size=int(rng.integers(1, 13)))
        sizes = rng.integers(1, 6, size=lp.size)
        content = [
            {"token": "w", "logprob": float(v), "bytes": [119] * int(n), "top_logprobs": []}
            for v, n in zip(lp, sizes, strict=True)
        ]
        docs.append({"choices": [{"index": 0, "logprobs": {"content": content}}]})
    return docs


def _check(totals: dict, client: httpx.Client, docs: list[dict]) -> None:
    """`totals` (GET /v1/monitors/{name}'s `language_model`) equal /v1/logprobs on `docs`."""
    whole = client.post("/v1/logprobs", json={"responses": docs}).json()
    assert (totals["n_sequences"], totals["n_tokens"]) == (len(docs), whole["n_tokens"])
    assert totals["nll"] == pytest.approx(whole["nll"], rel=1e-12)
    for key in ("token_perplexity", "bits_per_byte", "lm_eval_perplexity", "hf_mean_perplexity"):
        assert totals[key] == pytest.approx(whole["metrics"][key], rel=1e-12), key
    tokens = [t for d in docs for t in d["choices"][0]["logprobs"]["content"]]
    nll = -math.fsum(t["logprob"] for t in tokens)
    assert totals["token_perplexity"] == pytest.approx(math.exp(nll / len(tokens)), rel=1e-12)
    n_bytes = sum(len(t["bytes"]) for t in tokens)
    assert totals["bits_per_byte"] == pytest.approx(nll / n_bytes / math.log(2), rel=1e-12)


def test_kill_9_during_sequence_writes_keeps_every_acknowledged_batchs_sums(tmp_path):
    port = free_port()
    server = Served(tmp_path, port)
    restarted = None
    try:
        httpx.put(f"{server.url}/v1/monitors/{MONITOR}", json={"n_classes": 2}).raise_for_status()
        attempted: list[list[int]] = [[] for _ in range(WRITERS)]
        acknowledged: list[set[int]] = [set() for _ in range(WRITERS)]
        stop = threading.Event()

        def send(client: httpx.Client, writer: int, b: int) -> httpx.Response:
            headers = {"Idempotency-Key": f"writer-{writer}-batch-{b}"}
            body = {"responses": _batch(writer * 10**5 + b), "segment": f"w{writer % 2}"}
            return client.post(f"/v1/monitors/{MONITOR}/sequences", json=body, headers=headers)

        def write(writer: int) -> None:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for b in range(10**5):
                    if stop.is_set():
                        return
                    attempted[writer].append(b)
                    try:
                        if send(client, writer, b).status_code == 200:
                            acknowledged[writer].add(b)
                    except httpx.TransportError:
                        return  # the server is gone

        threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60  # kill once enough went through, however loaded the machine is
        while sum(map(len, acknowledged)) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()  # mid-write: requests are in flight
        stop.set()
        for thread in threads:
            thread.join()
        n_acked = sum(map(len, acknowledged))
        assert n_acked >= 10, "too few batches went through before the kill to test anything"
        restarted = Served(tmp_path, port)
        with httpx.Client(base_url=restarted.url, timeout=60) as client:
            held = client.get(f"/v1/monitors/{MONITOR}").json()["totals"]["language_model"]
            replayed: list[tuple[int, int]] = []
            for writer, batches in enumerate(attempted):
                for b in batches:
                    answer = send(client, writer, b)
                    assert answer.status_code == 200, answer.text
                    if answer.headers.get("idempotent-replayed") == "true":
                        replayed.append((writer, b))
            assert {(w, b) for w, acked in enumerate(acknowledged) for b in acked} <= set(replayed)
            _check(held, client, [d for w, b in replayed for d in _batch(w * 10**5 + b)])
            every = [d for w, batches in enumerate(attempted) for b in batches for d in _batch(w * 10**5 + b)]
            final = client.get(f"/v1/monitors/{MONITOR}").json()["totals"]
            assert final["segments"] == ["w0", "w1"]
            _check(final["language_model"], client, every)
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()
