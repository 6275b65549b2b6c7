"""A segment that only a language model's sums use is a segment: retention keeps it while they last."""

from service.core import PerplexitySeries
from service.store import MonitorConfig
from tests.store.blobs import blob

DAY = 86400
NOW = 100 * DAY


def _sums(nll: float, tokens: int) -> tuple:
    series = PerplexitySeries.observe([0.0], [nll], [tokens], width=60)
    return tuple(getattr(series, c)[0].item() for c in PerplexitySeries.COLUMNS)


def test_retention_forgets_a_segment_with_its_last_lm_row_only(store):
    store.put_monitor(MonitorConfig("m", n_classes=2, binary=False, class_names=None, retention_s=30 * DAY))
    old, recent = NOW - 40 * DAY, NOW - DAY
    store.write_batch("m", [(old, "clf", blob(1, 2, 3, 4))])  # expires: retention deletes a stats row
    store.add_lm_sums("m", [(recent, "chat", _sums(3.0, 2)), (old, "old-chat", _sums(1.0, 1))])
    assert store.segments("m") == ["chat", "clf", "old-chat"]
    store.compact(NOW)
    assert store.segments("m") == ["chat"]  # its LM row is within the retention
    assert [(b, s) for b, s, _ in store.read_lm_sums("m", 0, NOW)] == [(recent, "chat")]
