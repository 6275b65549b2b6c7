"""Run a store's `compact` every few seconds in a background thread, off the request path."""

import logging
import threading

from service import clock
from service.store.base import MonitorStore, StoreUnavailable

logger = logging.getLogger(__name__)


class Compactor:
    """A daemon thread calling ``store.compact(clock.now())`` every `interval_s` until `stop`.

    At start it first folds the rows written since the last run into their hourly rollups
    (``store.roll_up``), so that series read ~one row per hour soon after a restart or an upgrade.

    The thread has its own database connection; compaction works in short transactions, so
    requests wait at most one of them. A locked database skips a run (logged), it does not stop
    the thread.
    """

    def __init__(self, store: MonitorStore, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"`interval_s` must be positive; got {interval_s}")
        self.store = store
        self.interval_s = interval_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xent-compactor", daemon=True)

    def start(self) -> "Compactor":
        """Start the thread; return self."""
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to stop and wait for the run in progress, if any, to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:  # rows written since the last run (or before version 6) are rolled up at start-up
            self.store.roll_up(clock.now())
        except Exception:  # (the next compaction retries)
            logger.exception("rolling up at start-up failed")
        while not self._stop.wait(self.interval_s):
            try:
                merged = self.store.compact(clock.now())
            except StoreUnavailable as error:
                logger.warning("compaction skipped: %s", error)
            except Exception:  # keep compacting later runs; the traceback goes to the log
                logger.exception("compaction failed")
            else:
                logger.debug("compaction merged %d stats rows", merged)
            self.runs += 1
