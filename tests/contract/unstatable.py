"""Why a schema-valid request may still be refused: the rules the OpenAPI document cannot state.

schemathesis' ``positive_data_acceptance`` expects every request that matches the document to be
accepted. The document states what JSON Schema can (required fields, "exactly one of" as
``oneOf``, enums, bounds, patterns); these rules it cannot, so a request breaking one of them is
refused although it matches the document. :func:`excused` says whether a refusal is one of them,
per reason; any other refusal still fails the check.

Most of these rules are also taught to the generator: :mod:`tests.contract.hooks` repairs positive
cases so they keep them, and sends a binary body as an encoded JSON request (refused, then, for the
rule it breaks, named as for JSON), so a reason is met only where a repair is missing or cannot be
made; the terminal summary prints both counts.

- **Binary bodies**: ``application/octet-stream`` (the binary tensor extension) and
  ``application/x-npz`` are bytes whose framing (a JSON header of the declared length, then
  tensors of ``prod(shape) × itemsize`` bytes; a zip of ``.npy`` members) no schema can describe:
  a generator sends random bytes, refused 400 (or 413/422 when they happen to frame something).
  The hooks encode a drawn JSON request instead (the fuzzing phase), or the operation's documented
  JSON example (the coverage phase, and a draw no binary datatype can hold), so with them this
  reason is met only by a refusal of an encoded request under a rule named nowhere else; without
  them (``st run`` with no ``SCHEMATHESIS_HOOKS``) by the drawn bytes.
- **Sizes**: the element and body limits bound a *product* of dimensions or a sum over fields
  (``XENT_MAX_ELEMENTS``), a 413.
- **State on the server and media-type-dependent headers** (422): a monitor window without rows;
  the ce-* headers of a binary-mode CloudEvent (OpenAPI headers cannot depend on the media type).
- **The generator's limits** (422): rules JSON Schema states but schemathesis cannot generate
  from (measured, below): the fields a preset fixes besides ``edges``, the options
  B×T×K sequences refuse on cross-entropy's inference requests, ``use: "prompt"`` on a monitor's
  sequences body, Platt's and beta's binary ``logits`` and ``probs``, a sigmoid's ``logits`` and
  ``probs``.
- **Relations between values** (422): lengths that must agree across fields (labels and rows,
  ids and labels, class names and ``n_classes``, an OIP tensor's ``data`` and ``shape``), values
  bounded by another value (labels below K, ``from`` before ``to``), values among another field's
  (labels and ``pos_label`` among the declared ``classes``), sums over values (rows
  summing to 1 within the tolerance, a positive total weight), one of two query parameters
  (OpenAPI has no rule across parameters), a step that is a multiple of the monitor's own bucket
  width (state on the server).
- **The compute deadline**: a schema-valid but costly request (10,000 bootstrap resamples) is
  stopped at ``request_timeout_s`` with its documented 503 (:mod:`service.api.middleware.limits`).
"""

import re
from typing import Any

#: Media types whose bodies the document can only call bytes.
BINARY_MEDIA_TYPES = ("application/octet-stream", "application/x-npz")

#: 422 details that name a rule the document cannot state (see the module docstring), per reason.
UNSTATABLE = {
    # (and dimensions: labels are N for N×K predictions, B×T for B×T×K ones; a condition on an
    # input's shape stops generation on cross-entropy's inference requests, below)
    "lengths agree": r"must have as many (samples|rows|classes|elements)|must hold (one|n_classes)|"
    r"as many .* as|has \d+ elements? but (its )?shape|is ragged: expected a row|must hold prod\(shape\)|"
    r"must have the shape of|must be a rectangular array|must have shape .* to match|"
    r"declares \d+ classes but the predictions have|like the predictions; got|must have one entry per|"
    r"got ragged or non-numeric rows|must be a 1-D list of class indices; got shape|"
    r"must hold \d+ knot set\(s\) for these predictions|must pair every x with a y|"
    r"must give one count per sequence|"
    # (a divergence's p side decides the form: q B×T×K with p N×K or N is refused as q's shape)
    r"`q_(logits|probs)` must be N×K \(categorical\) or a length-N vector \(binary\); "
    r"got shape \(\d+, \d+, \d+\)|"
    # (a CloudEvent's id and its rows: `<id>:<row>` within the ids' length)
    r"must leave room for `:<row>`",
    "bounded by another value": r"must be (below|less than|before|smaller than|at most|at least) |"
    r"out of range \[0, |must lie in \[0, \d+\)|to fit or apply a map to probabilities containing 0|"
    r"must start at 0 and end at 1|"
    r"must contain the realised token: its logprob|must have non-decreasing x|"
    # (every label equal to `ignore_index`: nothing left to score; JSON Schema cannot say "some
    # element differs from another field's value")
    r"must hold a label other than ignore_index|"
    # (an affine map's logits: `scale ⊙ z + bias` or `z Wᵀ + bias` past float64's range; logits past
    # ±2**500 for fitting one: bounds on products of values, and of values with the method's)
    r"past float64's range \(±1\.8e308\): its probabilities cannot be computed|"
    r"must lie within ±2\*\*500 \(3\.3e150\) to fit vector or matrix scaling",
    "sums over values": r"sum to 1|must sum to one|do not sum|zero total weight|(with|have) a positive sum|"
    r"summing to at most 1|"
    r"must have a positive (total|sum)|must keep N × max\(sample_weight\) finite",
    # OpenAPI states each query parameter alone: none excludes another.
    "one of two parameters": r"cannot be combined with",
    # The monitor's stored rows, its own bucket width and class count, and the idempotency keys it has
    # seen, are state on the server.
    "state on the server": r"holds no (labelled|reservoir) rows|whole multiple of the bucket width|"
    r"must be .* for monitor '|was sent before with a different request|"
    # (a CloudEvent's predictions are read as the monitor's `output` and `output_kind`)
    r"\(the monitor's `output`\)|set the monitor's `output`|the output_kind of monitor '",
    # OpenAPI parameters cannot depend on the media type: binary-mode CloudEvents (application/json)
    # need the ce-* headers that structured mode (application/cloudevents+json) carries in its body.
    "CloudEvents binary mode": r"is a required CloudEvents header",
    # Which outputs an answer has depends on the options sent (per_sample, metrics, ...).
    "outputs follow the options": r"must name an output of this answer",
    # vLLM's i-th prompt_logprobs takes the i-th list of `prompt_token_ids` (null: the response's own).
    "paired by position": r"`prompt_token_ids` must be sent to score|"
    r"must hold a list for each prompt_logprobs|vLLM always includes it",
    # JSON Schema's enum is a constant: it cannot say "one of the values another field holds".
    "one of another field's values": r"is not one of `classes`",
    # The fields a preset fixes besides `edges` (binning, closed, min_bin_count, bin_weighting;
    # service.api.openapi.across.UNGENERATED): with them on /v1/calibration's body, in any form tried
    # (an alternative per preset, an if/then per field, per group of presets), jsonschema_rs 0.60.3
    # leaves the body's canonical form raw and schemathesis 4.32.5 stops with "Failed to generate
    # test cases for this API operation. Schemathesis does not support this part of it".
    "fields a preset fixes": r"is fixed by preset",
    # The options B×T×K sequences refuse (classes, pos_label, normalize; bytes and words with B×T×K
    # targets), stated on /v1/cross-entropy's JSON body but not on its inference requests (/v1 and
    # /v2): with a condition on an input's shape there, schemathesis 4.32.5 stops with "Failed to
    # generate test cases for this API operation: result is not supported in canonical form".
    "B×T×K options of a cross-entropy inference request": r"is not supported with B×T×K",
    # `use: "prompt"` finding a prompt in each response, stated on /v1/logprobs' body; on a monitor's
    # sequences body (two forms already) schemathesis 4.32.5 stops with "Schemathesis does not
    # support this part of it" (jsonschema_rs 0.60.3 leaves its canonical form raw).
    "use: prompt on a monitor's sequences": r"has no prompt_logprobs to score",
    # Platt and beta take binary predictions (a vector or N×2): stated for raw `scores`; for `logits`
    # and `probs` (service.api.openapi.across.BINARY_METHODS) schemathesis 4.32.5 stops with "Schemathesis
    # does not support this part of it" on /v1/apply and "result is not supported in canonical form"
    # on /v1/recalibrate and /v2/models/recalibrate/infer.
    "binary methods' logits and probs": r"`(logits|probs)` must be binary \(a length-N vector or N×2\)",
    # A sigmoid (/v1/recalibrate) maps raw `scores` only: as a rule across fields on RecalibrateBody
    # (method sigmoid -> no logits or probs; or logits or probs -> method not sigmoid), schemathesis
    # 4.32.5 declines /v1/recalibrate's body and its inference request ("Schemathesis does not support
    # this part of it"). Met once the inference inputs' form changed (issue 21, 2026-12-06).
    "sigmoid of logits or probs": r"\"sigmoid\" maps raw `scores`",
    # A limit set by the deployment (XENT_MAX_RESERVOIR, XENT_MAX_QUERY_POINTS): the document is static.
    "configured limit": r"\(setting XENT_|XENT_[A-Z_]+=|exceeds max_[a-z_]+=",
}


def excused(media_type: str | None, status: int, problem: object) -> str | None:
    """The reason a schema-valid request answered `status` with `problem` may be refused, else None."""
    binary = media_type in BINARY_MEDIA_TYPES and status in (400, 413, 422)
    if not isinstance(problem, dict):
        return "binary body" if binary else None
    reason = _reason(status, problem)
    # a binary body the hooks encoded from a repaired JSON request is refused for the rule it breaks,
    # named as for JSON; one sent as drawn (the coverage phase) for its framing
    return reason if reason is not None else ("binary body" if binary else None)


def _reason(status: int, problem: dict[str, Any]) -> str | None:
    details = [e.get("detail", "") for e in problem.get("errors") or [] if isinstance(e, dict)]
    details = details or [str(problem.get("detail", ""))]
    if status == 413 and all("limit" in d for d in details):
        return "size limit"
    if status == 503 and all("did not finish within" in d for d in details):
        return "compute deadline"
    if status == 422:
        reasons = {name for d in details for name, rule in UNSTATABLE.items() if re.search(rule, d)}
        if reasons and all(any(re.search(r, d) for r in UNSTATABLE.values()) for d in details):
            return ", ".join(sorted(reasons))
    return None
