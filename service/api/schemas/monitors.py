"""Request and response models of the monitor routes (``/v1/monitors``)."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, model_validator

from .common import RESULT_CONFIG, Base, FloatArrayField, IntArrayField, JsonFloat, Tensor, whole
from .monitor_lm import MonitorLanguageModel

#: A monitor's name: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MAX_CLASSES = 100_000


#: A binary monitor has two classes: `n_classes` 2 (or absent), at most two class names.
_NOT_BINARY: dict[str, Any] = {"not": {"required": ["binary"], "properties": {"binary": {"const": True}}}}
_TWO_CLASSES: dict[str, Any] = {
    "properties": {
        "n_classes": {"enum": [2, None]},
        "class_names": {"anyOf": [{"maxItems": 2}, {"type": "null"}]},
    }
}

#: One of `n_classes`, `class_names` or `binary: true` says K.
_SAYS_K: list[dict[str, Any]] = [
    {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
    for name in ("n_classes", "class_names")
] + [{"required": ["binary"], "properties": {"binary": {"const": True}}}]


def _rules(schema: dict[str, Any]) -> None:
    """State the rules across fields: a binary monitor has two classes; one field says K."""
    schema["allOf"] = [{"anyOf": [_NOT_BINARY, _TWO_CLASSES]}, {"anyOf": _SAYS_K}]


class MonitorBody(BaseModel):
    """A monitor's configuration (PUT creates it or updates the fields that may change)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_rules)

    n_classes: Annotated[int, Field(ge=2, le=MAX_CLASSES)] | None = Field(
        default=None,
        description="K, the number of classes (2 for binary). Optional when `class_names` or "
        "`binary` says it. Cannot change once set.",
    )
    binary: bool = Field(
        default=False,
        description="Predictions arrive as a length-N positive-class vector (logit or probability); "
        "K = 2. Cannot change once set.",
    )
    class_names: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=128)]],
            Field(min_length=2, json_schema_extra={"uniqueItems": True}),
        ]
        | None
    ) = Field(default=None, description="One distinct name per class, in class-index order.")
    bucket_s: Annotated[int, Field(ge=1, le=86_400)] = Field(
        default=60, description="Width of a time bucket in seconds (the finest resolution). Cannot change."
    )
    retention_s: Annotated[int, Field(ge=60, le=10 * 366 * 86_400)] = Field(
        default=30 * 86_400, description="How long buckets are kept, in seconds (default 30 days)."
    )
    label_ttl_s: Annotated[int, Field(ge=0, le=366 * 86_400)] = Field(
        default=7 * 86_400,
        description="How long a prediction sent with an id and no label waits for its label, in seconds.",
    )
    reservoir_size: Annotated[int, Field(ge=0)] = Field(
        default=10_000,
        description="Labelled rows kept (a uniform bottom-k sample) for temperature refits; 0: none. "
        "At most XENT_MAX_RESERVOIR.",
    )
    output: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None,
        description="Events (KServe's logger, V2 responses): the name of the output tensor that holds "
        "the predictions; default: the only one.",
    )
    output_kind: Literal["logits", "probs"] | None = Field(
        default=None,
        description='Events: whether that tensor holds logits or probabilities (default "probs").',
    )

    @model_validator(mode="after")
    def _classes_agree(self) -> "MonitorBody":
        k = self.n_classes
        if self.binary and k not in (None, 2):
            raise ValueError(f"`n_classes` must be 2 (or absent) for a binary monitor; got {k}")
        if self.class_names is not None:
            if k is not None and len(self.class_names) != k:
                raise ValueError(
                    f"`class_names` must hold n_classes = {k} names; got {len(self.class_names)}"
                )
            if len(set(self.class_names)) != len(self.class_names):
                raise ValueError("`class_names` must be distinct")
        if k is None and self.class_names is None and not self.binary:
            raise ValueError("one of `n_classes`, `class_names` or `binary: true` is required")
        if self.retention_s < self.bucket_s:
            raise ValueError(
                f"`retention_s` must be at least bucket_s = {self.bucket_s}; got {self.retention_s}"
            )
        return self

    @property
    def k(self) -> int:
        """The number of classes these fields imply."""
        if self.n_classes is not None:
            return self.n_classes
        return 2 if self.class_names is None else len(self.class_names)


class MonitorResult(BaseModel):
    """A monitor's configuration as stored."""

    model_config = RESULT_CONFIG

    name: str
    n_classes: int
    binary: bool
    class_names: list[str] | None
    bucket_s: int
    retention_s: int
    label_ttl_s: int
    reservoir_size: int
    output: str | None = Field(default=None, description="Events: the output tensor read.")
    output_kind: Literal["logits", "probs"] | None = Field(default=None, description="Events: its kind.")
    temperature: JsonFloat | None = Field(description="The temperature last fitted on the reservoir, if any.")
    created_at: float = Field(description="Epoch seconds.")
    updated_at: float = Field(description="Epoch seconds.")


class MonitorTotals(BaseModel):
    """Everything the monitor holds (within its retention), merged."""

    model_config = RESULT_CONFIG

    n: int = Field(description="Predictions recorded.")
    n_labelled: int = Field(description="Of which labelled (at ingestion or later).")
    cross_entropy: JsonFloat | None = Field(description="Mean NLL in nats of the labelled rows.")
    accuracy: JsonFloat | None
    first_bucket: int | None = Field(description="Start of the oldest bucket held (epoch seconds).")
    last_bucket: int | None = Field(description="Start of the newest bucket held (epoch seconds).")
    segments: list[str]
    language_model: MonitorLanguageModel | None = Field(
        description="Sums and metrics of the scored sequences (POST …/sequences); null when there are none."
    )


class MonitorDetail(MonitorResult):
    """A monitor's configuration and totals."""

    totals: MonitorTotals


class MonitorList(BaseModel):
    """Every monitor."""

    model_config = RESULT_CONFIG

    monitors: list[MonitorResult]


class ObservationsBody(BaseModel):
    """A batch of predictions for a monitor (JSON form; OIP, binary tensors and npz carry the same fields)."""

    model_config = ConfigDict(extra="forbid")

    logits: FloatArrayField | None = Field(
        default=None, description="N×K logits, or N positive-class logits (binary)."
    )
    probs: FloatArrayField | None = Field(
        default=None, description="N×K probabilities, or N positive-class probabilities (binary)."
    )
    labels: IntArrayField | None = Field(
        default=None, description="N true classes; -1 where not known yet (send it later by id)."
    )
    ids: list[Annotated[str, Field(min_length=1, max_length=128)] | None] | None = Field(
        default=None,
        description="N row ids (null: no id). An unlabelled row with an id waits for its label "
        "(POST …/labels) for the monitor's label_ttl_s.",
    )
    timestamps: list[float] | Tensor | None = Field(
        default=None,
        description="N prediction times in epoch seconds (default: the server clock). Each must lie "
        "within the monitor's retention and at most 300 s in the future.",
    )
    segment: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        description="A tag of the whole batch (model version, region); XENT_MAX_SEGMENTS per monitor.",
    )
    tolerance: Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None, description="Allowed |sum(row) - 1| for probability rows (default by dtype)."
    )
    normalize: bool = Field(
        default=False, description="Divide probability rows by their sum instead of rejecting them."
    )


class ObservationsResult(BaseModel):
    """What the batch did; sent only after it was committed."""

    model_config = RESULT_CONFIG

    monitor: str
    n: int = Field(description="Rows recorded.")
    n_labelled: int = Field(description="Rows recorded with their label.")
    n_pending: int = Field(description="Rows now waiting for a late label (sent with an id, no label).")
    n_duplicate_ids: int = Field(
        description="Rows whose id was already pending (not stored again as pending)."
    )
    buckets: int = Field(description="Time buckets the batch touched.")
    segment: str


class LabelsBody(BaseModel):
    """Late labels of rows sent earlier with ids."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        min_length=1, description="Row ids."
    )
    labels: (
        list[Annotated[int, Field(strict=True, ge=0, lt=MAX_CLASSES), BeforeValidator(whole)]]
        | list[StrictStr]
    ) = Field(
        description="One true class per id: an index in [0, K), or a class name (monitors with class_names)."
    )


class LabelsResult(BaseModel):
    """What became of each id (per-id problems are counted here, the request still succeeds)."""

    model_config = RESULT_CONFIG

    monitor: str
    joined: int = Field(description="Ids whose prediction got its label, in the prediction's bucket.")
    unknown: int = Field(
        description="Ids with no pending prediction (never sent, already labelled, or long expired)."
    )
    duplicate: int = Field(description="Repeats of an id earlier in this request (the first label wins).")
    expired: int = Field(description="Ids whose prediction waited longer than label_ttl_s (dropped).")


class MetricsConvention(BaseModel):
    """How every metric of the series is computed."""

    model_config = RESULT_CONFIG

    base: Base = Field(description="Logarithm base of cross_entropy.")
    unit: Literal["nats", "bits", "hartleys"]
    n_bins: int = Field(description="Equal-width bins of the ECE / MCE (B divides 2520).")
    closed: Literal["right", "left"] = Field(description="Which side of a bin is closed (edges fl(i / B)).")
    target: Literal["top_label", "positive_class"] = Field(
        description="Top-label confidence, or (binary) the positive-class probability."
    )
    ece: str = Field(description="The ECE's definition.")
    brier: str = Field(description="The Brier score's definition.")
    matches: str = Field(description="The endpoints whose defaults these equal on the same rows.")


class MetricsPoint(BaseModel):
    """One step of the series: the buckets starting in [start, end)."""

    model_config = RESULT_CONFIG

    start: int
    end: int
    n: int = Field(description="Predictions.")
    n_labelled: int = Field(description="Of which labelled.")
    cross_entropy: JsonFloat | None = Field(
        description="Mean NLL of labelled rows in `base`; null without any."
    )
    accuracy: JsonFloat | None = Field(description="Realised accuracy of labelled rows.")
    brier: JsonFloat | None
    ece: JsonFloat | None
    mce: JsonFloat | None
    mean_confidence: JsonFloat | None = Field(
        description="Mean top-label confidence of every prediction: the accuracy expected before labels."
    )
    expected_accuracy_calibrated: JsonFloat | None = Field(
        description="Mean top-label confidence after the monitor's fitted temperature (as fitted when "
        "each batch arrived); null before a temperature was fitted."
    )


class MetricsResult(BaseModel):
    """A time series of a monitor's metrics."""

    model_config = RESULT_CONFIG

    monitor: str
    start: int = Field(
        description="Start of the first point (epoch seconds; `from` aligned down to a bucket)."
    )
    end: int = Field(description="End of the last point, exclusive (`to` aligned up to a bucket).")
    step: int = Field(description="Seconds per point.")
    segment: str | None
    temperature: JsonFloat | None = Field(description="The monitor's fitted temperature, if any.")
    convention: MetricsConvention
    points: list[MetricsPoint]


class TemperatureResult(BaseModel):
    """A temperature fitted on the reservoir's labelled rows of a window, now stored on the monitor."""

    model_config = RESULT_CONFIG

    monitor: str
    temperature: JsonFloat
    nll: JsonFloat = Field(description="Mean NLL (nats) of the reservoir rows at the fitted T.")
    nll_initial: JsonFloat = Field(description="Mean NLL (nats) at T = 1.")
    n: int = Field(description="Reservoir rows used.")
    converged: bool
    reason: str
    start: float
    end: float


class DriftResult(BaseModel):
    """Jensen–Shannon divergence of class distributions: window against reference window."""

    model_config = RESULT_CONFIG

    monitor: str
    base: Literal[2] = Field(description="Logarithm base: 2, so the divergence lies in [0, 1].")
    label_js: JsonFloat | None = Field(
        description="Of the label distributions; null when a window has no labels."
    )
    predicted_js: JsonFloat | None = Field(description="Of the predicted-class distributions.")
    window: list[int] = Field(description="[from, to) of the current window.")
    reference: list[int] = Field(description="[from, to) of the reference window.")
    n: int
    n_reference: int
    label_distribution: list[JsonFloat] | None
    reference_label_distribution: list[JsonFloat] | None
    predicted_distribution: list[JsonFloat] | None
    reference_predicted_distribution: list[JsonFloat] | None


class EventResult(BaseModel):
    """What a CloudEvent did: a response event's rows recorded, or a request event acknowledged."""

    model_config = RESULT_CONFIG

    monitor: str
    id: str = Field(description="The event's `ce-id`.")
    type: str = Field(description="The event's `ce-type`.")
    recorded: bool = Field(
        description="A response event's predictions were recorded (request events: false)."
    )
    n: int = Field(description="Rows recorded.")
    n_pending: int = Field(description="Rows now waiting for a label, by id.")
    n_duplicate_ids: int = Field(description="Rows whose id was already pending (a repeated event).")
    ids: list[str] = Field(description="The rows' ids for `/labels`: `<ce-id>` (one row) or `<ce-id>:<row>`.")
    segment: str
