"""A perplexity time series built from any partition of the sequences equals one scoring answer."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from service.core import PerplexitySeries, PerplexityTotals

URL = "/v1/cross-entropy"


def _sequences(rng, b=24, t=10, k=13):
    z = 2.0 * rng.standard_normal((b, t, k))
    y = rng.integers(0, k, (b, t))
    y[rng.random((b, t)) < 0.2] = -100
    y[3] = -100  # a sequence with no scored token
    nll = F.cross_entropy(
        torch.from_numpy(z).transpose(1, 2), torch.from_numpy(y), ignore_index=-100, reduction="none"
    ).numpy()
    hits = (z.argmax(-1) == y) & (y != -100)
    return z, y, nll.sum(1), (y != -100).sum(1), hits.sum(1)


def test_random_partitions_over_time_merge_to_one_answer(client, rng):
    z, y, nll, tokens, hits = _sequences(rng)
    n_bytes = rng.integers(5, 60, len(nll))
    answer = client.post(
        URL,
        json={"logits": z.tolist(), "labels": y.tolist(), "ignore_index": -100, "bytes": n_bytes.tolist()},
    ).json()["language_model"]
    time = rng.uniform(0, 600, len(nll))
    for _ in range(5):  # random partitions, merged in random order
        part = rng.integers(0, 4, len(nll))
        series = [
            PerplexitySeries.observe(
                time[part == i],
                nll[part == i],
                tokens[part == i],
                width=60,
                bytes=n_bytes[part == i],
                hits=hits[part == i],
            )
            for i in rng.permutation(4)
        ]
        merged = series[0]
        for other in series[1:]:
            merged = merged.merge(other)
        total = merged.totals()
        assert total.sequences == answer["totals"]["sequences"] == len(nll)
        assert total.tokens == answer["totals"]["tokens"] and total.bytes == answer["totals"]["bytes"]
        assert total.hits[1] == answer["totals"]["top1_hits"]
        assert total.nll == pytest.approx(answer["totals"]["nll"], rel=1e-12)
        for name, value in total.metrics().items():
            if value is None:  # words were not sent
                assert answer["metrics"][name] is None, name
            else:
                assert answer["metrics"][name] == pytest.approx(value, rel=1e-12), name


def test_each_bucket_is_its_own_sequences(rng):
    _, _, nll, tokens, hits = _sequences(rng)
    time = rng.uniform(0, 300, len(nll))
    series = PerplexitySeries.observe(time, nll, tokens, width=60, hits=hits)
    assert series.start.tolist() == sorted({int(t // 60) * 60 for t in time})
    metrics = series.metrics()
    for i, start in enumerate(series.start):
        inside = (time >= start) & (time < start + 60)
        expected = PerplexityTotals.from_sequences(nll[inside], tokens[inside], hits={1: hits[inside]})
        got, want = series.totals(i, i + 1).metrics(), expected.metrics()
        assert got.keys() == want.keys()
        for name, value in want.items():
            assert got[name] == (None if value is None else pytest.approx(value, rel=1e-12)), name
        # closed forms: token perplexity is exp of the bucket's mean token NLL; lm-eval's per document
        assert metrics["token_perplexity"][i] == pytest.approx(
            math.exp(nll[inside].sum() / tokens[inside].sum()), rel=1e-12
        )
        assert metrics["lm_eval_perplexity"][i] == pytest.approx(math.exp(nll[inside].mean()), rel=1e-12)
        assert metrics["bits_per_token"][i] == pytest.approx(
            nll[inside].sum() / tokens[inside].sum() / math.log(2), rel=1e-12
        )
    assert np.isnan(metrics["bits_per_byte"]).all()  # no bytes were sent


def test_bytes_known_only_where_every_sequence_had_them():
    a = PerplexitySeries.observe([0, 10], [2.0, 2.0], [1, 1], width=60, bytes=[4, 4])
    b = PerplexitySeries.observe([20, 70], [1.0, 1.0], [1, 1], width=60)
    merged = a.merge(b)
    assert merged.totals(0, 1).bytes is None and merged.totals(1, 2).bytes is None
    assert a.totals().metrics()["bits_per_byte"] == pytest.approx(4.0 / 8 / math.log(2))
    assert np.isnan(merged.metrics()["bits_per_byte"]).all()
