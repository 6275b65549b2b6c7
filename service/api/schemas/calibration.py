"""Request and response models of ``POST /v1/calibration`` and ``POST /v1/reliability-diagram``."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from .common import (
    RESULT_CONFIG,
    TOP_K_DESCRIPTION,
    Base,
    ClassVocabulary,
    FloatArrayField,
    IntArrayField,
    JsonFloat,
    ProbabilityOptions,
    Tensor,
    TopK,
)

MetricName = Literal[
    "calibration_error",
    "ece",
    "mce",
    "rmsce",
    "ace_nixon",
    "ace_netcal",
    "debiased_l2",
    "smooth_ece",
    "brier",
    "nll",
    "accuracy",
    "mean_confidence",
    "confidence_gap",
    "spiegelhalter",
    "ks",
    "kuiper",
    "reliability",
]
PresetName = Literal["torchmetrics", "sklearn", "netcal", "guo"]
TargetName = Literal["top_label", "positive_class", "classwise", "marginal"]
#: The calibration options a convention reads (a preset fixes those it does not leave free): read
#: by the route (service.api.routes.calibration) and stated by the document (service.api.openapi).
CONVENTION_FIELDS = (
    "binning",
    "edges",
    "n_bins",
    "closed",
    "min_bin_count",
    "target",
    "norm",
    "bin_weighting",
    "brier_scale",
    "level",
)
Level = Annotated[float, Field(gt=0, lt=1)]


def _check_n_bins(value: int | str) -> int | str:
    if value in ("sqrt", "cube_root") or (isinstance(value, int) and 1 <= value <= 10_000):
        return value
    raise ValueError(f'must be an integer in [1, 10000] or "sqrt" / "cube_root"; got {value!r}')


# One validator for the union, so an error points at `n_bins` itself, not at a union member.
NBins = Annotated[
    int | str,
    AfterValidator(_check_n_bins),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 10000}, {"enum": ["sqrt", "cube_root"]}]}
    ),
]


class BootstrapOptions(BaseModel):
    """Percentile bootstrap over samples."""

    model_config = ConfigDict(extra="forbid")

    n: Annotated[int, Field(ge=1, le=10_000)] = Field(default=1000, description="Number of resamples.")
    level: Level = Field(default=0.95, description="Coverage of each percentile interval.")
    seed: Annotated[int, Field(ge=0, lt=2**63)] = Field(
        default=0, description="Seed of numpy.random.default_rng drawing the resamples."
    )


class CalibrationOptions(ProbabilityOptions, ClassVocabulary):
    """The scalar options of a calibration request; every one is echoed in `convention`."""

    ignore_index: int | None = Field(
        default=None,
        description="Samples whose label equals this value are dropped before anything is computed "
        "and counted in `n_ignored` (PyTorch uses -100). Hard labels only.",
    )
    top_k: TopK | None = Field(default=None, description=TOP_K_DESCRIPTION)
    multilabel: bool = Field(
        default=False,
        description="N×K independent binary problems: `logits` (a sigmoid per element) or `probs` in [0, 1] "
        "against N×K `targets` in [0, 1] (`labels` are a 422). Class-wise: each column binned as a binary "
        "problem with these conventions; `per_class` holds calibration_error, ece, mce, rmsce, brier "
        "((p - t)², sklearn brier_score_loss per column) and nll (binary cross-entropy) per class, "
        "`metrics` their means over classes. Also ace_netcal (non-empty bins weighed equally), ace_nixon "
        "(Nixon's equal-count ranges per column), debiased_l2 (Kumar et al., per column) and "
        "reliability (per-class bins, `group` the column); "
        "`bootstrap` resamples rows (every column of a row together) for intervals of the means; "
        "`classes` name the K columns. sample_weight as on the categorical route (reliability "
        "`weight_sum`, weighted quantile edges per column, the weighted bootstrap), except with "
        "ace_nixon.",
    )
    preset: PresetName | None = Field(
        default=None,
        description="Reproduce a peer's conventions exactly (see `convention.matches`): torchmetrics "
        "1.9.0 (torch.linspace edges, [a, b) bins, p = 1 in an extra bin; multiclass in float32), "
        "sklearn 1.9.1 (calibration_curve: np.linspace or np.percentile edges, (a, b] bins), netcal "
        "1.4.0 (confidences clipped to [eps, 1-eps], np.linspace or np.quantile edges, [a, b) bins), "
        "guo (Guo et al. 2017 _ECELoss: float32 torch.linspace edges, (lower, upper] bins, top-label). "
        "A preset fixes `closed` and the edge rule; sending a fixed option is a 422.",
    )
    binning: Literal["uniform", "quantile", "edges"] | None = Field(
        default=None,
        description="uniform: equal-width edges i/B (each the correctly rounded quotient); quantile: "
        "equal-mass edges per group, np.quantile of the confidences at i/B with linear interpolation, "
        "outer edges 0 and 1 — tied confidences always share a bin, so ties can leave bins empty; "
        "edges: the explicit `edges`. Default: edges when `edges` is sent, else uniform.",
    )
    edges: Annotated[list[float], Field(min_length=2, max_length=10_001)] | None = Field(
        default=None, description="Explicit bin edges: strictly increasing from 0 to 1."
    )
    n_bins: NBins = Field(
        default=15, description="Number of bins B, or a rule: ceil(sqrt(N)) or ceil(N^(1/3))."
    )
    closed: Literal["right", "left"] = Field(
        default="right",
        description="right: bins (a, b], a confidence on an edge goes to the bin below, 0 in the first "
        "bin; left: bins [a, b), a confidence on an edge goes to the bin above, 1 in the last bin.",
    )
    min_bin_count: Annotated[int, Field(ge=1)] = Field(
        default=1,
        description="Bins with fewer pairs are left out of every binned error (netcal's "
        "sample_threshold) but still count in its normaliser: N (mass weighting) or the number of "
        "non-empty bins (uniform weighting, ace_netcal).",
    )
    target: TargetName | None = Field(
        default=None,
        description="top_label: max probability vs argmax correct (Guo et al. 2017); positive_class: "
        "p(class 1) vs label == 1 (binary); classwise: every class's probability vs label == k, errors "
        "averaged over classes (Kull et al. 2019); marginal: per-class errors in `per_class` and "
        "(mean_k e_k^p)^(1/p) (Kumar et al. 2019). Default: positive_class for binary input, else top_label.",
    )
    norm: Literal["l1", "l2", "max"] = Field(
        default="l1",
        description="Norm of `calibration_error`: l1 Σ w|gap| (ECE), l2 sqrt(Σ w gap²) (RMSCE), max (MCE).",
    )
    bin_weighting: Literal["mass", "uniform"] = Field(
        default="mass",
        description="Weight w of a bin: its share of samples n_b / N, or 1 / (number of non-empty bins).",
    )
    brier_scale: Literal["auto", "sum", "half"] = Field(
        default="auto",
        description="Brier score scaling: sum Σ_k (p_k - 1[y=k])² (range [0, 2]); half: ½ of it (binary: "
        "(p - y)²); auto: half for two classes, else sum — scikit-learn's brier_score_loss "
        "scale_by_half='auto'.",
    )
    metrics: Annotated[list[MetricName], Field(min_length=1)] | None = Field(
        default=None, description="Compute only these metrics (default: all)."
    )
    level: Level = Field(default=0.95, description="Coverage of each reliability bin's Wilson interval.")
    bootstrap: BootstrapOptions | None = Field(
        default=None, description="Percentile bootstrap intervals for every resampled scalar."
    )


class CalibrationBody(CalibrationOptions):
    """Predictions (exactly one of `logits`, `probs`) and hard `labels`."""

    logits: FloatArrayField | None = Field(
        default=None,
        description="N×K logits (softmax by log-sum-exp), or a length-N vector of positive-class logits; "
        "B×T×K token logits for sequences (calibration of the top-1 token).",
    )
    probs: FloatArrayField | None = Field(
        default=None,
        description="N×K probabilities, or a length-N vector of positive-class probabilities (binary); "
        "B×T×K for sequences.",
    )
    labels: IntArrayField | None = Field(
        default=None,
        description="N true class indices in [0, K) (binary: 0 or 1); B×T token ids for sequence "
        "inputs. Required unless multilabel.",
    )
    mask: list[list[int]] | Tensor | None = Field(
        default=None,
        description="Sequence inputs: B×T, 1 where a position is scored, 0 elsewhere (with "
        "`ignore_index`, -100 as PyTorch, for padding labels).",
    )
    targets: FloatArrayField | None = Field(
        default=None, description="Multilabel only: N×K outcomes in [0, 1], the shape of the predictions."
    )
    sample_weight: FloatArrayField | None = Field(
        default=None,
        description="N non-negative per-sample weights s: every sum over samples becomes a sum of s "
        "(bin counts and means, N), so integer weights equal repeating rows and weight-0 rows dropped "
        "ones; brier is Σ s·b / Σ s (scikit-learn's brier_score_loss sample_weight). Binned errors, "
        "Brier and its Murphy decomposition (weighted bin masses and means), nll, accuracy, "
        "mean_confidence, top-k and reliability bins (`weight_sum` beside the row `count`); quantile "
        "edges hold equal weight (np.quantile's linear rule on s as frequencies); the bootstrap draws "
        "rows uniformly and weighs each resample's statistic by m·s. Not ace_nixon, smooth_ece or the "
        "tests (built from orderings; no peer weighs them).",
    )


class CalibrationConvention(BaseModel):
    """Exactly how the numbers were computed."""

    model_config = RESULT_CONFIG

    classes: list[int] | list[str] | None = Field(default=None, description="The class vocabulary, as sent.")
    pos_label: int | str | None = Field(
        default=None, description="The positive class of binary input, as sent."
    )

    input: Literal["logits", "probs"] = Field(description="Which prediction field was sent.")
    form: Literal["categorical", "binary", "sequence", "multilabel"] = Field(
        description="N×K, positive-class vector, B×T×K token sequences (top-1 token calibration), "
        "or N×K independent columns (multilabel)."
    )
    dtype: Literal["float32", "float64"] = Field(description="Precision of the probabilities binned.")
    preset: PresetName | None = Field(description="The preset applied, if any.")
    binning: Literal["uniform", "quantile", "edges"] = Field(description="How edges were built.")
    edge_rule: Literal["exact", "numpy", "torch", "torch_float32"] = Field(
        description="Equal-width edges: exact i/B, np.linspace, torch.linspace (float64 or float32)."
    )
    quantile_method: Literal["quantile", "percentile"] = Field(
        description="Equal-mass edges: np.quantile(c, i/B) or np.percentile(c, 100 i/B); linear."
    )
    n_bins: int = Field(description="B as used (after a rule or from `edges`).")
    closed: Literal["right", "left"] = Field(description="(a, b] or [a, b).")
    overflow_bin: bool = Field(description="Confidences ≥ 1 in an extra bin (torchmetrics).")
    exclude_zero: bool = Field(description="Confidence 0 in no bin but counted in N (Guo et al.).")
    clip: bool = Field(description="Confidences clipped to [eps, 1 - eps] first (netcal).")
    float32_confidence: bool = Field(description="Confidences rounded to float32 before binning.")
    top_k: list[int] | None = Field(default=None, description="The k of `top_k_accuracy`, as sent.")
    ignore_index: int | None = Field(default=None, description="Label value dropped, if any.")
    sample_weight: bool = Field(default=False, description="Whether per-sample weights were applied.")
    input_dtype_means: bool = Field(
        description="float32 input: bin means over the edges rounded to float32, counts over the "
        "float64 edges (netcal: scipy binned_statistic_dd keeps the sample dtype, np.histogramdd not)."
    )
    min_bin_count: int = Field(description="Smallest counted bin.")
    n_excluded_bins: int = Field(description="Non-empty bins left out by `min_bin_count`.")
    target: TargetName = Field(description="Which (confidence, outcome) pairs were binned.")
    norm: Literal["l1", "l2", "max"] = Field(description="Norm of `calibration_error`.")
    bin_weighting: Literal["mass", "uniform"] = Field(description="Bin weights in the error.")
    brier_scale: Literal["sum", "half"] = Field(description="Scaling applied to the Brier score.")
    base: Base = Field(description="Logarithm base of `nll`.")
    unit: Literal["nats", "bits", "hartleys"] = Field(description="Unit of `nll`.")
    eps: float = Field(description="Floor applied to probabilities before the log (0: none).")
    n_clipped: int = Field(description="How many probabilities were raised to `eps` for the NLL.")
    tolerance: float = Field(description="Row-sum tolerance applied to probabilities.")
    n_normalized: int = Field(description="Rows divided by their sum (normalize: true).")
    level: float = Field(description="Coverage of the Wilson intervals.")
    tests_on: Literal["top_label", "positive_class"] = Field(
        description="Pairs used by smooth_ece, Spiegelhalter and the cumulative tests."
    )
    p_values: str = Field(description="How the p-values are computed and their sidedness.")
    matches: str = Field(description="The peer implementation these numbers agree with.")


def _metric(text: str) -> JsonFloat | None:
    return Field(default=None, description=text)


class CalibrationMetrics(BaseModel):
    """Each requested scalar; null when not requested."""

    model_config = RESULT_CONFIG

    calibration_error: JsonFloat | None = _metric("Binned error with `norm` and `bin_weighting`.")
    ece: JsonFloat | None = _metric("Expected calibration error: l1 norm, `bin_weighting`.")
    mce: JsonFloat | None = _metric("Maximum calibration error: largest |gap| over counted bins.")
    rmsce: JsonFloat | None = _metric("Root-mean-square calibration error: l2 norm, `bin_weighting`.")
    ace_nixon: JsonFloat | None = _metric(
        "Adaptive calibration error (Nixon et al. 2019): class-wise over all K classes, each class's "
        "probabilities sorted and split into n_bins equal-count ranges (np.array_split sizes), "
        "unweighted mean of |accuracy - confidence| over classes and ranges."
    )
    ace_netcal: JsonFloat | None = _metric(
        "netcal's ACE: Σ |gap| over counted bins / the number of non-empty bins of this binning "
        "(bins under min_bin_count add 0 but count, as netcal's sample_threshold)."
    )
    debiased_l2: JsonFloat | None = _metric(
        "Kumar, Liang & Ma 2019: sqrt(max(Σ w (gap² - ā(1-ā)/(n_b - 1)), 0)) over bins with ≥ 2 pairs."
    )
    smooth_ece: JsonFloat | None = _metric(
        "Błasiok & Nakkiran 2023 smooth ECE at the fixed-point bandwidth (relplot 1.0.3 smECE)."
    )
    smooth_ece_sigma: JsonFloat | None = _metric("The bandwidth σ* smooth_ece was evaluated at.")
    brier: JsonFloat | None = _metric("Mean Brier score, scaled per `brier_scale`.")
    brier_reliability: JsonFloat | None = _metric(
        "Murphy reliability Σ n_b/N (c̄_b - ō_b)², binning each class's probability with these edges."
    )
    brier_resolution: JsonFloat | None = _metric("Murphy resolution Σ n_b/N (ō_b - ō)².")
    brier_uncertainty: JsonFloat | None = _metric("Murphy uncertainty ō(1 - ō), summed over classes.")
    brier_within_bin_variance: JsonFloat | None = _metric(
        "Within-bin forecast variance; brier = reliability - resolution + uncertainty + "
        "within_bin_variance - 2·within_bin_covariance exactly (Stephenson et al. 2008)."
    )
    brier_within_bin_covariance: JsonFloat | None = _metric("Within-bin forecast/outcome covariance.")
    nll: JsonFloat | None = _metric("Mean negative log-likelihood of the labels, in `unit`.")
    accuracy: JsonFloat | None = _metric("Top-1 accuracy (ties go to the lower class).")
    mean_confidence: JsonFloat | None = _metric("Mean top-label probability.")
    confidence_gap: JsonFloat | None = _metric("mean_confidence - accuracy: > 0 over-confident.")
    spiegelhalter_z: JsonFloat | None = _metric(
        "Spiegelhalter's Z = Σ(o - c)(1 - 2c) / sqrt(Σ(1 - 2c)² c(1 - c)) on `tests_on` pairs."
    )
    spiegelhalter_p: JsonFloat | None = _metric("Two-sided p-value 2(1 - Φ(|Z|)).")
    ks_statistic: JsonFloat | None = _metric(
        "max_k |C_k| / σ, C the cumulative Σ(o - c)/N in confidence order, σ = sqrt(Σ c(1-c))/N "
        "(Arrieta-Ibarra et al. 2022)."
    )
    ks_p: JsonFloat | None = _metric("P(sup |W| ≥ ks_statistic) for standard Brownian motion W on [0, 1].")
    kuiper_statistic: JsonFloat | None = _metric("(max_k C_k - min_k C_k) / σ, with C_0 = 0.")
    kuiper_p: JsonFloat | None = _metric("P(max W - min W ≥ kuiper_statistic), W standard Brownian motion.")


class ReliabilityBins(BaseModel):
    """One reliability diagram, column-oriented: entry i describes bin i."""

    model_config = RESULT_CONFIG

    group: int | None = Field(description="The class, for classwise/marginal targets; else null.")
    lower: list[float] = Field(description="Lower edge of each bin.")
    upper: list[float] = Field(description="Upper edge of each bin (an overflow bin is [1, 1]).")
    count: list[int] = Field(description="Pairs (rows) in each bin, whatever their sample_weight.")
    weight_sum: list[float] | None = Field(
        default=None,
        description="With sample_weight only: Σ s over each bin's pairs, the bin's mass in the weighted "
        "means and errors (absent without sample_weight, where it would equal `count`).",
        exclude_if=lambda value: value is None,  # present only with sample_weight
    )
    confidence: list[float | None] = Field(
        description="Mean confidence, Σ s·c / Σ s with sample_weight (null when the bin weighs 0)."
    )
    accuracy: list[float | None] = Field(
        description="Observed frequency of the outcome, Σ s·o / Σ s with sample_weight."
    )
    gap: list[float | None] = Field(description="confidence - accuracy (> 0: over-confident).")
    wilson_low: list[float | None] = Field(
        description="Wilson interval lower bound on accuracy (`weight_sum` trials: frequency weights)."
    )
    wilson_high: list[float | None] = Field(description="Wilson interval upper bound on accuracy.")


class IntervalResult(BaseModel):
    """A percentile bootstrap interval."""

    model_config = RESULT_CONFIG

    low: JsonFloat
    high: JsonFloat


class BootstrapResult(BaseModel):
    """Percentile intervals of resampled scalars."""

    model_config = RESULT_CONFIG

    n: int = Field(description="Resamples drawn.")
    level: float = Field(description="Coverage of each interval.")
    seed: int = Field(description="Seed of numpy.random.default_rng.")
    method: str = Field(description="How resamples and intervals are formed.")
    intervals: dict[str, IntervalResult] = Field(description="Interval per scalar name.")


class CalibrationResult(BaseModel):
    """Calibration metrics of a batch, with the exact convention used."""

    model_config = RESULT_CONFIG

    n: int = Field(description="Samples scored.")
    n_ignored: int = Field(default=0, description="Samples dropped for their label `ignore_index`.")
    n_classes: int = Field(description="K (2 for binary input).")
    metrics: CalibrationMetrics
    per_class: dict[str, list[JsonFloat]] | None = Field(
        default=None, description="Per-class calibration_error and ece (classwise/marginal targets)."
    )
    reliability: list[ReliabilityBins] | None = Field(
        default=None, description="Reliability bins: one diagram, or one per class for classwise targets."
    )
    top_k_accuracy: dict[str, JsonFloat] | None = Field(
        default=None, description="Top-k accuracy by k (as a string key) for each k of `top_k`."
    )
    bootstrap: BootstrapResult | None = None
    convention: CalibrationConvention
