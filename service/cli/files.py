"""Read arrays from ``.npy``, ``.npz`` and ``.csv`` files, with progress for large ones.

An array is named ``PATH`` or ``PATH:NAME`` (``NAME`` picks an array of an ``.npz``).
"""

import io
import os
import sys
import zipfile
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

#: Files at least this large report progress while they are read (when stderr is a terminal).
PROGRESS_BYTES = 16 * 2**20
_CHUNK_BYTES = 4 * 2**20
_PREDICTION_KEYS = ("logits", "probs", "predictions", "y_pred")
_LABEL_KEYS = ("labels", "y", "y_true", "targets")


class FileError(Exception):
    """A file is missing, unreadable, or not an array this command can use."""


@dataclass(frozen=True)
class Loaded:
    """An array and where it came from (``name`` is the ``.npz`` key, if any)."""

    array: np.ndarray
    path: str
    name: str | None = None


class Progress:
    """``reading FILE  42%`` on stderr, rewritten in place; silent when disabled."""

    def __init__(self, label: str, total: int, *, enabled: bool) -> None:
        self.label = label
        self.total = max(total, 1)
        self.enabled = enabled
        self._shown = -1

    def update(self, done: int) -> None:
        """Show the fraction `done` / total, when it moved by at least one percent."""
        percent = min(100, 100 * done // self.total)
        if self.enabled and percent != self._shown:
            self._shown = percent
            sys.stderr.write(f"\rreading {self.label} {percent:3d}%")
            sys.stderr.flush()

    def close(self) -> None:
        """End the progress line."""
        if self.enabled and self._shown >= 0:
            sys.stderr.write("\n")
            sys.stderr.flush()


def read_array(spec: str, *, role: str, progress: bool | None = None) -> Loaded:
    """Load the array named by `spec` for `role` ("predictions" or "labels").

    `progress` None shows progress for files of at least :data:`PROGRESS_BYTES` when
    stderr is a terminal; True or False forces it.
    """
    path, name = split_spec(spec)
    if not os.path.isfile(path):
        raise FileError(f"{path}: no such file")
    size = os.path.getsize(path)
    show = progress if progress is not None else size >= PROGRESS_BYTES and sys.stderr.isatty()
    meter = Progress(path, size, enabled=show)
    try:
        suffix = os.path.splitext(path)[1].lower()
        if suffix == ".npz":
            return _read_npz(path, name, role, meter)
        if name is not None:
            raise FileError(f"{spec}: only .npz files hold named arrays")
        if suffix == ".npy":
            return Loaded(_read_npy(path, meter), path)
        if suffix in (".csv", ".txt"):
            return Loaded(_read_csv(path, meter), path)
        raise FileError(f"{path}: unknown format {suffix or '(no suffix)'}; use .npy, .npz or .csv")
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise FileError(f"{path}: {exc}") from None
    finally:
        meter.close()


def split_spec(spec: str) -> tuple[str, str | None]:
    """``data.npz:logits`` → (``data.npz``, ``logits``); a path that exists is never split."""
    if os.path.exists(spec) or ":" not in spec:
        return spec, None
    path, _, name = spec.rpartition(":")
    return path, name or None


def _read_npy(path: str, meter: Progress) -> np.ndarray:
    """Copy an ``.npy`` from a memory map in chunks, so progress can be shown."""
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    out = np.empty(mapped.shape, mapped.dtype)
    flat_in, flat_out = mapped.reshape(-1), out.reshape(-1)
    step = max(1, _CHUNK_BYTES // max(mapped.itemsize, 1))
    for start in range(0, flat_in.size, step):
        flat_out[start : start + step] = flat_in[start : start + step]
        meter.update(start * mapped.itemsize)
    meter.update(meter.total)
    return out


def _read_npz(path: str, name: str | None, role: str, meter: Progress) -> Loaded:
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.files)
        if name is None:
            wanted = _PREDICTION_KEYS if role == "predictions" else _LABEL_KEYS
            found = [key for key in wanted if key in keys]
            if len(keys) == 1:
                name = keys[0]
            elif found:
                name = found[0]
            else:
                raise FileError(f"{path}: holds {', '.join(keys)}; name the {role} as {path}:NAME")
        if name not in keys:
            raise FileError(f"{path}: has no array {name!r}; it holds {', '.join(keys)}")
        array = archive[name]
    meter.update(meter.total)
    return Loaded(array, path, name)


def _read_csv(path: str, meter: Progress) -> np.ndarray:
    """Comma-separated numbers, one sample per line; a first line that is not numeric is a header."""
    with open(path, "rb") as handle:
        first = handle.readline()
        if first and not _is_numeric(first):
            first = b""
        blocks = [_parse_lines(first)] if first.strip() else []
        while chunk := handle.read(_CHUNK_BYTES):
            chunk += handle.readline()  # end on a line boundary
            blocks.append(_parse_lines(chunk))
            meter.update(handle.tell())
    blocks = [block for block in blocks if block.size]
    if not blocks:
        raise FileError(f"{path}: holds no numbers")
    if len({block.shape[1] for block in blocks}) > 1:
        raise FileError(f"{path}: rows have different numbers of columns")
    array = np.concatenate(blocks)
    return array[:, 0] if array.shape[1] == 1 else array


def _parse_lines(data: bytes) -> np.ndarray:
    if not data.strip():
        return np.empty((0, 0))
    text: IO[str] = io.StringIO(data.decode("utf-8"))
    array: Any = np.loadtxt(text, delimiter=",", ndmin=2, dtype=np.float64)
    return np.asarray(array)


def _is_numeric(line: bytes) -> bool:
    try:
        [float(cell) for cell in line.decode("utf-8").split(",")]
    except ValueError:
        return False
    return True
