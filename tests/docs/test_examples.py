"""Every runnable example in README.md and docs/ runs against a live server and prints what the page shows."""

import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.docs.runnable import DOC_HOST, DOC_URL, Example, examples_in, same_output, same_text, same_value

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
EXAMPLES = [example for page in PAGES for example in examples_in(page)]
README_MAX_LINES = 250


def run(example: Example, url: str, cwd: Path) -> str:
    host = urlsplit(url).netloc
    code = example.code.replace(DOC_URL, url).replace(DOC_HOST, host)
    if example.language == "python":
        script, argv = cwd / "example.py", [sys.executable]
    else:
        if "curl " in code and shutil.which("curl") is None:
            pytest.skip("curl is not installed")
        script, argv = cwd / "example.sh", ["bash", "-e"]
    script.write_text(code, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "XENT_URL": url,
    }
    done = subprocess.run(
        [*argv, script.name], cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"{example.id} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout.replace(url, DOC_URL).replace(host, DOC_HOST)


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.id for example in EXAMPLES])
def test_runnable_example(example: Example, live_url: str, tmp_path: Path) -> None:
    printed = run(example, live_url, tmp_path)
    same_output(printed, example)


def test_pages_have_runnable_examples() -> None:
    pages = {example.page.relative_to(ROOT).as_posix() for example in EXAMPLES}
    assert "README.md" in pages
    for endpoint in ("cross-entropy", "divergence", "calibration", "reliability-diagram", "temperature"):
        assert f"docs/endpoints/{endpoint}.md" in pages
    assert {"docs/client.md", "docs/cli.md", "docs/comparison.md", "docs/payload-formats.md"} <= pages
    assert sum(example.shown is not None for example in EXAMPLES) >= 20


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension gives a heading (its default slugify)."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_readme_links_resolve() -> None:
    """mkdocs --strict checks the site's links; the README is outside it, so check its own here."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert len(links) >= 20
    for link in links:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.MULTILINE)
            assert anchor in {slug(heading) for heading in headings}, link


def test_a_marker_without_a_code_fence_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- runnable -->\ntext\n", encoding="utf-8")
    with pytest.raises(ValueError, match="followed by a code fence"):
        examples_in(page)
    page.write_text("<!-- runnable -->\n```json\n{}\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must be one of"):
        examples_in(page)


def test_shown_output_is_compared(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        '<!-- runnable -->\n```sh\necho 1\n```\n```json\n{"a": [1.0, "x"]}\n```\n\n'
        "<!-- runnable -->\n```python\nprint(2)\n```\n\n```text\n2\n```\n",
        encoding="utf-8",
    )
    first, second = examples_in(page)
    assert (first.language, first.code, first.shown_language) == ("sh", "echo 1\n", "json")
    assert (second.line, second.shown) == (10, None)  # a blank line between: not the shown output
    same_value({"a": [1.0 + 1e-9, "x"]}, {"a": [1.0, "x"]})
    with pytest.raises(AssertionError):
        same_value({"a": [1.001, "x"]}, {"a": [1.0, "x"]})
    with pytest.raises(AssertionError):
        same_value({"a": [1.0, "y"]}, {"a": [1.0, "x"]})
    with pytest.raises(AssertionError):
        same_value({"a": [1.0, "x"], "b": None}, {"a": [1.0, "x"]})
    same_text("loss  0.5000001 nats\n", "loss 0.5 nats")
    with pytest.raises(AssertionError):
        same_text("loss 0.51 nats", "loss 0.5 nats")
    with pytest.raises(AssertionError):
        same_text("loss 0.5 bits", "loss 0.5 nats")
