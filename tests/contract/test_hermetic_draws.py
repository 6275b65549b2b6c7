"""The contract test's draws do not depend on what else the session imported (see conftest.py).

Without the fixed constants, importing one more local module between two runs of the same
derandomised test changes the second run's draws: Hypothesis reads that module's constants
into its pool. That is how CI's whole-suite run drew other cases than ``pytest tests/contract``.
"""

import importlib
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

EXTRA = "\n".join(f"C{i} = {7_000_003 + 7919 * i}" for i in range(200))  # 200 distinctive integers


def _draws() -> list[object]:
    drawn: list[object] = []

    @settings(max_examples=300, derandomize=True, database=None)
    @given(st.one_of(st.integers(), st.floats(), st.text(max_size=6)))
    def draw(x: object) -> None:
        drawn.append(x)

    draw()
    return drawn


def test_draws_do_not_change_when_another_local_module_is_imported(tmp_path, monkeypatch):
    before = _draws()
    (tmp_path / "xent_extra_constants.py").write_text(EXTRA + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("xent_extra_constants")
    try:
        after = _draws()
    finally:
        del sys.modules["xent_extra_constants"]
    assert after == before
    distinctive = {7_000_003 + 7919 * i for i in range(200)}
    assert not distinctive.intersection(x for x in after if isinstance(x, int))
