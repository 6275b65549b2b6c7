"""The ceiling for a 32×10 request: only the work any cross-entropy service must do, as raw ASGI.

The body is parsed by orjson, turned into arrays, checked (finite logits, labels in range),
scored by Xent's own core (the fused pass that serves loss, accuracy and entropy) and answered
with the fields Xent answers. Nothing else: no FastAPI, no Pydantic, no middleware (request ids,
metrics, limits, deadlines), no problem+json, no envelope or binary formats. Its share of the
bare FastAPI floor bounds what any service built this way can reach (``benchmarks.http``).
"""

from typing import Any

import numpy as np
import orjson

from service.core import Distribution, nll

CONVENTION = {
    "input": "logits",
    "form": "categorical",
    "truth": "labels",
    "dtype": "float64",
    "base": "e",
    "unit": "nats",
    "reduction": "mean",
    "eps": 0.0,
    "n_clipped": 0,
    "tolerance": 1e-6,
    "n_normalized": 0,
    "label_smoothing": 0.0,
    "class_weights": False,
    "ignore_index": None,
    "matches": "torch.nn.functional.cross_entropy",
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST /v1/cross-entropy with JSON `logits` (N×K) and `labels`; 404 for anything else."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    if scope["method"] != "POST" or scope["path"] != "/v1/cross-entropy":
        await _answer(send, 404, b"{}")
        return
    fields = orjson.loads(body)
    logits = np.array(fields["logits"], dtype=np.float64)
    labels = np.array(fields["labels"], dtype=np.int64)
    if not np.isfinite(logits).all() or labels.min() < 0 or labels.max() >= logits.shape[1]:
        await _answer(send, 422, b"{}")
        return
    dist = Distribution.from_logits(logits, validate=False)
    dist.summarise(top=True, entropy=True, labels=labels)
    losses = nll(labels, dist)
    answer = {
        "n": labels.size,
        "n_ignored": 0,
        "loss": float(np.add.reduce(losses, dtype=np.float64)) / losses.size,
        "losses": None,
        "accuracy": int(np.count_nonzero(dist.predicted() == labels)) / labels.size,
        "mean_entropy": float(np.add.reduce(dist.entropy(), dtype=np.float64)) / labels.size,
        "convention": CONVENTION,
    }
    await _answer(send, 200, orjson.dumps(answer))


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
