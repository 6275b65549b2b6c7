"""Where a per-sample output goes in an answer, shared by the server and the Python client.

An output named ``losses`` is the answer's ``losses`` field; a dotted name such as
``per_sample.kl_pq`` is field ``kl_pq`` of the nested object ``per_sample``. The JSON answer
puts arrays there, and the client puts binary outputs back in the same place.
"""

from typing import Any


def put_output(body: dict[str, Any], name: str, value: Any) -> None:
    """Set output `name` of answer `body` to `value`, creating (or filling a null) nested object."""
    *parents, leaf = name.split(".")
    for key in parents:
        if body.get(key) is None:
            body[key] = {}
        body = body[key]
    body[leaf] = value
