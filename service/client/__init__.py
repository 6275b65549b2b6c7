"""Python clients of the Xent service, on httpx.

>>> from service.client import XentClient
>>> with XentClient("http://127.0.0.1:8000") as xent:  # doctest: +SKIP
...     xent.cross_entropy(logits=logits, labels=labels).loss

Arrays go out in their own dtype, as Open Inference Protocol tensor objects (JSON) or,
for large requests, as the OIP binary tensor extension; answers come back as the
service's own Pydantic result models; errors are raised as :class:`XentAPIError`
carrying the RFC 9457 problem details.
"""

from service.api.schemas import CrossEntropyResult, DivergenceResult

from .clients import AsyncXentClient, XentClient
from .endpoints import Endpoint
from .errors import XentAPIError, XentConnectionError, XentError, XentTimeoutError, problem_of
from .retry import Retry

__all__ = [
    "AsyncXentClient",
    "CrossEntropyResult",
    "DivergenceResult",
    "Endpoint",
    "Retry",
    "XentAPIError",
    "XentClient",
    "XentConnectionError",
    "XentError",
    "XentTimeoutError",
    "problem_of",
]
