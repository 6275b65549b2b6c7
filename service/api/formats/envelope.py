"""Open Inference Protocol (KServe v2) inference-request bodies, mapped onto Xent's fields.

``{"inputs": [{"name", "shape", "datatype", "data", "parameters": {"role": "logits"}}],
"parameters": {...options}}`` becomes ``{"logits": {"shape", "datatype", "data"}, ...options}``.
An input's role is ``parameters.role``, or its ``name`` when that is already a field name.
"""

import reprlib
from dataclasses import dataclass, field
from typing import Any

from service.core import InputError

#: Keys an OIP inference request may carry at the top level.
_REQUEST_KEYS = {"id", "inputs", "outputs", "parameters"}


@dataclass
class Envelope:
    """Flat fields taken out of an inference request, and where each came from."""

    fields: dict[str, Any]
    pointers: dict[str, str] = field(default_factory=dict)
    binary_sizes: list[tuple[str, int]] = field(default_factory=list)


def is_inference_request(body: dict[str, Any]) -> bool:
    """Whether `body` is shaped like an OIP inference request (it has ``inputs``)."""
    return "inputs" in body


def unwrap(body: dict[str, Any], roles: frozenset[str] | None = None) -> Envelope:
    """Map an inference request onto flat fields; binary inputs are listed, not decoded.

    Parameters
    ----------
    body : dict
        The parsed JSON request (or binary-extension header).
    roles : frozenset of str, optional
        Accepted roles; by default any name is accepted and unknown ones fail later as unknown fields.
    """
    unknown = sorted(set(body) - _REQUEST_KEYS)
    if unknown:
        raise InputError(
            unknown[0], "is not a field of an inference request (id, inputs, outputs, parameters)"
        )
    inputs = body["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise InputError("inputs", "must be a non-empty list of tensors")
    options = body.get("parameters") or {}
    if not isinstance(options, dict):
        raise InputError("parameters", "must be an object of options")
    envelope = Envelope(dict(options), {name: f"#/parameters/{name}" for name in options})
    for i, tensor in enumerate(inputs):
        role, size = _role_and_size(tensor, i)
        if roles is not None and role not in roles:
            _refuse_role(tensor, i, role, roles)
        if role in envelope.fields:
            raise InputError(f"inputs.{i}", f"repeats the role {role!r}")
        envelope.fields[role] = {k: v for k, v in tensor.items() if k in ("shape", "datatype", "data")}
        envelope.pointers[role] = f"#/inputs/{i}"
        if size is not None:
            envelope.binary_sizes.append((role, size))
    return envelope


def _refuse_role(tensor: dict[str, Any], i: int, role: str, roles: frozenset[str]) -> None:
    """Raise for a role the endpoint does not take, saying how to give one (a Triton ``output__0``)."""
    choices = _one_of([name for name in _ROLE_ORDER if name in roles] + sorted(roles - set(_ROLE_ORDER)))
    parameters = tensor.get("parameters") or {}
    if "role" in parameters:
        raise InputError(f"inputs.{i}.parameters.role", f"must be {choices}; got {reprlib.repr(role)}")
    raise InputError(
        f"inputs.{i}.parameters.role",
        f"is required: the input's name {reprlib.repr(role)} is not a field of this endpoint; "
        f"set `parameters.role` to {choices}",
    )


#: Roles in the order an error lists them: predictions first.
_ROLE_ORDER = ("logits", "probs", "p_logits", "p_probs", "q_logits", "q_probs", "labels", "targets")


def _one_of(names: list[str]) -> str:
    quoted = [f"`{name}`" for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _role_and_size(tensor: Any, i: int) -> tuple[str, int | None]:
    if not isinstance(tensor, dict):
        raise InputError(f"inputs.{i}", "must be a tensor object (name, shape, datatype, data)")
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InputError(f"inputs.{i}.parameters", "must be an object")
    role = parameters.get("role")
    if role is None:  # absent or null, as the document's default says: the name
        role = tensor.get("name")
    if not isinstance(role, str):
        raise InputError(f"inputs.{i}.parameters.role", "is required (or a `name` that is a field name)")
    size = parameters.get("binary_data_size")
    if isinstance(size, float) and size.is_integer():  # JSON Schema's integers include 3.0
        size = int(size)
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise InputError(
            f"inputs.{i}.parameters.binary_data_size",
            f"must be a non-negative integer; got {reprlib.repr(size)}",
        )
    return role, size
