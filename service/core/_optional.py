"""Optional dependencies, imported on first use so the core runs without them."""

import importlib
from types import ModuleType

from .errors import MissingDependency


def scipy_optimize(feature: str) -> ModuleType:
    """``scipy.optimize``, or :class:`MissingDependency` naming `feature` and the ``maps`` extra."""
    try:
        return importlib.import_module("scipy.optimize")
    except ImportError:
        raise MissingDependency("scipy", feature, "maps") from None
