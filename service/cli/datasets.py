"""Parquet / Arrow IPC datasets read in bounded record batches, as NumPy arrays for the core.

A dataset is a file, a directory (searched recursively; names starting with ``_`` or ``.`` are
skipped, as Spark's ``_SUCCESS``) or a glob. Its *partitions* are Parquet row groups and Arrow
IPC record batches; each is read ``batch_size`` rows at a time (``ParquetFile.iter_batches``),
so memory is bounded by one batch and one row group's pages, never by the dataset. Partitions
are small picklable records, so Dask workers can read them by path.

Errors name the file, the row group and the column: :class:`DatasetError` for content
(a missing column, a wrong list length, nulls, non-finite values, labels out of range) and
:class:`~service.cli.files.FileError` for files that are missing or unreadable.
"""

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from service.core import InputError
from service.core.errors import MissingDependency

from .files import FileError

Kind = Literal["logits", "probs"]
Format = Literal["parquet", "arrow"]
SUFFIXES: dict[str, Format] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def pyarrow() -> Any:
    """The ``pyarrow`` module, or :class:`MissingDependency` naming the ``parquet`` extra."""
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise MissingDependency("pyarrow", "reading Parquet / Arrow datasets", "parquet") from None
    return pyarrow


class DatasetError(Exception):
    """Bad content in a dataset: says which file, row group (or record batch), column and row."""

    def __init__(self, path: str, row_group: int | None, column: str | None, reason: str) -> None:
        super().__init__(path, row_group, column, reason)  # positional: survives pickling (Dask)
        self.path, self.row_group, self.column, self.reason = path, row_group, column, reason

    def __str__(self) -> str:
        where = [self.path]
        if self.row_group is not None:
            where.append(f"row group {self.row_group}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.reason}"


@dataclass(frozen=True)
class Columns:
    """Which columns hold what. Predictions: one list column, or one float column per class."""

    kind: Kind
    prediction: str | None = None
    classes: tuple[str, ...] = ()
    label: str = "label"
    weight: str | None = None
    time: str | None = None
    segment: str | None = None

    def names(self) -> list[str]:
        """Every column to read, in a fixed order."""
        wanted = [self.prediction, *self.classes, self.label, self.weight, self.time, self.segment]
        return list(dict.fromkeys(name for name in wanted if name is not None))


@dataclass(frozen=True)
class Partition:
    """One Parquet row group or Arrow record batch of one file."""

    path: str
    format: Format
    index: int
    rows: int


@dataclass(frozen=True)
class Batch:
    """Arrays of up to ``batch_size`` rows; `offset` is their first row within the partition."""

    values: np.ndarray
    labels: np.ndarray
    weights: np.ndarray | None
    groups: tuple[np.ndarray, list[Any]] | None
    offset: int


def find_files(source: str) -> list[tuple[str, Format]]:
    """The Parquet / Arrow files of `source` (a file, a directory or a glob), sorted by path."""
    if os.path.isdir(source):
        found = []
        for root, dirs, names in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
            found += [os.path.join(root, n) for n in names if not n.startswith(("_", "."))]
        paths = sorted(p for p in found if _suffix(p) in SUFFIXES)
    elif os.path.isfile(source):
        if _suffix(source) not in SUFFIXES:
            raise FileError(f"{source}: unknown format; use {', '.join(SUFFIXES)}")
        paths = [source]
    elif glob.has_magic(source):
        paths = sorted(p for p in glob.glob(source, recursive=True) if _suffix(p) in SUFFIXES)
    else:
        raise FileError(f"{source}: no such file or directory")
    if not paths:
        raise FileError(f"{source}: holds no Parquet or Arrow files ({', '.join(SUFFIXES)})")
    return [(path, SUFFIXES[_suffix(path)]) for path in paths]


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def partitions(files: list[tuple[str, Format]]) -> list[Partition]:
    """Every row group / record batch of `files`, from the files' metadata (no data is read)."""
    pa = pyarrow()
    out = []
    for path, fmt in files:
        try:
            if fmt == "parquet":
                meta = pa.parquet.ParquetFile(path).metadata
                sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            else:
                with pa.memory_map(path) as source:
                    reader = pa.ipc.open_file(source)
                    sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
        except (OSError, pa.ArrowException) as exc:
            raise FileError(f"{path}: not a readable {fmt} file: {exc}") from None
        out += [Partition(path, fmt, i, rows) for i, rows in enumerate(sizes)]
    return out


def schema(path: str, fmt: Format) -> Any:
    """The Arrow schema of one file."""
    pa = pyarrow()
    try:
        if fmt == "parquet":
            return pa.parquet.ParquetFile(path).schema_arrow
        with pa.memory_map(path) as source:
            return pa.ipc.open_file(source).schema
    except (OSError, pa.ArrowException) as exc:
        raise FileError(f"{path}: not a readable {fmt} file: {exc}") from None


def class_columns(names: list[str], prefix: str) -> tuple[str, ...]:
    """Columns named ``PREFIX<i>``, ordered by ``i`` when every suffix is an integer, else as stored."""
    found = [name for name in names if name.startswith(prefix) and name != prefix]
    suffixes = [name[len(prefix) :] for name in found]
    if found and all(s.isdigit() for s in suffixes):
        found = [name for _, name in sorted(zip(map(int, suffixes), found, strict=True))]
    return tuple(found)


def n_classes_of(part: Partition, columns: Columns) -> tuple[int, bool]:
    """K and whether predictions are binary (one probability / logit per row), from the first rows."""
    if columns.classes:
        return len(columns.classes), False
    pa = pyarrow()
    name = columns.prediction
    assert name is not None
    field = _check_columns(part, columns).field(name)
    if pa.types.is_fixed_size_list(field.type):
        return int(field.type.list_size), False
    if _is_float(pa, field.type):
        return 2, True
    first = next(_record_batches(part, [name], 1), None)
    if first is None or len(first) == 0:
        raise DatasetError(part.path, part.index, name, "holds no rows to read K from")
    return int(pa.compute.list_value_length(first.column(0))[0].as_py() or 0), False


def read(part: Partition, columns: Columns, *, n_classes: int, batch_size: int) -> Iterator[Batch]:
    """The partition as :class:`Batch` es of at most `batch_size` rows, checked against K."""
    _check_columns(part, columns)
    offset = 0
    for record in _record_batches(part, columns.names(), batch_rows(part.rows, batch_size)):
        reader = _BatchReader(part, record, offset, n_classes)
        yield Batch(
            reader.predictions(columns),
            reader.labels(columns.label),
            None if columns.weight is None else reader.weights(columns.weight),
            reader.keys(columns),
            offset,
        )
        offset += len(record)


def batch_rows(rows: int, batch_size: int) -> int:
    """The smallest size ≥ max(`batch_size`, 2) that leaves no one-row tail batch in `rows` rows.

    Batches of at least two rows keep every per-row value independent of the batching.

    Examples
    --------
    >>> batch_rows(65_537, 65_536), batch_rows(10, 3), batch_rows(10, 1), batch_rows(1, 100)
    (65537, 4, 2, 100)
    """
    size = max(batch_size, 2)
    while rows > size and rows % size == 1:
        size += 1
    return size


def _check_columns(part: Partition, columns: Columns) -> Any:
    found = schema(part.path, part.format)
    for name in columns.names():
        if found.get_field_index(name) < 0:
            have = ", ".join(found.names)
            raise DatasetError(part.path, part.index, name, f"is missing; the file has columns {have}")
    return found


def _record_batches(part: Partition, names: list[str], batch_size: int) -> Iterator[Any]:
    pa = pyarrow()
    try:
        if part.format == "parquet":
            parquet = pa.parquet.ParquetFile(part.path)
            yield from parquet.iter_batches(batch_size=batch_size, row_groups=[part.index], columns=names)
            return
        with pa.memory_map(part.path) as source:
            whole = pa.ipc.open_file(source).get_batch(part.index).select(names)
            for start in range(0, len(whole), batch_size):
                yield whole.slice(start, batch_size)  # zero-copy views of the mapped file
    except (OSError, pa.ArrowException) as exc:
        raise FileError(f"{part.path}, row group {part.index}: cannot be read: {exc}") from None


def _is_float(pa: Any, type_: Any) -> bool:
    return bool(pa.types.is_floating(type_))


class _BatchReader:
    """Column → ndarray conversions of one record batch, with errors that say where."""

    def __init__(self, part: Partition, record: Any, offset: int, n_classes: int) -> None:
        self.pa = pyarrow()
        self.part, self.record, self.offset, self.k = part, record, offset, n_classes

    def fail(self, column: str, reason: str, row: int | None = None) -> DatasetError:
        at = "" if row is None else f" (row {self.offset + row} of the row group)"
        return DatasetError(self.part.path, self.part.index, column, reason + at)

    def column(self, name: str) -> Any:
        array = self.record.column(name)
        if array.null_count:
            first = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
            raise self.fail(name, "holds a null", first)
        return array

    def floats(self, name: str, array: Any) -> np.ndarray:
        if not _is_float(self.pa, array.type) and not self.pa.types.is_integer(array.type):
            raise self.fail(name, f"must hold floats; got {array.type}")
        if array.null_count:
            raise self.fail(name, "holds a null value inside a list")
        values = np.asarray(array.to_numpy(zero_copy_only=False))
        return values if values.dtype.kind == "f" else values.astype(np.float64)

    def predictions(self, columns: Columns) -> np.ndarray:
        if columns.classes:
            parts = [self.floats(name, self.column(name)) for name in columns.classes]
            out = np.empty((len(self.record), self.k), np.result_type(*parts))
            for j, values in enumerate(parts):  # one column per class: K copies, no loop over rows
                out[:, j] = values
            return out
        name = columns.prediction
        assert name is not None
        array = self.column(name)
        types = self.pa.types
        if _is_float(self.pa, array.type) and self.k == 2:
            return self.floats(name, array)
        if not (
            types.is_list(array.type)
            or types.is_large_list(array.type)
            or types.is_fixed_size_list(array.type)
        ):
            raise self.fail(name, f"must be a list or fixed-size list of floats; got {array.type}")
        lengths = self.pa.compute.list_value_length(array).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(lengths != self.k)
        if bad.size:
            raise self.fail(
                name, f"has a list of length {lengths[bad[0]]}; expected K = {self.k}", int(bad[0])
            )
        return self.floats(name, array.flatten()).reshape(len(self.record), self.k)

    def labels(self, name: str) -> np.ndarray:
        array = self.column(name)
        if not (self.pa.types.is_integer(array.type) or self.pa.types.is_boolean(array.type)):
            raise self.fail(name, f"must hold integer class labels; got {array.type}")
        labels = np.asarray(array.to_numpy(zero_copy_only=False)).astype(np.int64)
        bad = np.flatnonzero((labels < 0) | (labels >= self.k))
        if bad.size:
            raise self.fail(name, f"must lie in [0, {self.k}); got {labels[bad[0]]}", int(bad[0]))
        return labels

    def weights(self, name: str) -> np.ndarray:
        weights = self.floats(name, self.column(name)).astype(np.float64)
        bad = np.flatnonzero(~(np.isfinite(weights) & (weights >= 0)))
        if bad.size:
            raise self.fail(name, f"must be finite and non-negative; got {weights[bad[0]]}", int(bad[0]))
        return weights

    def keys(self, columns: Columns) -> tuple[np.ndarray, list[Any]] | None:
        """Each row's group code and the groups' keys: UTC day numbers (since 1970-01-01) or segments."""
        if columns.time is not None:
            unique, codes = np.unique(self.days(columns.time), return_inverse=True)
            return codes.reshape(-1), unique.tolist()
        if columns.segment is None:
            return None
        encoded = self.pa.compute.dictionary_encode(self.record.column(columns.segment))
        segments = encoded.dictionary.to_pylist()
        codes = encoded.indices.fill_null(len(segments)).to_numpy(zero_copy_only=False)
        return np.asarray(codes, np.int64), [*segments, None]  # a null segment: the trailing None

    def days(self, name: str) -> np.ndarray:
        array = self.column(name)
        types = self.pa.types
        if types.is_timestamp(array.type):
            ticks = array.cast(self.pa.int64()).to_numpy(zero_copy_only=False)  # UTC, in the type's unit
            return np.floor_divide(ticks, _DAY[array.type.unit])
        if types.is_date32(array.type):
            return array.cast(self.pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
        if types.is_date64(array.type):
            return np.floor_divide(array.cast(self.pa.int64()).to_numpy(zero_copy_only=False), _DAY["ms"])
        raise self.fail(name, f"must hold timestamps or dates; got {array.type}")


def check_values(error: InputError, part: Partition, column: str, offset: int) -> DatasetError:
    """A core InputError about a batch, restated with the file, row group, column and row."""
    row = f" (row {offset + error.index[0]} of the row group)" if error.index else ""
    return DatasetError(part.path, part.index, column, f"{error.reason}{row}")
