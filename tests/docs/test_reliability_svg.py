"""The committed reliability diagram of the docs is what docs/gen_reliability.py draws now."""

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "gen_reliability.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gen_reliability", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_svg_is_current():
    script = load_script()
    committed = script.OUTPUT.read_text(encoding="utf-8")
    assert committed == script.render(), (
        "docs/assets/reliability-diagram.svg is stale: run docs/gen_reliability.py"
    )


def test_svg_is_a_diagram_of_the_example():
    script = load_script()
    root = ET.fromstring(script.OUTPUT.read_text(encoding="utf-8"))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = " ".join("".join(node.itertext()) for node in root.iter("{http://www.w3.org/2000/svg}text"))
    assert f"N = {len(script.example()['labels'])}" in text
    assert "B = 10" in text
