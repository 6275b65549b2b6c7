"""Why a schema-valid request may still be refused: the rules the OpenAPI document cannot state.

schemathesis' ``positive_data_acceptance`` expects every request that matches the document to be
accepted. The document states what JSON Schema can (required fields, "exactly one of" as
``oneOf``, enums, bounds, patterns); these rules it cannot, so a request breaking one of them is
refused although it matches the document. :func:`excused` says whether a refusal is one of them,
per reason; any other refusal still fails the check.

- **Binary bodies**: ``application/octet-stream`` (the binary tensor extension) and
  ``application/x-npz`` are bytes whose framing (a JSON header of the declared length, then
  tensors of ``prod(shape) × itemsize`` bytes; a zip of ``.npy`` members) no schema can describe:
  a generator sends random bytes, refused 400 (or 413/422 when they happen to frame something).
- **Sizes**: the element and body limits bound a *product* of dimensions or a sum over fields
  (``XENT_MAX_ELEMENTS``), a 413.
- **State on the server and media-type-dependent headers** (422): a monitor window without rows;
  the ce-* headers of a binary-mode CloudEvent (OpenAPI headers cannot depend on the media type).
- **Not stated yet** (422): the OpenAI / vLLM documents ``/v1/logprobs`` reads are described in
  prose only. This one is a gap of the document, kept visible here, not a limit of JSON Schema.
- **Relations between values** (422): lengths that must agree across fields (labels and rows,
  ids and labels, class names and ``n_classes``, an OIP tensor's ``data`` and ``shape``), values
  bounded by another value (labels below K, ``from`` before ``to``), sums over values (rows
  summing to 1 within the tolerance, a positive total weight), one of two query parameters
  (OpenAPI has no rule across parameters), a step that is a multiple of the monitor's own bucket
  width (state on the server).
- **The compute deadline**: a schema-valid but costly request (10,000 bootstrap resamples) is
  stopped at ``request_timeout_s`` with its documented 503 (:mod:`service.api.middleware.limits`).
"""

import re

#: Media types whose bodies the document can only call bytes.
BINARY_MEDIA_TYPES = ("application/octet-stream", "application/x-npz")

#: 422 details that name a rule the document cannot state (see the module docstring), per reason.
UNSTATABLE = {
    "lengths agree": r"must have as many (samples|rows|classes|elements)|must hold (one|n_classes)|"
    r"as many .* as|has \d+ elements? but (its )?shape|is ragged: expected a row|must hold prod\(shape\)|"
    r"must have the shape of|must be a rectangular array|must have shape .* to match|"
    r"declares \d+ classes but the predictions have",
    "bounded by another value": r"must be (below|less than|before|smaller than|at most|at least) |"
    r"out of range \[0, |to fit or apply a map to probabilities containing 0|must start at 0 and end at 1",
    "sums over values": r"sum to 1|must sum to one|do not sum|zero total weight|with a positive sum|"
    r"must have a positive total",
    # OpenAPI states each query parameter alone: none excludes another.
    "one of two parameters": r"cannot be combined with",
    # The monitor's stored rows, its own bucket width and class count are state on the server.
    "state on the server": r"holds no (labelled|reservoir) rows|whole multiple of the bucket width|"
    r"must be .* for monitor '",
    # OpenAPI parameters cannot depend on the media type: binary-mode CloudEvents (application/json)
    # need the ce-* headers that structured mode (application/cloudevents+json) carries in its body.
    "CloudEvents binary mode": r"is a required CloudEvents header",
    # Which outputs an answer has depends on the options sent (per_sample, metrics, ...).
    "outputs follow the options": r"must name an output of this answer",
    # A limit set by the deployment (XENT_MAX_RESERVOIR, XENT_MAX_QUERY_POINTS): the document is static.
    "configured limit": r"\(setting XENT_|XENT_[A-Z_]+=|exceeds max_[a-z_]+=",
}
#: 422 details of rules JSON Schema COULD state but the document does not yet: gaps of the document,
#: listed so that they stay visible (docs/robustness.md says which).
NOT_STATED_YET = {
    # The OpenAI / vLLM documents /v1/logprobs reads are described in prose; the schema takes any object.
    "logprobs documents": r"^`responses?(`| must|\[)|`prompt_token_ids` must be sent",
    # Per-field value ranges and ranks inside the shared tensor forms (a tensor object, an OIP input):
    # probabilities in [0, 1], K ≥ 2, labels 1-D, integer data for integer datatypes.
    "tensor values by role": r"must lie in \[0, 1\]|must be finite; got -?inf|must have K ≥ 2 classes|"
    r"must be a 1-D list|"
    r"must hold integers for datatype|must be N×K \(categorical\) or a length-N vector",
    # Options that depend on another field: sample_weight with method temperature only, class_weights
    # not with B×T×K inputs, a reliability diagram's target (the body is /v1/calibration's).
    "options across fields": r"applies to method .* only|apply to methods .* only|"
    r"do not apply with multilabel|apply with multilabel: true only|applies to B×T×K sequence inputs only|"
    r"is not supported with B×T×K|for a diagram; got|is not a field of B×T×K sequences|"
    r"is required with binning|is fixed by preset|applies to hard `labels` only|"
    r"must be a list of \w+, as `classes`",
    # Which roles an OIP request's inputs fill: exactly one prediction role among logits, probs, scores.
    "roles of inference inputs": r"must not be sent with `\w+` \(exactly one of",
    # Bounds on integers (int64) and closed objects inside nested option values.
    "nested bounds": r"knots\[\d+\]\.\w+` is not a field",
}
RELATIONS = UNSTATABLE | {f"not stated yet: {k}": v for k, v in NOT_STATED_YET.items()}


def excused(media_type: str | None, status: int, problem: object) -> str | None:
    """The reason a schema-valid request answered `status` with `problem` may be refused, else None."""
    if media_type in BINARY_MEDIA_TYPES and status in (400, 413, 422):
        return "binary body"
    if not isinstance(problem, dict):
        return None
    details = [e.get("detail", "") for e in problem.get("errors") or [] if isinstance(e, dict)]
    details = details or [str(problem.get("detail", ""))]
    if status == 413 and all("limit" in d for d in details):
        return "size limit"
    if status == 503 and all("did not finish within" in d for d in details):
        return "compute deadline"
    if status == 422:
        reasons = {name for d in details for name, rule in RELATIONS.items() if re.search(rule, d)}
        if reasons and all(any(re.search(r, d) for r in RELATIONS.values()) for d in details):
            return ", ".join(sorted(reasons))
    return None
