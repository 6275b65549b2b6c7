"""Request and response models of a monitor's language-model routes (``…/sequences``, ``…/perplexity``)."""

from typing import Annotated, Any

from pydantic import BaseModel, Field

from .common import RESULT_CONFIG
from .logprobs import LanguageModelMetrics, LogprobsBody


class SequencesBody(LogprobsBody):
    """A /v1/logprobs body, or B×T×K sequences as /v1/cross-entropy takes them; times and a segment."""

    logits: list[Any] | None = Field(
        default=None,
        description="B×T×K token logits (instead of `responses`), with B×T `labels`, as /v1/cross-entropy.",
    )
    probs: list[Any] | None = Field(default=None, description="B×T×K token probabilities, as `logits`.")
    labels: list[list[int]] | None = Field(default=None, description="B×T token ids (with `logits`/`probs`).")
    mask: list[list[bool]] | None = Field(default=None, description="B×T: positions to score.")
    ignore_index: int | None = Field(
        default=None, description="Label value of unscored positions (-100 as PyTorch)."
    )

    timestamps: list[float] | None = Field(
        default=None,
        description="Epoch seconds, one per scored sequence (default: the server's clock); within the "
        "monitor's retention and at most 5 minutes ahead.",
    )
    segment: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="A tag such as the model version (bounded cardinality)."
    )


class SequencesResult(BaseModel):
    """What the write added; sent only after it was committed."""

    model_config = RESULT_CONFIG

    monitor: str
    n_sequences: int = Field(description="Sequences added.")
    n_tokens: int = Field(description="Scored tokens added (those in the NLL).")
    buckets: int = Field(description="Time buckets the write touched.")
    segment: str


class PerplexityPoint(LanguageModelMetrics):
    """One step of the series: the metrics of every sequence in its buckets, as /v1/logprobs on them."""

    start: int = Field(description="Epoch seconds (inclusive).")
    end: int = Field(description="Epoch seconds (exclusive).")
    n_sequences: int
    n_tokens: int
    nll: float = Field(description="Σ NLL (nats).")


class MonitorLanguageModel(LanguageModelMetrics):
    """Every sequence a monitor holds (within its retention): its sums and /v1/logprobs's metrics on them."""

    n_sequences: int
    n_tokens: int
    nll: float = Field(description="Σ NLL (nats).")


class PerplexityResult(BaseModel):
    """Perplexity over time; each point (and `total`) equals /v1/logprobs's `metrics` on its sequences."""

    model_config = RESULT_CONFIG

    monitor: str
    start: int
    end: int
    step: int
    segment: str | None
    total: PerplexityPoint = Field(description="The whole range as one point.")
    points: list[PerplexityPoint]
