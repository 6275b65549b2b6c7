"""Helpers of the monitor tests: an app on a scratch data directory, and bodies in every format."""

import io
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from service.app import create_app
from service.client.encoding import encode_binary, encode_json
from service.settings import Settings

FORMATS = ("json", "tensor", "binary", "npz")


@contextmanager
def monitor_client(data_dir: Path, **settings: Any) -> Iterator[TestClient]:
    """A TestClient (lifespan run: the store opened and closed) keeping monitors in `data_dir`."""
    with TestClient(create_app(Settings(data_dir=data_dir, **settings))) as client:
        yield client


def body(fields: Mapping[str, Any], fmt: str) -> tuple[bytes, dict[str, str]]:
    """`fields` (ndarrays and small values) as a request body in format `fmt`."""
    present = {k: v for k, v in fields.items() if v is not None}
    if fmt == "json":
        plain = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in present.items()}
        return json.dumps(plain).encode(), {"content-type": "application/json"}
    if fmt == "tensor":
        encoded = encode_json(present)
    elif fmt == "binary":
        encoded = encode_binary(present)
    else:
        arrays = {k: v for k, v in present.items() if isinstance(v, np.ndarray)}
        options = {k: v for k, v in present.items() if not isinstance(v, np.ndarray)}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays, parameters=np.array(json.dumps(options)))
        return buffer.getvalue(), {"content-type": "application/x-npz"}
    return encoded.content, encoded.headers


def observe(client: TestClient, name: str, fields: Mapping[str, Any], fmt: str = "json") -> Any:
    """POST a batch of observations; return the response."""
    content, headers = body(fields, fmt)
    return client.post(f"/v1/monitors/{name}/observations", content=content, headers=headers)
