"""Render the documentation's reliability diagram with the service's own renderer.

``python docs/gen_reliability.py`` writes ``docs/assets/reliability-diagram.svg``: the answer of
``POST /v1/reliability-diagram`` (served in-process) to a fixed example, 1,000 samples of four
classes whose logits are twice as sharp as the labels were drawn with (an over-confident model).
``tests/docs/test_reliability_svg.py`` checks that the committed file is what this script writes now.
"""

import sys
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

OUTPUT = Path(__file__).resolve().parent / "assets" / "reliability-diagram.svg"


def example() -> dict[str, object]:
    """The request body: seeded logits rounded to 2 decimals, labels drawn from softmax(logits / 2)."""
    rng = np.random.default_rng(20261205)
    logits = np.round(rng.normal(scale=3.0, size=(1000, 4)), 2)
    tempered = np.exp(logits / 2 - (logits / 2).max(axis=1, keepdims=True))
    cumulative = np.cumsum(tempered / tempered.sum(axis=1, keepdims=True), axis=1)
    labels = (rng.random((1000, 1)) > cumulative[:, :-1]).sum(axis=1)
    return {"logits": logits.tolist(), "labels": labels.tolist(), "n_bins": 10}


def render() -> str:
    """The SVG document the service answers for `example()`."""
    with TestClient(create_app(Settings())) as client:
        response = client.post("/v1/reliability-diagram", json=example())
    response.raise_for_status()
    return response.text


def main() -> int:
    """Write the diagram to `OUTPUT`."""
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {OUTPUT}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
