"""Persistent state of monitors: one interface (`MonitorStore`), SQLite and PostgreSQL backends.

The store persists and merges bytes (serialised ``service.core.MonitorStats``) and knows no metric.
`open_store` picks the backend from settings: SQLite in ``data_dir`` unless ``database_url`` says
otherwise (``postgresql://`` selects `service.store.postgres.PostgresStore`, which needs the
``postgres`` extra; it is imported only then).
"""

from pathlib import Path
from typing import Literal, Protocol, cast
from urllib.parse import urlsplit

from service.store.base import (
    IMMUTABLE_FIELDS,
    ConfigChanged,
    Fold,
    HourRows,
    IdempotencyKey,
    JoinCounts,
    KeyReused,
    LabelledRow,
    LmSumsRow,
    LockHeld,
    Merge,
    MonitorConfig,
    MonitorConflict,
    MonitorNotFound,
    MonitorStore,
    PendingRow,
    Replayed,
    ReservoirBatch,
    StatsRow,
    StoreError,
    StoreLimit,
    StoreLimits,
    StoreUnavailable,
    WouldBlock,
    same_config,
)
from service.store.compactor import Compactor
from service.store.sqlite import SqliteStore

__all__ = [
    "IMMUTABLE_FIELDS",
    "Compactor",
    "ConfigChanged",
    "Fold",
    "HourRows",
    "IdempotencyKey",
    "JoinCounts",
    "KeyReused",
    "LabelledRow",
    "LockHeld",
    "Merge",
    "MonitorConfig",
    "MonitorConflict",
    "MonitorNotFound",
    "MonitorStore",
    "PendingRow",
    "Replayed",
    "ReservoirBatch",
    "SqliteStore",
    "LmSumsRow",
    "StatsRow",
    "StoreError",
    "StoreLimit",
    "StoreLimits",
    "StoreSettings",
    "StoreUnavailable",
    "WouldBlock",
    "open_store",
    "same_config",
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

    @property
    def idempotency_ttl_s(self) -> float:
        """How long an idempotency key is remembered."""
        ...

    @property
    def max_idempotency_keys(self) -> int:
        """Most idempotency keys remembered per monitor."""
        ...

    @property
    def sqlite_synchronous(self) -> str:
        """SQLite's ``synchronous`` pragma (NORMAL or FULL)."""
        ...


def open_store(settings: StoreSettings, *, merge: Merge) -> MonitorStore:
    """Open (creating and migrating as needed) the store that `settings` select.

    ``database_url`` unset: SQLite at ``data_dir/monitors.sqlite3``. ``sqlite:///relative.db`` or
    ``sqlite:////absolute.db``: SQLite at that path. ``postgresql://`` (or ``postgres://``): that
    PostgreSQL database (an ImportError naming the ``postgres`` extra when psycopg is missing).
    Anything else raises ValueError.
    """
    limits = StoreLimits(
        max_monitors=settings.max_monitors,
        max_segments=settings.max_segments,
        max_pending_rows=settings.max_pending_rows,
        max_reservoir=settings.max_reservoir,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        max_idempotency_keys=settings.max_idempotency_keys,
    )
    synchronous = cast(Literal["NORMAL", "FULL"], settings.sqlite_synchronous)
    url = settings.database_url
    if not url:
        return SqliteStore(
            Path(settings.data_dir) / DATABASE_FILE, merge=merge, limits=limits, synchronous=synchronous
        )
    parts = urlsplit(url)
    if parts.scheme == "sqlite" and not parts.netloc and parts.path.startswith("/") and len(parts.path) > 1:
        return SqliteStore(parts.path[1:], merge=merge, limits=limits, synchronous=synchronous)
    if parts.scheme in ("postgresql", "postgres"):
        from service.store.postgres import PostgresStore  # needs the postgres extra

        return PostgresStore(url, merge=merge, limits=limits)
    raise ValueError(
        f"`database_url` must be sqlite:///<path> or postgresql://...; got scheme {parts.scheme!r}"
    )
