"""NumPy's error state set in each request's context, so that NumPy's reads of it are cached.

NumPy (2.x) keeps its error state (what ``np.errstate`` changes) in a context variable, read by
every ufunc call. CPython caches a context variable's value per thread and context version only
when the variable is *found* in the context: one never set there (NumPy's, unless the code set
it) is looked up in the context's mapping on every read and not found, each time. Once a
request's context holds other variables (its deadline), those failed lookups walk the mapping: in
one callgrind run a default calibration request spent ~80,000 instructions in them, where the
essential-work server (an empty context) spent ~11,000; holding the variable saved 37,000-56,000
instructions a request (2026-12-07, three runs; the figure varies with where the variables' hashes
fall, i.e. with address-space randomisation).

Setting the variable to its current value changes nothing NumPy does, and afterwards each read
finds it: cached until the context next changes. :meth:`ScoringApp.__call__
<service.api.middleware.dispatch.ScoringApp.__call__>` does it once per request (~0.2 µs), so the
worker threads a request starts (copies of its context) find it too.

``_extobj_contextvar`` is NumPy's private name for the variable; ``tests/api/test_numpy_state.py``
fails when a NumPy upgrade renames it or stops reading it.
"""

from contextvars import ContextVar
from typing import Any

from numpy._core.umath import _extobj_contextvar

#: NumPy's error-state variable; ``NUMPY_ERRSTATE.set(NUMPY_ERRSTATE.get())`` holds it in the
#: current context (inline where it is done: a function around it would be one more call a request).
NUMPY_ERRSTATE: ContextVar[Any] = _extobj_contextvar
