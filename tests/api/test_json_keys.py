"""The duplicate-key check, on either side of the colons it finds one by one (FIND_COLONS)."""

import json

import orjson
import pytest

from service.api.errors.problems import ProblemError
from service.api.formats.json_keys import FIND_COLONS, WALK_COLONS, check_unique_keys


def _object(keys: int, repeat: bool, colons_in_strings: int = 0) -> bytes:
    """A body of `keys` keys (the last one repeated if `repeat`), with colons inside string values."""
    pairs = [f'"k{i}": {i}' for i in range(keys)]
    if repeat:
        pairs[-1] = f'"k{keys - 2}": 0'
    pairs.append('"s": "' + ":" * colons_in_strings + '"')
    return ("{" + ", ".join(pairs) + "}").encode()


def _standard_library_refuses(body: bytes) -> bool:
    def hook(pairs):
        names = [k for k, _ in pairs]
        if len(names) != len(set(names)):
            raise ValueError("repeated")
        return dict(pairs)

    try:
        json.loads(body, object_pairs_hook=hook)
    except ValueError:
        return True
    return False


@pytest.mark.parametrize("repeat", [False, True])
@pytest.mark.parametrize(
    ("keys", "in_strings"),
    [
        (2, 0),
        (FIND_COLONS - 1, 0),
        (FIND_COLONS, 0),
        (FIND_COLONS + 1, 0),
        (3, FIND_COLONS),
        (WALK_COLONS, 2),
    ],
)
def test_the_verdict_is_the_standard_librarys_on_either_side_of_the_find_limit(keys, in_strings, repeat):
    body = _object(keys, repeat, in_strings)
    value = orjson.loads(body)  # keeps the last of a repeated key: one colon fewer than the body's
    refused = False
    try:
        check_unique_keys(body, value)
    except ProblemError as problem:
        refused = "repeats the key" in problem.detail
    assert refused == _standard_library_refuses(body) == repeat
