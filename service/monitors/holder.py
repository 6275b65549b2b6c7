"""The app's monitor store: opened at start-up (or first use), compacted in the background, closed at exit."""

import logging
import threading
from collections.abc import Sequence

from service.core import merge_stats
from service.core.cancel import Cancelled
from service.store import Compactor, MonitorStore, StoreSettings, StoreUnavailable, open_store
from service.store.base import OnSettled
from service.store.sqlstore import SqlStore

from .settle import Settler, settle_rows
from .sums_cache import rollup_digest

logger = logging.getLogger(__name__)


def merge_blobs(blobs: Sequence[bytes]) -> bytes:
    """Merge serialised statistics into one blob (the store's compaction calls this)."""
    return merge_stats(blobs).to_bytes()


class StoreHolder:
    """Opens the store once and hands it out; retries the opening while it fails.

    A data directory that cannot be opened does not stop the server from starting (scoring
    needs no store): the monitor routes answer 503 with the reason until it can be opened.
    """

    def __init__(
        self,
        settings: StoreSettings,
        *,
        compaction_interval_s: float | None = None,
        on_settled: OnSettled | None = None,
    ) -> None:
        self.settings = settings
        self.compaction_interval_s = compaction_interval_s
        self.on_settled = on_settled
        self._store: MonitorStore | None = None
        self._compactor: Compactor | None = None
        self._settler: Settler | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def current(self) -> MonitorStore | None:
        """The store if it is open (None: not yet, or closed); never opens it."""
        return self._store

    def get(self) -> MonitorStore:
        """The open store, opening it first if needed; `StoreUnavailable` if it cannot be opened."""
        store = self._store
        if store is not None:
            return store
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the server is shutting down")
            if self._store is None:
                try:
                    self._store = open_store(self.settings, merge=merge_blobs)
                    if isinstance(self._store, SqlStore):  # rollups keep their default-binning sums
                        self._store.digest = rollup_digest
                        self._store.settle_rows = settle_rows  # small writes' raw rows (settle)
                        self._store.on_settled = self.on_settled
                        soon = self._store.settle_soon if self._store.inline_writes else None
                        self._settler = Settler(self._store.settle, soon).start()
                except (OSError, ValueError) as error:
                    raise StoreUnavailable(str(error)) from error
                if self.compaction_interval_s:
                    self._compactor = Compactor(self._store, self.compaction_interval_s).start()
            return self._store

    def open(self) -> None:
        """Open the store now (start-up); a failure is logged, and retried on first use."""
        with self._lock:
            self._closed = False  # an app may be started again after a shutdown (tests do)
        try:
            self.get()
        except StoreUnavailable as error:
            logger.warning("monitor store not opened at start-up: %s", error)

    def settle_now(self) -> None:
        """Settle every raw stats row now (before a scrape: the counters then count every acknowledged write).

        A store that cannot write now (locked, full, closing) leaves them to the settler; logged.
        """
        store = self._store
        if not isinstance(store, SqlStore):
            return
        try:
            store.settle_all()
        except (StoreUnavailable, Cancelled) as error:
            logger.warning("settling raw stats rows before a scrape skipped: %s", error)

    def wake_settler(self) -> None:
        """A raw stats row was committed: have it settled soon (`settle.Settler`)."""
        if self._settler is not None:
            self._settler.wake()

    def close(self) -> None:
        """Stop the settling and compaction threads and close the store."""
        with self._lock:
            self._closed = True
            compactor, settler, store = self._compactor, self._settler, self._store
            self._compactor = self._settler = self._store = None
        if settler is not None:
            settler.stop(timeout=30)
        if compactor is not None:
            compactor.stop(timeout=30)
        if store is not None:
            store.close()
