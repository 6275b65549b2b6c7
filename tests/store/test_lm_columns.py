"""The `lm_sums` columns are the sum fields of `PerplexitySeries`: one source, and the shipped schema kept.

A new sum field of the series changes the statements at once (they are derived from the fields);
the schema of a database migrated before must then change by a migration of its own, which the
first test asks for by pinning the columns that migration 5 shipped.
"""

import sqlite3

import numpy as np
import pytest

from service.core import PerplexitySeries
from service.monitors.lm import read_series, sequence_rows
from service.store import MonitorConfig, StoreLimits
from service.store.sql import ddl
from tests.store.conftest import make_store

#: The columns and types of `lm_sums` as migration 5 created them (shipped: never edit).
SHIPPED = [
    ("sequences", "BIGINT"),
    ("nll", "DOUBLE PRECISION"),
    ("tokens", "BIGINT"),
    ("perplexity_sum", "DOUBLE PRECISION"),
    ("sequences_with_tokens", "BIGINT"),
    ("bytes", "BIGINT"),
    ("with_bytes", "BIGINT"),
    ("words", "BIGINT"),
    ("with_words", "BIGINT"),
    ("hits", "BIGINT"),
    ("with_hits", "BIGINT"),
]


def test_migration_5_created_the_series_sum_fields_with_their_types():
    with sqlite3.connect(":memory:") as connection:
        for statement in ddl(5, "sqlite"):
            connection.execute(statement.replace(" REFERENCES monitors (name) ON DELETE CASCADE", ""))
        columns = [(row[1], row[2]) for row in connection.execute("PRAGMA table_info(lm_sums)")]
    assert columns[:3] == [("monitor", "TEXT"), ("segment", "TEXT"), ("bucket_start", "BIGINT")]
    assert columns[3:] == SHIPPED
    assert [name for name, _ in SHIPPED] == list(PerplexitySeries.COLUMNS)
    floats = [name for name, kind in SHIPPED if kind == "DOUBLE PRECISION"]
    assert floats == list(PerplexitySeries.FLOAT_COLUMNS)
    series = PerplexitySeries.observe([0.0], [1.5], [2], width=60, bytes=[3])
    assert [getattr(series, name).dtype for name in PerplexitySeries.COLUMNS] == [
        np.float64 if name in floats else np.int64 for name in PerplexitySeries.COLUMNS
    ]


def test_rows_written_and_read_back_are_the_series(tmp_path, rng):
    store = make_store(tmp_path / "m.sqlite3", limits=StoreLimits())
    try:
        config, _ = store.put_monitor(MonitorConfig("lm", n_classes=2, binary=False, class_names=None))
        now = 10**9
        times = now - rng.uniform(0, 3600, size=40)
        nll = rng.uniform(0, 30, size=40)
        tokens = rng.integers(0, 12, size=40)
        words = rng.integers(1, 5, size=40)
        series, _, rows = sequence_rows(config, nll, tokens, times=times.tolist(), now=now, words=words)
        store.add_lm_sums("lm", rows)
        back = read_series(store, config, 0, 2 * now, config.bucket_s, None)
        for name in ("start", *PerplexitySeries.COLUMNS):
            np.testing.assert_array_equal(getattr(back, name), getattr(series, name), err_msg=name)
        assert back.totals().nll == pytest.approx(nll.sum(), rel=1e-12)
        assert back.totals().tokens == tokens.sum() and back.totals().words == words.sum()
    finally:
        store.close()
