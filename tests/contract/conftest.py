"""The contract test's draws, and the server's answers to them, are the test's alone.

Hypothesis (≥ 6.131) mixes into its draws constants it reads from the source of every
*local* module in ``sys.modules`` at the time. In ``pytest tests/contract`` those are the
contract test's modules and the service; in the whole suite, every test module and what
earlier tests imported. The same derandomised test then drew other cases there: CI's
whole-suite run met refusals and 500s that ``pytest tests/contract`` never showed.

Here the local constants are fixed to those of the service's own source (``service/**/*.py``),
read from the files, so what else the session imported no longer matters, and those constants
(limits, edges, magic numbers) still steer the draws. (The draws also follow str hashing:
``make test`` fixes ``PYTHONHASHSEED``. A residue of a few repairs in 20,953 cases still differs
between the whole suite and this folder alone; docs/robustness.md.)
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis.internal.conjecture import providers
from hypothesis.internal.constants_ast import Constants, _constants_from_source

from service import clock

SERVICE = Path(__file__).resolve().parents[2] / "service"
#: The server's time during the contract test: 2026-12-01T00:00:00Z.
NOW = 1_796_083_200.0


def service_constants() -> Constants:
    """The constants Hypothesis would collect from the service's modules, in a fixed order."""
    constants = Constants()
    for path in sorted(SERVICE.rglob("*.py")):
        source = path.read_bytes()
        if len(source) <= 512 * 1024:  # Hypothesis' own limit per file
            constants |= _constants_from_source(source, limit=True)
    return constants


@pytest.fixture(autouse=True, scope="package")
def hermetic_constants() -> Iterator[None]:
    fixed = service_constants()
    original = providers._get_local_constants
    providers._get_local_constants = lambda: fixed
    providers.CONSTANTS_CACHE.cache.clear()  # the pools of permitted constants, per choice type
    yield
    providers._get_local_constants = original
    providers.CONSTANTS_CACHE.cache.clear()


@pytest.fixture(autouse=True, scope="package")
def fixed_clock() -> Iterator[None]:
    original = clock.now
    clock.now = lambda: NOW
    yield
    clock.now = original
