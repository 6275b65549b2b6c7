"""Monitor configs as this process last read them: a batch is prepared without reading one again.

A cached config is never trusted alone. The write made with it passes it to the store as
``expect``, and the store compares it with the row it reads (and locks) inside the write's
transaction: another process or replica that changed or re-created the monitor since makes that
write raise `ConfigChanged` with the stored config, nothing written, and the caller prepares
the batch again with that one. An input error found with a cached config is checked the same
way (:meth:`ConfigCache.fresh`) before it is answered.
"""

from service.store import MonitorConfig, MonitorNotFound, MonitorStore


class ConfigCache:
    """Monitor configs by name, for one store (another store empties it)."""

    def __init__(self) -> None:
        self._store: MonitorStore | None = None
        self._configs: dict[str, MonitorConfig] = {}
        self._segments: set[tuple[str, float, str]] = set()

    def knows_segment(self, store: MonitorStore, config: MonitorConfig, segment: str) -> bool:
        """Whether this process wrote to `segment` of the monitor `config` is of (created then) before."""
        return store is self._store and (config.name, config.created_at, segment) in self._segments

    def know_segment(self, store: MonitorStore, config: MonitorConfig, segment: str) -> None:
        """A write to `segment` of the monitor `config` is of committed (its segment row with it)."""
        if store is self._store:
            self._segments.add((config.name, config.created_at, segment))

    def cached(self, store: MonitorStore, name: str) -> MonitorConfig | None:
        """The cached config of `name` in `store`, or None (nothing is read)."""
        return self._configs.get(name) if store is self._store else None

    def get(self, store: MonitorStore, name: str) -> tuple[MonitorConfig, bool]:
        """The config of `name` and whether it came from the cache; `MonitorNotFound` if there is none."""
        if store is self._store:
            config = self._configs.get(name)
            if config is not None:
                return config, True
        return self.fresh(store, name), False

    def fresh(self, store: MonitorStore, name: str) -> MonitorConfig:
        """The stored config of `name`, read now and cached; `MonitorNotFound` if there is none."""
        config = store.get_monitor(name)
        self.update(store, name, config)
        if config is None:
            raise MonitorNotFound(name)
        return config

    def update(self, store: MonitorStore, name: str, config: MonitorConfig | None) -> None:
        """Cache `config` as the one of `name` in `store` (None: forget `name`)."""
        if store is not self._store:
            self._store, self._configs, self._segments = store, {}, set()
        if config is None:
            self._configs.pop(name, None)
        else:
            self._configs[name] = config
