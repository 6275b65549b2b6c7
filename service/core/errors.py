"""The one error family the core raises for bad input."""


class InputError(ValueError):
    """An input array has the wrong shape, dtype or values.

    Parameters
    ----------
    field : str
        Name of the offending input, as the client spelled it (``"probs"``).
    reason : str
        What is wrong, phrased to follow the field name: ``"must lie in [0, 1)"``.
    index : tuple of int, optional
        Position of the first offending element (row, or row and column).
    """

    def __init__(self, field: str, reason: str, *, index: tuple[int, ...] = ()) -> None:
        self.field = field
        self.reason = reason
        self.index = tuple(int(i) for i in index)
        super().__init__(f"`{self.location}` {reason}")

    @property
    def location(self) -> str:
        """The field with the offending index, e.g. ``probs[17][3]``."""
        return self.field + "".join(f"[{i}]" for i in self.index)


class MissingDependency(ImportError):
    """A method needs an optional package that is not installed.

    Parameters
    ----------
    package : str
        The missing distribution, e.g. ``"scipy"``.
    feature : str
        What needs it, e.g. ``"isotonic regression"``.
    extra : str
        The ``xent-service`` extra that installs it.
    """

    def __init__(self, package: str, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs {package}; install it with `pip install 'xent-service[{extra}]'`")
        self.package = package
        self.feature = feature
        self.extra = extra
