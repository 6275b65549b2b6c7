import pydantic
import pytest

from service.settings import Settings
from service.store import DATABASE_FILE, MonitorConfig, SqliteStore, StoreLimit, open_store
from tests.store.blobs import merge


def test_open_store_creates_sqlite_in_data_dir_with_the_settings_caps(tmp_path):
    settings = Settings(data_dir=tmp_path / "new" / "dir", max_monitors=1, max_pending_rows=7)
    store = open_store(settings, merge=merge)
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "new" / "dir" / DATABASE_FILE
    assert store.path.exists()
    assert store.limits.max_pending_rows == 7
    store.put_monitor(MonitorConfig("a", n_classes=2, binary=False, class_names=None))
    with pytest.raises(StoreLimit, match="max_monitors=1"):
        store.put_monitor(MonitorConfig("b", n_classes=2, binary=False, class_names=None))
    store.close()


def test_open_store_takes_a_sqlite_url(tmp_path):
    path = tmp_path / "elsewhere.db"
    store = open_store(Settings(data_dir=tmp_path / "unused", database_url=f"sqlite:///{path}"), merge=merge)
    assert store.path == path
    assert path.exists()
    assert not (tmp_path / "unused").exists()
    store.close()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mysql://host/db", "must be sqlite:///<path> or postgresql://...; got scheme 'mysql'"),
        ("sqlite://", "must be sqlite:///<path>"),
    ],
)
def test_open_store_rejects_other_urls_clearly(tmp_path, url, match):
    with pytest.raises(ValueError, match=match):
        open_store(Settings(data_dir=tmp_path, database_url=url), merge=merge)


@pytest.mark.parametrize(
    "field", ["max_monitors", "max_segments", "max_pending_rows", "max_reservoir", "compaction_interval_s"]
)
def test_store_settings_refuse_negative_values(field):
    with pytest.raises(pydantic.ValidationError, match=field):
        Settings(**{field: -1})


def test_store_settings_read_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("XENT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("XENT_MAX_SEGMENTS", "12")
    settings = Settings()
    assert (settings.data_dir, settings.max_segments, settings.database_url) == (tmp_path, 12, None)
