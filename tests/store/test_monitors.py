import dataclasses

import pytest

from service.store import (
    MonitorConfig,
    MonitorConflict,
    MonitorNotFound,
    PendingRow,
    StoreLimit,
    StoreLimits,
)
from tests.store.blobs import blob
from tests.store.conftest import make_store


def config(name="m", **kwargs) -> MonitorConfig:
    kwargs = {"n_classes": 3, "binary": False, "class_names": None, **kwargs}
    return MonitorConfig(name, **kwargs)


def test_put_monitor_creates_and_round_trips(store):
    wanted = MonitorConfig(
        "cats",
        n_classes=2,
        binary=True,
        class_names=("no", "yes"),
        bucket_s=300,
        retention_s=86400,
        label_ttl_s=3600,
        reservoir_size=50,
        output="logits_out",
        output_kind="logits",
    )
    stored, created = store.put_monitor(wanted, now=1000.5)
    assert created
    assert stored == dataclasses.replace(wanted, created_at=1000.5, updated_at=1000.5)
    assert store.get_monitor("cats") == stored
    assert store.list_monitors() == [stored]


def test_put_monitor_same_config_is_not_an_update(store):
    first, _ = store.put_monitor(config(), now=1.0)
    again, created = store.put_monitor(config(), now=2.0)
    assert (again, created) == (first, False)
    assert store.get_monitor("m").updated_at == 1.0


def test_put_monitor_updates_mutable_fields(store):
    store.put_monitor(config(), now=1.0)
    updated, created = store.put_monitor(
        config(retention_s=3600, class_names=("a", "b", "c"), label_ttl_s=60), now=5.0
    )
    assert not created
    assert (updated.created_at, updated.updated_at, updated.retention_s, updated.label_ttl_s) == (
        1.0,
        5.0,
        3600,
        60,
    )
    assert updated.class_names == ("a", "b", "c")
    assert store.get_monitor("m") == updated


@pytest.mark.parametrize(("field", "value"), [("n_classes", 4), ("binary", True), ("bucket_s", 3600)])
def test_put_monitor_refuses_to_change_an_immutable_field(store, field, value):
    store.put_monitor(config())
    with pytest.raises(MonitorConflict, match=f"`{field}` cannot change") as info:
        store.put_monitor(dataclasses.replace(config(), **{field: value}))
    assert info.value.field == field


def test_list_monitors_is_sorted_by_name(store):
    for name in ["b", "c", "a"]:
        store.put_monitor(config(name))
    assert [m.name for m in store.list_monitors()] == ["a", "b", "c"]


def test_delete_monitor_removes_all_its_data(store):
    store.put_monitor(config("m"))
    store.put_monitor(config("other"))
    for name in ["m", "other"]:
        store.write_batch(
            name,
            [(60, "s", blob(1.0))],
            pending=[PendingRow("id", 60.0, "s", "logits", "<f4", b"\0" * 12)],
        )
    assert store.delete_monitor("m")
    assert store.get_monitor("m") is None
    assert not store.delete_monitor("m")
    store.put_monitor(config("m"))  # same name again: nothing of the old one is left
    assert store.read_stats("m", 0, 10**10) == []
    assert store.segments("m") == []
    assert store.join_labels("m", ["id"], 61.0, lambda rows, labels: [], [0]).unknown == 1
    assert store.read_stats("other", 0, 10**10) == [(60, "s", blob(1.0))]


def test_unknown_monitor_raises_monitor_not_found(store):
    with pytest.raises(MonitorNotFound, match="no monitor named 'nope'"):
        store.write_batch("nope", [(0, "", blob(1.0))])
    with pytest.raises(MonitorNotFound):
        store.read_stats("nope", 0, 1)
    with pytest.raises(MonitorNotFound):
        store.join_labels("nope", ["a"], 0.0, lambda rows, labels: [], [0])
    assert store.get_monitor("nope") is None


def test_monitors_cap_refuses_one_more_but_allows_updates(db):
    store = make_store(db, limits=StoreLimits(max_monitors=2))
    store.put_monitor(config("a"))
    store.put_monitor(config("b"))
    with pytest.raises(StoreLimit, match=r"`name` exceeds max_monitors=2") as info:
        store.put_monitor(config("c"))
    assert (info.value.field, info.value.limit) == ("name", "max_monitors")
    assert [m.name for m in store.list_monitors()] == ["a", "b"]
    assert store.put_monitor(config("a", retention_s=60))[0].retention_s == 60
    store.delete_monitor("a")
    assert store.put_monitor(config("c"))[1]
    store.close()


def test_reservoir_size_cap(db):
    store = make_store(db, limits=StoreLimits(max_reservoir=100))
    with pytest.raises(StoreLimit, match=r"`reservoir_size` exceeds max_reservoir=100: got 101"):
        store.put_monitor(config(reservoir_size=101))
    assert store.list_monitors() == []
    assert store.put_monitor(config(reservoir_size=100))[1]
    store.close()


def test_set_temperature_is_stored_and_kept_across_updates(store):
    store.put_monitor(config(), now=1.0)
    fitted = store.set_temperature("m", 1.75)
    assert (fitted.temperature, store.get_monitor("m").temperature) == (1.75, 1.75)
    updated, _ = store.put_monitor(config(retention_s=3600))  # a config update keeps the fit
    assert updated.temperature == store.get_monitor("m").temperature == 1.75
    assert store.set_temperature("m", None).temperature is None
    assert store.get_monitor("m").temperature is None
    with pytest.raises(MonitorNotFound):
        store.set_temperature("nope", 1.0)
