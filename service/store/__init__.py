"""Persistent state of monitors: one interface (`MonitorStore`), an embedded SQLite backend.

The store persists and merges bytes (serialised ``service.core.MonitorStats``) and knows no metric.
`open_store` picks the backend from settings: SQLite in ``data_dir`` unless ``database_url`` says
otherwise.
"""

from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from service.store.base import (
    IMMUTABLE_FIELDS,
    Fold,
    JoinCounts,
    LabelledRow,
    Merge,
    MonitorConfig,
    MonitorConflict,
    MonitorNotFound,
    MonitorStore,
    PendingRow,
    StatsRow,
    StoreError,
    StoreLimit,
    StoreLimits,
    StoreUnavailable,
)
from service.store.compactor import Compactor
from service.store.sqlite import SqliteStore

__all__ = [
    "IMMUTABLE_FIELDS",
    "Compactor",
    "Fold",
    "JoinCounts",
    "LabelledRow",
    "Merge",
    "MonitorConfig",
    "MonitorConflict",
    "MonitorNotFound",
    "MonitorStore",
    "PendingRow",
    "SqliteStore",
    "StatsRow",
    "StoreError",
    "StoreLimit",
    "StoreLimits",
    "StoreSettings",
    "StoreUnavailable",
    "open_store",
    "DATABASE_FILE",
]

#: The SQLite file's name inside ``data_dir``.
DATABASE_FILE = "monitors.sqlite3"


class StoreSettings(Protocol):
    """The settings `open_store` reads (``service.settings.Settings`` has them)."""

    @property
    def data_dir(self) -> Path:
        """Directory of the SQLite file."""
        ...

    @property
    def database_url(self) -> str | None:
        """Database URL; None for SQLite in ``data_dir``."""
        ...

    @property
    def max_monitors(self) -> int:
        """Most monitors."""
        ...

    @property
    def max_segments(self) -> int:
        """Most segments per monitor."""
        ...

    @property
    def max_pending_rows(self) -> int:
        """Most rows waiting for a label, per monitor."""
        ...

    @property
    def max_reservoir(self) -> int:
        """Largest reservoir a monitor may ask for."""
        ...


def open_store(settings: StoreSettings, *, merge: Merge) -> MonitorStore:
    """Open (creating and migrating as needed) the store that `settings` select.

    ``database_url`` unset: SQLite at ``data_dir/monitors.sqlite3``. ``sqlite:///relative.db`` or
    ``sqlite:////absolute.db``: SQLite at that path. Anything else raises ValueError (PostgreSQL
    arrives with issue #18).
    """
    limits = StoreLimits(
        max_monitors=settings.max_monitors,
        max_segments=settings.max_segments,
        max_pending_rows=settings.max_pending_rows,
        max_reservoir=settings.max_reservoir,
    )
    url = settings.database_url
    if not url:
        return SqliteStore(Path(settings.data_dir) / DATABASE_FILE, merge=merge, limits=limits)
    parts = urlsplit(url)
    if parts.scheme == "sqlite" and not parts.netloc and parts.path.startswith("/") and len(parts.path) > 1:
        return SqliteStore(parts.path[1:], merge=merge, limits=limits)
    if parts.scheme.startswith("postgres"):
        raise ValueError(
            "`database_url` postgresql:// is not supported yet (the PostgreSQL backend is issue #18); "
            "unset it to keep monitors in SQLite under data_dir"
        )
    raise ValueError(f"`database_url` must be sqlite:///<path>; got scheme {parts.scheme!r}")
