"""Request and response models of ``POST /v1/logprobs``."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from service.core import PerplexityTotals

from .common import OPTIONS_CONFIG, RESULT_CONFIG, JsonFloat

SAMPLING_NOTE = (
    "Logprobs of sampled tokens are conditioned on the sample: the server reports the probability "
    "of the token it drew, so their top-1 accuracy and calibration describe the sampler as much as the "
    "model. Calibration is meaningful on teacher-forced logprobs (vLLM prompt_logprobs, or an echoed "
    "prompt)."
)

Count = Annotated[int, Field(ge=0, le=2**63 - 1)]  # int64: larger JSON integers arrive as floats
#: A token offset (negative: from the end), int64 as JSON integers carry it exactly.
Offset = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class LogprobsOptions(BaseModel):
    """The scalar options of a logprobs request."""

    model_config = OPTIONS_CONFIG

    context_length: Count | list[Count] | None = Field(
        default=None,
        description="Score only positions from this index on (per sequence, or one for all): the "
        "continuation after a context, as lm-evaluation-harness's `token_logprobs[ctxlen:]`. "
        "Exclusive with `ranges`.",
    )
    ranges: list[tuple[Offset | None, Offset | None]] | None = Field(
        default=None,
        description="[start, stop) positions to score per sequence, Python slice semantics (negative "
        "counts from the end, null for the end). lm-evaluation-harness's echoed scoring call "
        "(max_tokens=1) is `[ctxlen, -1]`: it drops the one generated token.",
    )
    bytes: list[Count] | None = Field(
        default=None,
        description="UTF-8 bytes of each sequence's scored text, for byte_perplexity and bits_per_byte. "
        "Default: the sum of the scored tokens' `bytes` lengths, when every one has them.",
    )
    words: list[Count] | None = Field(
        default=None, description="Words of each sequence's scored text, for word_perplexity."
    )
    use: Literal["auto", "prompt", "sampled"] = Field(
        default="auto",
        description='Which logprobs to score where a response has both: "prompt" (vLLM prompt_logprobs; '
        'also the default "auto") or "sampled" (the generated tokens\' `logprobs`).',
    )
    calibration: bool | None = Field(
        default=None,
        description="Top-1 accuracy and calibration of the top-1 token (needs top_logprobs or vLLM "
        "ranks). Default: computed whenever available; a warning says when sampled tokens are in it.",
    )
    vocab_size: Annotated[int, Field(ge=2, le=2**63 - 1)] | None = Field(
        default=None, description="Vocabulary size V: adds an upper bound to the truncated entropy."
    )
    per_sequence: bool = Field(
        default=True, description="Also return each sequence's NLL, tokens and perplexity."
    )


class LogprobsBody(LogprobsOptions):
    """Server responses carrying token logprobs, pasted as they come."""

    responses: list[dict[str, Any] | list[Any]] | None = Field(
        default=None,
        description="Each an OpenAI chat completion (`choices[i].logprobs.content[]` of `{token, "
        "logprob, bytes, top_logprobs}`), a legacy completion (`choices[i].logprobs` of `{tokens, "
        "token_logprobs, top_logprobs, text_offset}`, echoed prompts starting with null), a vLLM "
        "response with `prompt_logprobs` (on each choice, or at the top level of a chat completion), "
        "or only a choice's `logprobs` object, a `content` list or a `prompt_logprobs` list. Each "
        "choice is one sequence; a chat completion's top-level prompt_logprobs is one more.",
    )
    response: dict[str, Any] | list[Any] | None = Field(
        default=None, description="One response (or logprobs part), instead of `responses`."
    )
    prompt_token_ids: list[list[int] | None] | None = Field(
        default=None,
        description="The token ids of each prompt whose prompt_logprobs are scored, in order of "
        "appearance (vLLM's entries do not mark the realised token); null to use the response's own "
        "`prompt_token_ids`.",
    )
    texts: list[str] | None = Field(
        default=None,
        description="Each sequence's scored text: bytes and words counted as lm-evaluation-harness does "
        '(len(text.encode("utf-8")), len(re.split(r"\\s+", text))). Exclusive with `bytes`/`words`.',
    )


class LanguageModelMetrics(BaseModel):
    """Corpus metrics over the scored tokens; null where a count they need is missing or 0."""

    model_config = RESULT_CONFIG

    nll_per_token: JsonFloat | None = Field(description="Σ NLL / Σ tokens, nats (token-weighted).")
    bits_per_token: JsonFloat | None = Field(description="nll_per_token / ln 2.")
    token_perplexity: JsonFloat | None = Field(
        description="Token-weighted corpus perplexity exp(Σ NLL / Σ tokens)."
    )
    lm_eval_perplexity: JsonFloat | None = Field(
        description="lm-evaluation-harness `perplexity`: exp(-mean over sequences of the log-likelihood) "
        "= exp(Σ NLL / n_sequences), per document, not per token."
    )
    hf_mean_perplexity: JsonFloat | None = Field(
        description="Hugging Face evaluate's `mean_perplexity`: mean over sequences of exp(NLL_i / tokens_i) "
        "(sequences without tokens left out)."
    )
    byte_perplexity: JsonFloat | None = Field(
        description="lm-evaluation-harness `byte_perplexity`: exp(Σ NLL / Σ bytes)."
    )
    bits_per_byte: JsonFloat | None = Field(
        description="lm-evaluation-harness `bits_per_byte`: Σ NLL / Σ bytes / ln 2."
    )
    word_perplexity: JsonFloat | None = Field(
        description="lm-evaluation-harness `word_perplexity`: exp(Σ NLL / Σ words)."
    )
    accuracy: JsonFloat | None = Field(
        default=None, description="Scored tokens that were the top-1 token (ties count as top-1)."
    )
    top_5_accuracy: JsonFloat | None = Field(
        default=None, description="Scored tokens among the 5 most probable (sequence inputs)."
    )


class Top1Calibration(BaseModel):
    """Calibration of the top-1 token's probability against whether it was the realised token."""

    model_config = RESULT_CONFIG

    n_tokens: int = Field(description="Positions where the top-1 token is known.")
    ece: float = Field(description="15 equal-width bins (i/15, (i+1)/15], l1, weighted by tokens.")
    mce: float = Field(description="Largest |accuracy - confidence| over the 15 bins.")
    ece_equal_mass_10: float = Field(description="10 equal-mass bins (HELM's ECE), l1.")
    mean_confidence: float = Field(description="Mean top-1 probability.")
    accuracy: float = Field(description="Share of positions whose realised token was top-1.")
    teacher_forced: bool = Field(description="Every token in it was teacher-forced (no sampled tokens).")


class TruncatedEntropy(BaseModel):
    """Entropy of each position's known tokens plus one "rest" bucket holding the missing mass."""

    model_config = RESULT_CONFIG

    n_positions: int = Field(description="Positions with alternatives.")
    mean_lower_bound: float = Field(
        description="Mean over positions, nats. A LOWER bound on the true entropy: merging the unseen "
        "tokens into one bucket can only lower it."
    )
    mean_upper_bound: float | None = Field(
        description="With `vocab_size`: the rest spread evenly over the unseen tokens, an UPPER bound."
    )


class SequenceScores(BaseModel):
    """Per-sequence sums, in order of appearance."""

    model_config = RESULT_CONFIG

    path: list[str] = Field(description="Where each sequence was found in the request.")
    nll: list[JsonFloat] = Field(description="Σ NLL of the scored tokens, nats (minus the log-likelihood).")
    tokens: list[int] = Field(description="Scored tokens.")
    perplexity: list[JsonFloat] = Field(description="exp(nll / tokens); NaN without tokens.")
    outside_top: list[int] = Field(description="Tokens in range reported as -9999.0 (outside the top).")
    teacher_forced: list[bool] = Field(description="Prompt logprobs or an echoed prompt (not sampled).")


class MergeableTotals(BaseModel):
    """Additive sums: add these field by field across requests to merge corpora exactly."""

    model_config = RESULT_CONFIG

    sequences: int
    nll: JsonFloat = Field(description="Σ NLL, nats (Infinity when finite logprobs sum beyond float64).")
    tokens: int
    perplexity_sum: JsonFloat = Field(description="Σ exp(nll_i / tokens_i) over sequences with tokens.")
    sequences_with_tokens: int
    bytes: int | None
    words: int | None
    top1_hits: int | None

    @classmethod
    def of(cls, totals: PerplexityTotals) -> "MergeableTotals":
        """The answer's form of the core's additive totals."""
        return cls(
            sequences=totals.sequences,
            nll=totals.nll,
            tokens=totals.tokens,
            perplexity_sum=totals.perplexity_sum,
            sequences_with_tokens=totals.sequences_with_tokens,
            bytes=totals.bytes,
            words=totals.words,
            top1_hits=totals.hits.get(1),
        )


class LogprobsResult(BaseModel):
    """NLL, perplexities and, with alternatives, accuracy, calibration and entropy bounds."""

    model_config = RESULT_CONFIG

    n_sequences: int
    n_tokens: int = Field(description="Scored tokens: in range, with a known logprob.")
    n_outside_top: int = Field(
        description="Tokens in range whose logprob was the -9999.0 stand-in (outside the top 20): counted "
        "here, left out of every NLL (never used as a log-probability)."
    )
    n_unconditioned: int = Field(description="A prompt's first position (null): nothing to score.")
    n_teacher_forced: int = Field(description="Scored tokens from prompt logprobs or echoed prompts.")
    n_sampled: int = Field(description="Scored tokens from sampled output.")
    nll: JsonFloat = Field(description="Σ NLL of the scored tokens, nats (Infinity past float64's range).")
    nll_lower_bound: JsonFloat | None = Field(
        description="Σ NLL with each outside-the-top token at the least NLL its alternatives allow; "
        "null when there is none or one has no alternatives."
    )
    metrics: LanguageModelMetrics
    calibration: Top1Calibration | None
    entropy: TruncatedEntropy | None
    per_sequence: SequenceScores | None
    totals: MergeableTotals
    warnings: list[str] = Field(description="Conditions that limit what the numbers mean.")
    note: str = Field(default=SAMPLING_NOTE, description="The caveat on sampled tokens, always stated.")
