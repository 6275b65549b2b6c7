"""Call Xent from Python with the bundled client.

Usage: ``XENT_URL=http://127.0.0.1:8000 python examples/python_client.py``
"""

import os

import numpy as np

from service.client import XentAPIError, XentClient

url = os.environ.get("XENT_URL", "http://127.0.0.1:8000")
rng = np.random.default_rng(0)
logits = rng.standard_normal((1000, 10)).astype(np.float32)  # sent as an FP32 tensor, scored in float32
labels = rng.integers(0, 10, size=1000)

with XentClient(url, api_key=os.environ.get("XENT_API_KEY"), timeout=10) as xent:
    ce = xent.cross_entropy(logits=logits, labels=labels, base=2)
    print(f"cross-entropy {ce.loss:.6f} {ce.convention.unit}, accuracy {ce.accuracy:.3f}, n {ce.n}")

    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    div = xent.divergence(p_probs=probs[:500], q_probs=probs[500:])
    print(f"KL(p||q) {div.mean.kl_pq:.6f} nats, JS distance {div.mean.js_distance:.6f}")

    try:
        xent.cross_entropy(logits=logits, labels=labels + 1)  # label 10 is out of range for K = 10
    except XentAPIError as error:
        print(f"rejected: {error.status} {error.pointer} {error.detail}")
