"""Request and response models of ``/v1/temperature``, ``/v1/recalibrate`` and ``/v1/apply``."""

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from .common import (
    OPTIONS_CONFIG,
    RESULT_CONFIG,
    Base,
    ClassVocabulary,
    FloatArrayField,
    IntArrayField,
    JsonFloat,
    ProbabilityOptions,
    Tensor,
)
from .recalibration_maps import Method, Temperature
from .recalibration_maps import Parameters as Parameters  # public here too (routes import it from here)
from .recalibration_maps import TemperatureParameters as TemperatureParameters

Reason = Literal["optimum", "separable", "uninformative", "constant_logits", "max_iter"]


class HoldoutValidation(BaseModel):
    """Fit on a random part of the batch and score the rest."""

    model_config = OPTIONS_CONFIG

    holdout: Annotated[float, Field(gt=0, lt=1)] = Field(
        description="Fraction of samples held out of the fit and scored (rounded, at least 1 each side)."
    )
    # numpy.random.default_rng takes non-negative seeds (a negative one was a 500), as `bootstrap`'s
    seed: Annotated[int, Field(ge=0, lt=2**63)] = Field(
        default=0, description="Seed of the random split (numpy.random.default_rng)."
    )


class FoldsValidation(BaseModel):
    """k-fold cross-fitting: each fold is recalibrated by a fit on the other folds."""

    model_config = OPTIONS_CONFIG

    folds: Annotated[int, Field(ge=2, le=100)] = Field(description="Number of folds k (≤ N).")
    seed: Annotated[int, Field(ge=0, lt=2**63)] = Field(
        default=0, description="Seed of the random fold assignment (numpy.random.default_rng)."
    )


class FitOptions(ProbabilityOptions, ClassVocabulary):
    """Options shared by the fitting endpoints."""

    return_probs: bool = Field(
        default=False,
        description="Also return the recalibrated probabilities of the fitting batch (binary: the "
        "positive-class probability per sample).",
    )
    binary_data_output: bool = Field(
        default=False,
        description="With `return_probs`, send the recalibrated `probs` as a raw binary tensor (OIP "
        "binary extension, application/octet-stream: the JSON result with `probs` null and the "
        "tensor described in `outputs`, then its bytes) instead of a JSON list.",
    )
    validation: HoldoutValidation | FoldsValidation | None = Field(
        default=None,
        description='Out-of-sample check: {"holdout": 0.2, "seed": 0} or {"folds": 5, "seed": 0}. '
        "Reports before/after metrics on samples the fit did not see.",
    )
    ignore_index: int | None = Field(
        default=None,
        description="Samples whose label equals this value are dropped before anything is computed "
        "and counted in `n_ignored` (PyTorch uses -100). Hard labels only.",
    )


class TemperatureOptions(FitOptions):
    """The scalar options of a temperature fit."""

    rtol: Annotated[float, Field(gt=0, le=1e-2)] = Field(
        default=1e-10,
        description="Stop when the Newton step |L'(β)/L''(β)| ≤ rtol·β (β = 1/T): T is then within "
        "about rtol relative of the exact optimum.",
    )
    max_iter: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=100, description="Most Newton iterations (passes over the data)."
    )


_PREDICTIONS = {
    "logits": "N×K logits (softmax), or a length-N vector of positive-class logits (sigmoid); B×T×K "
    "token logits with B×T `labels` (temperature only: one T over every scored token).",
    "probs": "N×K probabilities, or a length-N vector of positive-class probabilities. They are "
    "turned into logits as log(max(p, eps)) — softmax(log p) = p, so T = 1 returns them unchanged.",
    "labels": "N true class indices in [0, K) (binary: 0 or 1); with `classes`, names from it. B×T "
    "token ids for B×T×K logits (`ignore_index` marks padding).",
    "mask": "B×T×K logits only: B×T, 1 where a position is fitted, 0 elsewhere (with `ignore_index`, "
    "-100 as PyTorch, for padding labels).",
    "targets": "Soft labels: N×K rows summing to 1, or a length-N vector of positive-class "
    "probabilities (binary).",
    "scores": "Raw classifier scores (decision_function outputs), any finite reals: a length-N vector "
    "(binary: the positive class's score) or N×K with K ≥ 3. Methods isotonic, sigmoid and platt (binary: "
    "σ(a·s + b) on the scores as sent, as on logits). Isotonic: one "
    "IsotonicRegression(out_of_bounds='clip') per class on its score, rows divided by their sum (all 0: "
    "uniform), as sklearn CalibratedClassifierCV(method='isotonic'), sample_weight as its fit takes it "
    "(weight-0 samples left out). `before` reads them as logits.",
}


class TemperatureBody(TemperatureOptions):
    """Predictions (exactly one of `logits`, `probs`) and truth (exactly one of `labels`, `targets`)."""

    logits: FloatArrayField | None = Field(default=None, description=_PREDICTIONS["logits"])
    probs: FloatArrayField | None = Field(default=None, description=_PREDICTIONS["probs"])
    labels: IntArrayField | None = Field(default=None, description=_PREDICTIONS["labels"])
    mask: list[list[int]] | Tensor | None = Field(default=None, description=_PREDICTIONS["mask"])
    targets: FloatArrayField | None = Field(default=None, description=_PREDICTIONS["targets"])
    sample_weight: FloatArrayField | None = Field(
        default=None,
        description="N non-negative per-sample weights s (scikit-learn's sample_weight): every fit "
        "minimises the weighted NLL Σ s·NLL / Σ s (Platt: N₊, N₋ of target_smoothing are sums of "
        "weights; isotonic: weighted pool-adjacent-violators; histogram: weighted bin means), and "
        "every reported metric (before, after, validation) is s-weighted. Integer weights equal "
        "repeated rows, zero weights dropped rows; all zero is a 422. With ignore_index, the weights "
        "of dropped rows go too.",
    )


class RecalibrateOptions(FitOptions):
    """The scalar options of /v1/recalibrate: the method, and the options of some methods."""

    method: Method = Field(
        description="temperature: 1 parameter, any K (the default choice). vector: 2K, per-class scale "
        "and bias. matrix: K² + K, for K ≤ 50, with regularisation. platt: σ(a·s + b), binary. "
        "beta: σ(c + a ln q − b ln(1 − q)), binary. isotonic: monotone knots, binary or one-vs-rest. "
        "histogram: equal-width bins, binary or one-vs-rest. sigmoid: raw `scores` only, Platt per class "
        "with smoothed targets, one-vs-rest (sklearn CalibratedClassifierCV(method='sigmoid'))."
    )
    l2: Annotated[float, Field(ge=0)] = Field(
        default=0.0,
        description="vector: l2·(mean (scale − 1)² + mean bias²); matrix: l2·mean (W − I)². Added to the "
        "fitted objective, not to the reported NLL.",
    )
    off_diagonal: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="matrix: Kull et al.'s ODIR λ·mean over i≠j of W_ij²."
    )
    bias_l2: Annotated[float, Field(ge=0)] = Field(default=0.0, description="matrix: μ·mean b².")
    target_smoothing: bool = Field(
        default=False,
        description="platt: Platt's targets (N₊ + 1)/(N₊ + 2) and 1/(N₋ + 2) (sklearn's sigmoid method); "
        "hard labels only.",
    )
    n_bins: Annotated[int, Field(ge=1, le=10_000)] = Field(default=15, description="histogram: bins.")
    rtol: Annotated[float, Field(gt=0, le=1e-2)] = Field(
        default=1e-10, description="temperature: as /v1/temperature."
    )
    max_iter: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=200,
        description="Most iterations of an iterative fit (temperature: Newton; vector, matrix, platt, "
        "beta: L-BFGS-B). Reaching it gives converged: false with the optimiser's message.",
    )


class RecalibrateBody(RecalibrateOptions):
    """A method, predictions (exactly one of `logits`, `probs`) and truth (one of `labels`, `targets`)."""

    logits: FloatArrayField | None = Field(default=None, description=_PREDICTIONS["logits"])
    probs: FloatArrayField | None = Field(default=None, description=_PREDICTIONS["probs"])
    scores: FloatArrayField | None = Field(default=None, description=_PREDICTIONS["scores"])
    labels: IntArrayField | None = Field(default=None, description=_PREDICTIONS["labels"])
    mask: list[list[int]] | Tensor | None = Field(default=None, description=_PREDICTIONS["mask"])
    targets: FloatArrayField | None = Field(default=None, description=_PREDICTIONS["targets"])
    sample_weight: FloatArrayField | None = Field(
        default=None,
        description="N non-negative per-sample weights s (scikit-learn's sample_weight): every fit "
        "minimises the weighted NLL Σ s·NLL / Σ s (Platt: N₊, N₋ of target_smoothing are sums of "
        "weights; isotonic: weighted pool-adjacent-violators; histogram: weighted bin means), and "
        "every reported metric (before, after, validation) is s-weighted. Integer weights equal "
        "repeated rows, zero weights dropped rows; all zero is a 422. With ignore_index, the weights "
        "of dropped rows go too.",
    )


class Metrics(BaseModel):
    """Scores of a set of predictions (means over samples; Σ s·x / Σ s with `sample_weight`)."""

    model_config = RESULT_CONFIG

    nll: JsonFloat = Field(description="Mean negative log-likelihood in `unit`.")
    ece: float = Field(
        description="Top-label ECE: 15 equal-width bins (b/15, (b+1)/15], Σ (n_b/N)|acc_b − conf_b| "
        "(Guo et al. 2017); with soft targets a sample's accuracy is t[argmax p]."
    )
    brier: float = Field(
        description="Mean Σ_c (p_c − t_c)² over classes, halved for K = 2 (sklearn's brier_score_loss)."
    )
    accuracy: float = Field(description="Mean t[argmax p] (hard labels: top-1 accuracy).")


class ValidationReport(BaseModel):
    """Before/after metrics on samples the fit did not see."""

    model_config = RESULT_CONFIG

    scheme: Literal["holdout", "folds"] = Field(description="How samples were held out.")
    seed: int = Field(description="Seed of the split.")
    n_fit: int = Field(description="Samples in each fit (holdout) or in the largest fold's fit.")
    n_eval: int = Field(description="Samples scored: the held-out part, or all N out of fold.")
    parameters: list[dict[str, object]] = Field(
        description="The parameters fitted on each training part (one per fold)."
    )
    before: Metrics = Field(description="The given predictions on the scored samples.")
    after: Metrics = Field(description="Out-of-sample recalibrated predictions on the same samples.")


class RecalibrationConvention(BaseModel):
    """Exactly how the numbers were computed."""

    model_config = RESULT_CONFIG

    input: Literal["logits", "probs", "scores"] = Field(description="Which prediction field was sent.")
    form: Literal["categorical", "binary", "sequence"] = Field(
        description="N×K, positive-class vector, or B×T×K token sequences (fitted as the N×K rows of "
        "their scored positions)."
    )
    truth: Literal["labels", "targets"] = Field(description="Hard labels or soft targets.")
    dtype: Literal["float32", "float64"] = Field(description="Precision of the input.")
    base: Base = Field(description="Logarithm base of every reported NLL.")
    unit: Literal["nats", "bits", "hartleys"] = Field(description="Unit implied by `base`.")
    eps: float = Field(description="Floor applied to probabilities before the log (0: none).")
    n_clipped: int = Field(description="How many probabilities were raised to `eps`.")
    tolerance: float = Field(description="Row-sum tolerance applied to probabilities and targets.")
    n_normalized: int = Field(description="Rows divided by their sum (normalize: true).")
    ece_bins: int = Field(description="Equal-width bins of the top-label ECE.")
    ignore_index: int | None = Field(default=None, description="Label value dropped, if any.")
    sample_weight: bool = Field(
        default=False,
        description="Whether per-sample weights were applied: to the fit's objective and to every "
        "reported metric (before, after, validation: Σ s·x / Σ s).",
    )
    classes: list[int] | list[str] | None = Field(default=None, description="The class vocabulary, as sent.")
    pos_label: int | str | None = Field(
        default=None, description="The positive class of binary input, as sent."
    )
    matches: str = Field(description="The peer implementation the fit agrees with.")


class SequenceFit(BaseModel):
    """B×T×K token sequences: what was fitted, per sequence."""

    model_config = RESULT_CONFIG

    shape: list[int] = Field(description="[B, T, K] as sent.")
    n_sequences: int = Field(description="B.")
    tokens: list[int] = Field(
        description="Scored positions per sequence (inside `mask`, not `ignore_index`)."
    )
    n_ignored: int = Field(description="Positions left out by `mask` or `ignore_index`.")


class TemperatureResult(BaseModel):
    """The fitted temperature, the fit's diagnostics and before/after metrics."""

    model_config = RESULT_CONFIG

    temperature: JsonFloat = Field(
        description='Fitted T: "Infinity" when the optimum is at T → ∞ (reason uninformative), 0 when '
        "at T → 0 (reason separable), 1 for constant logits."
    )
    converged: bool = Field(description="True only when an interior optimum was found to `rtol`.")
    reason: Reason = Field(
        description="optimum: converged. separable: every sample's truth is on its arg-max, the NLL "
        "falls as T → 0. uninformative: dNLL/dβ ≥ 0 at β = 1/T = 0, the NLL falls as T → ∞ "
        "(e.g. all wrong). constant_logits: every row constant, every T gives the same NLL. "
        "max_iter: ran out of iterations; the last iterate is returned."
    )
    iterations: int = Field(description="Newton iterations, each one pass over the data.")
    gradient: float = Field(description="dNLL/dT (nats) at the returned T: 0 at the optimum.")
    n: int = Field(description="Samples fitted.")
    n_ignored: int = Field(default=0, description="Samples dropped for their label `ignore_index`.")
    before: Metrics = Field(description="The predictions as sent.")
    after: Metrics = Field(description="The predictions at the fitted temperature.")
    parameters: TemperatureParameters = Field(description="Send to /v1/apply to recalibrate new predictions.")
    probs: list[list[float]] | list[float] | None = Field(
        default=None, description="Recalibrated probabilities (return_probs: true)."
    )
    validation: ValidationReport | None = Field(default=None, description="Out-of-sample check, if asked.")
    sequences: SequenceFit | None = Field(
        default=None,
        exclude_if=lambda value: value is None,  # present only for B×T×K inputs
        description="B×T×K inputs only: the shape and token counts.",
    )
    convention: RecalibrationConvention


class RecalibrateResult(BaseModel):
    """Fitted parameters of the chosen map, the fit's diagnostics and before/after metrics."""

    model_config = RESULT_CONFIG

    method: Method = Field(description="The map fitted.")
    parameters: Parameters = Field(description="Plain JSON: send to /v1/apply, or apply it yourself.")
    converged: bool = Field(
        description="The optimiser met its tolerance, or its line search found no lower loss in float64 "
        "with the projected gradient ≤ √ε·max(1, |loss|) (the message says which; closed-form fits: true)."
    )
    iterations: int = Field(description="Optimiser iterations (closed-form fits: 1).")
    message: str = Field(description="The optimiser's account, or the temperature fit's `reason`.")
    n: int = Field(description="Samples fitted.")
    n_ignored: int = Field(default=0, description="Samples dropped for their label `ignore_index`.")
    before: Metrics = Field(description="The predictions as sent.")
    after: Metrics = Field(description="The recalibrated predictions (exactly what /v1/apply returns).")
    probs: list[list[float]] | list[float] | None = Field(
        default=None, description="Recalibrated probabilities (return_probs: true)."
    )
    validation: ValidationReport | None = Field(default=None, description="Out-of-sample check, if asked.")
    sequences: SequenceFit | None = Field(
        default=None,
        exclude_if=lambda value: value is None,  # present only for B×T×K inputs
        description="B×T×K inputs only: the shape and token counts.",
    )
    convention: RecalibrationConvention


class ApplyOptions(ProbabilityOptions, ClassVocabulary):
    """The scalar options of an apply request."""

    parameters: Parameters | None = Field(
        default=None,
        description="A parameter set exactly as /v1/temperature or /v1/recalibrate returned it.",
    )
    temperature: Temperature | None = Field(
        default=None, description="A bare temperature T ≥ 0 (instead of `parameters`)."
    )
    binary_data_output: bool = Field(
        default=False,
        description="Send the recalibrated `probs` as a raw binary tensor (OIP binary extension, "
        "application/octet-stream: the JSON result with `probs` null and the tensor described in "
        "`outputs`, then its bytes) instead of a JSON list.",
    )
    ignore_index: int | None = Field(
        default=None,
        description="B×T×K sequence inputs only: the label value of positions left out of the metrics "
        "(PyTorch uses -100).",
    )


class ApplyBody(ApplyOptions):
    """Parameters (or a bare temperature), predictions, and optionally the truth to score them."""

    logits: FloatArrayField | None = Field(default=None, description=_PREDICTIONS["logits"])
    probs: FloatArrayField | None = Field(default=None, description=_PREDICTIONS["probs"])
    scores: FloatArrayField | None = Field(default=None, description=_PREDICTIONS["scores"])
    labels: IntArrayField | None = Field(
        default=None, description="Optional: " + _PREDICTIONS["labels"] + " Scores the output."
    )
    mask: list[list[int]] | Tensor | None = Field(default=None, description=_PREDICTIONS["mask"])
    targets: FloatArrayField | None = Field(
        default=None, description="Optional: " + _PREDICTIONS["targets"] + " Scores the output."
    )
    sample_weight: FloatArrayField | None = Field(
        default=None, description="Optional, with the truth: per-sample weights of the metrics, as a fit's."
    )


class ApplyResult(BaseModel):
    """Recalibrated probabilities, and their metrics when the truth was sent."""

    model_config = RESULT_CONFIG

    n: int = Field(description="Samples recalibrated.")
    method: str = Field(description="The map applied.")
    probs: list[list[float]] | list[float] | None = Field(
        default=None,
        description="N×K probabilities, or the positive-class probability per sample (binary input); "
        "null with `binary_data_output`, which sends them as a binary tensor after the JSON.",
    )
    metrics: Metrics | None = Field(
        default=None, description="Scores of `probs` when `labels` or `targets` were sent."
    )
    sequences: SequenceFit | None = Field(
        default=None,
        description="B×T×K logits (with B×T `labels`, required): the shape and token counts; `probs` is "
        "null (a second B×T×K tensor) and `metrics` scores softmax(logits / T) over the scored tokens.",
        exclude_if=lambda value: value is None,
    )
    convention: RecalibrationConvention | None = Field(
        default=None, description="Conventions of `metrics` (when scored)."
    )
