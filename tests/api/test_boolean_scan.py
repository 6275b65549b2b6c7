"""The pivot-byte search behind the boolean scan finds exactly what ``bytes.find`` finds."""

import random

import pytest

from service.api.formats.payload import _find_word, has_boolean_elements


@pytest.mark.parametrize("word", [b"true", b"false"])
def test_find_word_is_bytes_find(word: bytes) -> None:
    rng = random.Random(5)
    alphabet = b'truefals ,[]0u"f'  # dense in pivots and partial words: every branch, the fallback too
    for _ in range(20_000):
        text = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        start = rng.randint(0, len(text))
        end = rng.randint(start, len(text))
        for haystack in (text, bytearray(text)):
            assert _find_word(haystack, word, start, end) == text.find(word, start, end)


def test_a_key_with_a_u_and_no_boolean_elements() -> None:
    body = b'{"temperature": 1.5, "logits": [[0.25, -1.0]], "reduction": "sum", "f": "ufff"}'
    assert has_boolean_elements(body) is False
    assert has_boolean_elements(body[:-1] + b', "labels": [0, true]}') is True
