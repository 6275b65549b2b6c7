"""Every example in examples/ runs against a live server and prints the right numbers."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_softmax, rel_entr

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])


def run_example(argv: list[str], url: str) -> str:
    env = {**os.environ, "XENT_URL": url}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def ce(logits, labels, dtype=np.float64):
    z = np.asarray(logits, dtype=dtype).astype(np.float64)
    return -log_softmax(z, axis=1)[np.arange(len(labels)), labels]


def test_curl_example(live_url):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    lines = [
        json.loads(line) for line in run_example(["bash", str(EXAMPLES / "curl.sh")], live_url).splitlines()
    ]
    plain, tensor, divergence, problem = lines
    assert plain["loss"] == pytest.approx(ce(LOGITS[:2], [0, 2]).mean(), rel=1e-12)
    assert tensor["convention"]["dtype"] == "float32"
    np.testing.assert_allclose(tensor["losses"], ce(LOGITS[:2], [0, 2], np.float32) / np.log(2), rtol=1e-6)
    p, q = np.array([[0.5, 0.5], [0.9, 0.1]]), np.array([[0.25, 0.75], [0.5, 0.5]])
    assert divergence["mean"]["kl_pq"] == pytest.approx(rel_entr(p, q).sum(axis=1).mean(), rel=1e-12)
    assert problem["status"] == 422
    assert problem["errors"][0]["pointer"] == "#/labels/0"


def test_python_client_example(live_url):
    out = run_example([sys.executable, str(EXAMPLES / "python_client.py")], live_url)
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((1000, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=1000)
    bits = float(re.search(r"cross-entropy (\S+) bits", out).group(1))
    assert bits == pytest.approx(ce(logits, labels).mean() / np.log(2), abs=2e-6)
    accuracy = float(re.search(r"accuracy (\S+),", out).group(1))
    assert accuracy == pytest.approx(np.mean(logits.argmax(axis=1) == labels), abs=5e-4)
    assert "rejected: 422 #/labels/data/" in out


def test_javascript_fetch_example(live_url):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (Node 20 or later runs this example)")
    out = run_example([node, str(EXAMPLES / "javascript_fetch.mjs")], live_url)
    losses = [float(x) for x in re.search(r"^losses (.+)$", out, re.MULTILINE).group(1).split()]
    np.testing.assert_allclose(losses, ce(LOGITS, [0, 2, 1], np.float32), atol=1e-6)
    q = np.array([[1 / 3, 1 / 3, 1 / 3], [0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    p = np.exp(log_softmax(LOGITS.astype(np.float32).astype(np.float64), axis=1))
    kl = float(re.search(r"KL\(p\|\|q\) (\S+) nats", out).group(1))
    assert kl == pytest.approx(rel_entr(p, q).sum(axis=1).mean(), abs=1e-6)
    assert "rejected: 422 #/labels/2 `labels[2]` must lie in [0, 3); got 7" in out
