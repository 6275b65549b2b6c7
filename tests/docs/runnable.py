"""Find the runnable code blocks of the documentation and compare what they print with the page.

A block is runnable when the line before its opening fence is ``<!-- runnable -->`` and its
language is python, sh or bash. A fence tagged json or text directly after it is the output the page
shows; numbers in it are compared to a relative 1e-6.
"""

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

MARKER = "<!-- runnable -->"
LANGUAGES = ("python", "sh", "bash")
SHOWN = ("json", "text")
DOC_URL = "http://127.0.0.1:8000"
DOC_HOST = "localhost:8000"
_NUMBER = re.compile(r"([-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)")


@dataclass(frozen=True)
class Example:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    shown_language: str | None
    shown: str | None

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"


def _fence(lines: list[str], start: int) -> tuple[str, str, int]:
    """The info string and body of the fence opening at `start`, and the index after its close."""
    info = lines[start].strip()[3:].strip()
    end = start + 1
    while end < len(lines) and lines[end].strip() != "```":
        end += 1
    if end == len(lines):
        raise ValueError(f"unclosed fence at line {start + 1}")
    return info, "".join(lines[start + 1 : end]), end + 1


def examples_in(page: Path) -> list[Example]:
    """Every runnable block of a Markdown page, with the output shown after it if any."""
    lines = page.read_text(encoding="utf-8").splitlines(keepends=True)
    found = []
    for index, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        fence = index + 1
        if fence >= len(lines) or not lines[fence].startswith("```"):
            raise ValueError(f"{page.name}:{index + 1}: {MARKER} must be followed by a code fence")
        language, code, after = _fence(lines, fence)
        if language not in LANGUAGES:
            raise ValueError(f"{page.name}:{fence + 1}: a runnable block must be one of {LANGUAGES}")
        shown_language = shown = None
        if after < len(lines) and lines[after].startswith("```"):
            info, body, _ = _fence(lines, after)
            if info in SHOWN:
                shown_language, shown = info, body
        found.append(Example(page, fence + 1, language, code, shown_language, shown))
    return found


def same_value(actual: object, shown: object, where: str = "$") -> None:
    """Assert two decoded JSON values agree: structure exactly, numbers to a relative 1e-6."""
    numbers = (int, float)
    if isinstance(shown, numbers) and not isinstance(shown, bool):
        assert isinstance(actual, numbers) and not isinstance(actual, bool), (
            f"{where}: {actual!r} vs {shown!r}"
        )
        assert math.isclose(actual, shown, rel_tol=1e-6, abs_tol=1e-12), f"{where}: {actual!r} vs {shown!r}"
    elif isinstance(shown, dict):
        assert isinstance(actual, dict) and actual.keys() == shown.keys(), (
            f"{where}: keys {actual!r} vs {shown!r}"
        )
        for key in shown:
            same_value(actual[key], shown[key], f"{where}.{key}")
    elif isinstance(shown, list):
        assert isinstance(actual, list) and len(actual) == len(shown), f"{where}: {actual!r} vs {shown!r}"
        for i, (a, s) in enumerate(zip(actual, shown, strict=True)):
            same_value(a, s, f"{where}[{i}]")
    else:
        assert actual == shown, f"{where}: {actual!r} vs {shown!r}"


def same_text(actual: str, shown: str) -> None:
    """Assert two printed texts agree: words exactly (whitespace runs equal), numbers to a relative 1e-6."""
    a_parts, s_parts = _NUMBER.split(actual.strip()), _NUMBER.split(shown.strip())
    message = f"printed:\n{actual}\nshown:\n{shown}"
    assert len(a_parts) == len(s_parts), message
    for i, (a, s) in enumerate(zip(a_parts, s_parts, strict=True)):
        if i % 2:  # a number
            assert math.isclose(float(a), float(s), rel_tol=1e-6, abs_tol=1e-12), message
        else:
            assert a.split() == s.split(), message


def same_output(printed: str, example: Example) -> None:
    """Assert a block's output matches the output its page shows (if the page shows one)."""
    if example.shown is None:
        return
    if example.shown_language == "json":
        same_value(json.loads(printed), json.loads(example.shown))
    else:
        same_text(printed, example.shown)
