"""Generated Parquet / Arrow datasets for the ``xent score DATASET`` tests, and the HTTP reference."""

import io
import json
import os

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("pyarrow.ipc")

DAY_MS = 86_400_000
T0 = 20_000 * DAY_MS  # 2024-10-04 UTC


def predictions(kind: str, dtype, n: int, k: int, rng) -> np.ndarray:
    """Logits, or softmax probabilities (rounded to `dtype`); length-N vectors when k is 1 (binary)."""
    z = 2.5 * rng.standard_normal((n, max(k, 2)))
    if kind == "logits":
        values = z
    else:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        values = e / e.sum(axis=1, keepdims=True)
    return (values[:, 1] if k == 1 else values).astype(dtype)


def prediction_columns(layout: str, values: np.ndarray, kind: str) -> dict:
    """The predictions as Arrow columns: ``fixed`` / ``list`` (one column), ``classes`` (one per class)."""
    if values.ndim == 1:
        return {kind: pa.array(values)}
    n, k = values.shape
    flat = pa.array(values.reshape(-1))
    if layout == "fixed":
        return {kind: pa.FixedSizeListArray.from_arrays(flat, k)}
    if layout == "list":
        return {kind: pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), flat)}
    return {f"p{j}": pa.array(values[:, j]) for j in range(k)}


def write(directory, name: str, table, *, row_group: int, fmt: str = "parquet") -> str:
    """One file: Parquet with row groups of `row_group` rows, or Arrow IPC with record batches of it."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(str(directory), name)
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=row_group)
    else:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=row_group):
                writer.write_batch(batch)
    return path


def make_dataset(directory, *, kind, layout, dtype, k, sizes, rng, row_group=300, fmt="parquet", extra=None):
    """Files of `sizes` rows (labels, day timestamps, segments, integer weights); the arrays in file order."""
    parts = []
    for i, n in enumerate(sizes):
        values = predictions(kind, dtype, n, k, rng)
        labels = rng.integers(0, max(k, 2), n)
        columns = prediction_columns(layout, values, kind)
        columns["label"] = pa.array(labels)
        days = rng.integers(0, 3, n)
        columns["ts"] = pa.array(T0 + days * DAY_MS + rng.integers(0, DAY_MS, n)).cast(
            pa.timestamp("ms", tz="UTC")
        )
        segments = rng.choice(np.array(["eu", "us", "asia"], dtype=object), n)
        segments[rng.random(n) < 0.1] = None
        columns["segment"] = pa.array(segments.tolist(), type=pa.string())
        weights = rng.integers(0, 4, n).astype(np.float64)
        columns["w"] = pa.array(weights)
        suffix = ".parquet" if fmt == "parquet" else ".arrow"
        write(directory, f"part-{i:02d}{suffix}", pa.table(columns), row_group=row_group, fmt=fmt)
        parts.append((values, labels, days, segments, weights))
    return [np.concatenate([p[j] for p in parts]) for j in range(5)]


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def http_reference(http, kind: str, values, labels, *, base="e", **options) -> tuple[dict, dict]:
    """``/v1/calibration`` metrics and ``/v1/cross-entropy`` of all rows in one request (npz keeps dtypes)."""
    headers = {"content-type": "application/x-npz"}
    base = base if base == "e" else int(base)
    calibration = http.post(
        "/v1/calibration",
        content=npz(
            **{kind: values}, labels=labels, parameters=np.array(json.dumps({**options, "base": base}))
        ),
        headers=headers,
    )
    assert calibration.status_code == 200, calibration.text
    ce = http.post(
        "/v1/cross-entropy",
        content=npz(**{kind: values}, labels=labels, parameters=np.array(json.dumps({"base": base}))),
        headers=headers,
    )
    assert ce.status_code == 200, ce.text
    return calibration.json()["metrics"], ce.json()


#: The report's metrics and the /v1/calibration scalar each must equal.
EXACT = (
    "calibration_error",
    "ece",
    "mce",
    "rmsce",
    "ace_netcal",
    "debiased_l2",
    "brier",
    "nll",
    "accuracy",
    "mean_confidence",
    "confidence_gap",
)


def assert_matches(report_metrics: dict, calibration: dict, ce: dict, *, rtol=1e-12) -> None:
    """Every reported scalar equals the routes' at `rtol`.

    ``nll`` is ``/v1/cross-entropy``'s loss. For float32 input ``/v1/calibration``'s own ``nll``
    and ``/v1/cross-entropy``'s loss differ by float32 rounding (~1e-9 relative: two kernels);
    the report follows ``/v1/cross-entropy``.
    """
    float32 = ce["convention"]["dtype"] == "float32"
    for name in EXACT:
        if name in report_metrics:
            expected = ce["loss"] if name == "nll" and float32 else calibration[name]
            np.testing.assert_allclose(report_metrics[name], expected, rtol=rtol, atol=0, err_msg=name)
    if float32:
        np.testing.assert_allclose(report_metrics["nll"], calibration["nll"], rtol=1e-7, atol=0)
    np.testing.assert_allclose(report_metrics["cross_entropy"], ce["loss"], rtol=rtol, atol=0)
