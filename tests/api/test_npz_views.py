"""npz bodies: stored members are zero-copy read-only views after a CRC check; compressed,
Fortran-ordered and misaligned members decode to the same values."""

import io
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from service.api.errors.problems import ProblemError
from service.api.formats.arrays import ArrayReader
from service.api.formats.npz import BufferFile, read_npz
from tests.conftest import assert_problem


def _npz(compressed: bool = False, **arrays: np.ndarray) -> bytearray:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return bytearray(buffer.getvalue())


def _reader() -> ArrayReader:
    return ArrayReader(10**9, may_hold_booleans=False)


def test_stored_members_are_read_only_views_of_the_body(rng):
    logits = rng.standard_normal((1000, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 1000)
    body = _npz(logits=logits, labels=labels)
    fields = read_npz(body, _reader())
    np.testing.assert_array_equal(fields["logits"], logits)
    np.testing.assert_array_equal(fields["labels"], labels)
    raw = np.frombuffer(body, np.uint8)
    for name in ("logits", "labels"):
        assert np.shares_memory(fields[name], raw)
        assert not fields[name].flags.writeable


def test_compressed_and_fortran_ordered_members_decode_to_the_same_values(rng):
    logits = np.asfortranarray(rng.standard_normal((50, 3)))
    for compressed in (False, True):
        fields = read_npz(_npz(compressed, logits=logits), _reader())
        np.testing.assert_array_equal(fields["logits"], logits)


def test_misaligned_members_are_copied_to_aligned_arrays(rng):
    logits = rng.standard_normal((20, 4))
    body = _npz(logits=logits)
    # A prefix of 3 bytes shifts every offset; zip readers find the archive from its end.
    shifted = bytearray(b"abc") + body
    fields = read_npz(shifted, _reader())
    assert fields["logits"].flags.aligned
    np.testing.assert_array_equal(fields["logits"], logits)


def test_a_damaged_stored_member_fails_its_crc(rng):
    body = _npz(logits=rng.standard_normal((20, 4)))
    info = zipfile.ZipFile(io.BytesIO(bytes(body))).infolist()[0]
    body[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # one byte of array data
    with pytest.raises(ProblemError, match="CRC"):
        read_npz(body, _reader())


def test_damaged_stored_member_over_http_is_400(client, rng):
    body = _npz(logits=rng.standard_normal((20, 4)), labels=np.zeros(20, np.int64))
    body[-200] ^= 0xFF  # inside the central directory or the labels: either way a 400
    response = client.post(
        "/v1/cross-entropy", content=bytes(body), headers={"content-type": "application/x-npz"}
    )
    assert_problem(response, 400, None, "npz")


def test_npz_scores_match_torch(client, rng):
    logits = rng.standard_normal((500, 6)).astype(np.float32)
    labels = rng.integers(0, 6, 500)
    response = client.post(
        "/v1/cross-entropy",
        content=bytes(_npz(logits=logits, labels=labels)),
        headers={"content-type": "application/x-npz"},
    )
    assert response.status_code == 200, response.text
    expected = F.cross_entropy(torch.from_numpy(logits.astype(np.float64)), torch.from_numpy(labels)).item()
    assert response.json()["loss"] == pytest.approx(expected, rel=1e-6)


def test_buffer_file_reads_like_bytes_io():
    data = bytes(range(256)) * 3
    ours, theirs = BufferFile(bytearray(data)), io.BytesIO(data)
    for offset, whence, size in [(0, 0, 10), (5, 1, 100), (-20, 2, 50), (1000, 0, 5), (3, 0, -1)]:
        assert ours.seek(offset, whence) == theirs.seek(offset, whence)
        assert ours.read(size) == theirs.read(size)
        assert ours.tell() == theirs.tell()
