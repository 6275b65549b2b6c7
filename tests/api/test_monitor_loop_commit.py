"""Small observations written on the event loop at once share commits (``LoopCommit``) and lose nothing."""

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import scipy.special

from service.app import create_app
from service.settings import Settings

from .test_monitor_counters import samples


async def _started(app: Any) -> "tuple[asyncio.Task[None], asyncio.Queue[dict[str, str]]]":
    """The app's lifespan, started (the store opened); its task and inbox, for the shutdown."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    return task, inbox


def _batches(rng, n: int) -> list[dict[str, Any]]:
    """`n` distinct 8×3 batches; every fifth has two unlabelled rows with ids (pending)."""
    out = []
    for i in range(n):
        labels = rng.integers(0, 3, 8)
        fields: dict[str, Any] = {"logits": rng.standard_normal((8, 3)).tolist(), "labels": labels.tolist()}
        if i % 5 == 0:
            fields["labels"][:2] = [-1, -1]
            fields["ids"] = [f"id-{i}-0", f"id-{i}-1", *[None] * 6]
        out.append(fields)
    return out


def test_concurrent_small_writes_share_commits_count_once_and_replay_by_key(tmp_path, rng):
    batches = _batches(rng, 120)
    app = create_app(Settings(data_dir=tmp_path, max_concurrency=256))

    async def main() -> Any:
        lifespan, inbox = await _started(app)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                (await client.put("/v1/monitors/m", json={"n_classes": 3})).raise_for_status()
                group = app.state.monitors.get().group_commit
                commits, works = group.commits, group.works

                def post(i: int) -> Any:
                    content = json.dumps(batches[i]).encode()
                    headers = {"content-type": "application/json", "Idempotency-Key": f"batch-{i}"}
                    return client.post("/v1/monitors/m/observations", content=content, headers=headers)

                first = await asyncio.gather(*(post(i) for i in range(len(batches))))
                counted = (group.commits - commits, group.works - works)
                again = await asyncio.gather(*(post(i) for i in reversed(range(len(batches)))))
                totals = (await client.get("/v1/monitors/m")).json()["totals"]
                metrics = samples((await client.get("/metrics")).text, "m")
        finally:
            await inbox.put({"type": "lifespan.shutdown"})
            await lifespan
        return first, again, counted, totals, metrics

    first, again, (commits, works), totals, metrics = asyncio.run(main())
    assert [r.status_code for r in first] == [200] * 120, [r.text for r in first if r.status_code != 200]
    assert works == 120  # every write committed, each once
    assert commits < works / 4  # ... in shared transactions (one of 128 goes to a thread, alone)
    assert all(r.headers["idempotent-replayed"] == "true" for r in again)
    assert [r.content for r in reversed(again)] == [r.content for r in first]
    assert sum(r.json()["n_pending"] for r in first) == 2 * 24
    logits = np.concatenate([b["logits"] for b in batches])
    labels = np.concatenate([b["labels"] for b in batches])
    known = labels >= 0
    expected = -scipy.special.log_softmax(logits[known], axis=1)[np.arange(known.sum()), labels[known]]
    assert totals["n"] == 960 and totals["n_labelled"] == known.sum()
    np.testing.assert_allclose(totals["cross_entropy"], expected.mean(), rtol=1e-12)
    np.testing.assert_allclose(
        totals["accuracy"], (logits[known].argmax(1) == labels[known]).mean(), rtol=1e-12
    )
    # the Prometheus counters (a turn's writes summed, then added once) count every row once too
    correct = logits[known].argmax(1) == labels[known]
    assert metrics[("xent_monitor_samples_total", "")] == 960
    assert metrics[("xent_monitor_labelled_total", "")] == known.sum()
    assert metrics[("xent_monitor_correct_total", "")] == correct.sum()
    np.testing.assert_allclose(metrics[("xent_monitor_nll_nats_total", "")], expected.sum(), rtol=1e-12)
    bins = [metrics[("xent_monitor_bin_count_total", f"{(b + 1) / 10:.1f}")] for b in range(10)]
    assert sum(bins) == known.sum()


def test_a_write_refused_by_the_store_in_a_shared_commit_fails_alone(tmp_path, rng):
    """Past the pending cap a write is a 409 naming `ids`; the writes committed with it are kept."""
    batches = _batches(rng, 40)  # 8 of them leave 2 rows pending each: 16 > the cap of 7
    app = create_app(Settings(data_dir=tmp_path, max_pending_rows=7))

    async def main() -> tuple[list[httpx.Response], tuple[int, int], dict[str, Any]]:
        lifespan, inbox = await _started(app)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                (await client.put("/v1/monitors/m", json={"n_classes": 3})).raise_for_status()
                group = app.state.monitors.get().group_commit
                commits, works = group.commits, group.works
                answers = await asyncio.gather(
                    *(client.post("/v1/monitors/m/observations", json=b) for b in batches)
                )
                counted = (group.commits - commits, group.works - works)
                totals = (await client.get("/v1/monitors/m")).json()["totals"]
        finally:
            await inbox.put({"type": "lifespan.shutdown"})
            await lifespan
        return answers, counted, totals

    answers, (commits, works), totals = asyncio.run(main())
    codes = [r.status_code for r in answers]
    refused = [i for i, code in enumerate(codes) if code == 409]
    assert len(refused) == 5 and set(codes) == {200, 409}  # 3 pending batches fit (6 ≤ 7), 5 do not
    assert all(i % 5 == 0 for i in refused)
    assert all(answers[i].json()["errors"][0]["pointer"] == "#/ids" for i in refused)
    assert works == 35 and commits < 35 / 4
    kept = [b for i, b in enumerate(batches) if i not in refused]
    logits = np.concatenate([b["logits"] for b in kept])
    labels = np.concatenate([b["labels"] for b in kept])
    known = labels >= 0
    expected = -scipy.special.log_softmax(logits[known], axis=1)[np.arange(known.sum()), labels[known]]
    assert totals["n"] == 8 * 35
    np.testing.assert_allclose(totals["cross_entropy"], expected.mean(), rtol=1e-12)
