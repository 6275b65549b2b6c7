"""Pydantic request/response models: they are the OpenAPI document.

Request models describe bodies for the docs and validate the small option
fields; large arrays are decoded by :mod:`service.api.formats.arrays`, not here.
"""

from .common import JsonFloat, ProblemDetails, Tensor
from .cross_entropy import (
    CrossEntropyBody,
    CrossEntropyConvention,
    CrossEntropyOptions,
    CrossEntropyResult,
)
from .divergence import DivergenceBody, DivergenceConvention, DivergenceOptions, DivergenceResult

__all__ = [
    "CrossEntropyBody",
    "CrossEntropyConvention",
    "CrossEntropyOptions",
    "CrossEntropyResult",
    "DivergenceBody",
    "DivergenceConvention",
    "DivergenceOptions",
    "DivergenceResult",
    "JsonFloat",
    "ProblemDetails",
    "Tensor",
]
