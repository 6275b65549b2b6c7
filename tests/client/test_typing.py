"""Each endpoint is declared once (service/client/endpoints.py) for both clients: mypy still sees every
method's own signature and result type, returned by the sync client and awaited from the async one."""

import textwrap

import pytest

mypy_api = pytest.importorskip("mypy.api")

SNIPPET = textwrap.dedent(
    """
    from service.client import AsyncXentClient, XentClient

    async def main() -> None:
        sync = XentClient("http://127.0.0.1:1")
        asynchronous = AsyncXentClient("http://127.0.0.1:1")
        reveal_type(sync.cross_entropy(logits=[[0.0, 1.0]], labels=[1]))
        reveal_type(await asynchronous.cross_entropy(logits=[[0.0, 1.0]], labels=[1]))
        reveal_type(asynchronous.temperature(logits=[[0.0, 1.0]], labels=[1]))
        reveal_type(sync.reliability_diagram(probs=[0.5], labels=[1]))
        sync.recalibrate(probs=[0.5], labels=[1])
        sync.calibration([[0.5, 0.5]])
    """
)


def test_mypy_sees_each_endpoint_typed_for_both_transports(tmp_path):
    path = tmp_path / "uses_clients.py"
    path.write_text(SNIPPET)
    out, _, _ = mypy_api.run(["--strict", "--no-incremental", "--follow-imports=silent", str(path)])
    lines = [line.split(": ", 1)[1] for line in out.splitlines() if ": " in line and "uses_clients" in line]
    assert 'note: Revealed type is "service.api.schemas.cross_entropy.CrossEntropyResult"' in lines
    assert lines.count('note: Revealed type is "service.api.schemas.cross_entropy.CrossEntropyResult"') == 2
    assert any("typing.Awaitable[service.api.schemas.recalibration.TemperatureResult]" in x for x in lines)
    assert 'note: Revealed type is "builtins.str"' in lines or 'note: Revealed type is "str"' in lines
    errors = [x for x in lines if x.startswith("error:")]
    assert len(errors) == 2, out  # recalibrate without its method; calibration's arrays are keyword-only
    assert "Too few arguments" in errors[0] and "Too many positional arguments" in errors[1], out
