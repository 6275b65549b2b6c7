import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from service.core import InputError, PerplexityTotals, lm_eval_counts, sequence_perplexity, token_scores
from service.core.language import blocks


def _torch_ce(z: np.ndarray, y: np.ndarray, reduction: str, ignore_index: int = -100) -> np.ndarray:
    logits = torch.from_numpy(np.ascontiguousarray(z)).double().transpose(1, 2)  # (B, K, T)
    return F.cross_entropy(
        logits, torch.from_numpy(y), ignore_index=ignore_index, reduction=reduction
    ).numpy()


def _batch(rng, b=4, t=9, k=37, scale=4.0, dtype=np.float64):
    z = (scale * rng.standard_normal((b, t, k))).astype(dtype)
    y = rng.integers(0, k, (b, t))
    y[0, :3] = -100
    y[2, -2:] = -100
    return z, y


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_token_scores_match_torch_cross_entropy_each_reduction(rng, reduction):
    z, y = _batch(rng)
    s = token_scores(y, z)
    got = {"none": s.nll, "sum": s.nll.sum(), "mean": s.nll.sum() / s.scored.sum()}[reduction]
    np.testing.assert_allclose(got, _torch_ce(z, y, reduction), rtol=1e-12, atol=1e-14)


def test_token_scores_cross_block_boundaries(rng, monkeypatch):
    monkeypatch.setattr(
        blocks, "SEQUENCE_BLOCK_BYTES", 3 * 37 * 8
    )  # 3 rows a block: blocks straddle sequences
    z, y = _batch(rng)
    s = token_scores(y, z, confidence=True)
    np.testing.assert_allclose(s.nll, _torch_ce(z, y, "none"), rtol=1e-12, atol=1e-14)
    probs = torch.softmax(torch.from_numpy(z), -1).numpy()
    np.testing.assert_allclose(s.confidence[s.scored], probs.max(-1)[s.scored], rtol=1e-12)


def test_token_scores_non_contiguous_shifted_logits(rng, monkeypatch):
    monkeypatch.setattr(blocks, "SEQUENCE_BLOCK_BYTES", 4 * 37 * 8)
    z, y = _batch(rng, t=10)
    shifted, labels = z[:, :-1], y[:, 1:]  # the usual causal-LM shift: a non-contiguous view
    assert not shifted.flags.c_contiguous
    np.testing.assert_allclose(
        token_scores(labels, shifted).nll, _torch_ce(shifted, labels, "none"), rtol=1e-12, atol=1e-14
    )


def test_token_scores_custom_ignore_index_and_mask(rng):
    z, y = _batch(rng)
    y = np.where(y == -100, 0, y)
    y[1, 4] = 5
    mask = rng.random(y.shape) < 0.7
    s = token_scores(y, z, mask=mask, ignore_index=5)
    expected = _torch_ce(z, np.where(mask, y, 5), "none", ignore_index=5)
    np.testing.assert_allclose(s.nll, expected, rtol=1e-12, atol=1e-14)
    assert s.scored.sum() == (mask & (y != 5)).sum()
    np.testing.assert_array_equal(s.tokens, (mask & (y != 5)).sum(axis=1))


def test_token_scores_masked_labels_may_be_anything(rng):
    z, y = _batch(rng)
    mask = np.ones(y.shape, bool)
    mask[3, 5:] = False
    y[3, 5:] = 10**6  # a padding id outside the vocabulary, never read
    s = token_scores(y, z, mask=mask)
    assert (s.nll[3, 5:] == 0).all() and s.tokens[3] == 5


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_token_scores_16_bit_inputs_match_torch_on_same_values(rng, dtype):
    z, y = _batch(rng, k=300)
    tensor = torch.from_numpy(z).to(getattr(torch, dtype))
    if dtype == "bfloat16":
        sent = tensor.view(torch.int16).numpy().view(np.uint16)
        s = token_scores(y, sent, bfloat16=True)
    else:
        s = token_scores(y, tensor.numpy())
    assert s.nll.dtype == np.float32
    expected = _torch_ce(tensor.double().numpy(), y, "none")  # the same values, exactly widened
    np.testing.assert_allclose(s.nll, expected, rtol=2e-6, atol=2e-6)
    native = F.cross_entropy(tensor.float().transpose(1, 2), torch.from_numpy(y), reduction="none").numpy()
    np.testing.assert_allclose(s.nll, native, rtol=1e-5, atol=1e-5)


def test_token_scores_never_allocate_a_second_vocabulary_sized_array(rng):
    b, t, k = 2, 8, 150_000
    z = rng.standard_normal((b, t, k), dtype=np.float32)
    y = rng.integers(0, k, (b, t))
    import tracemalloc

    tracemalloc.start()
    s = token_scores(y, z, confidence=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 0.3 * z.nbytes, peak  # scratch of SEQUENCE_BLOCK_BYTES, not B·T·K
    np.testing.assert_allclose(s.nll, _torch_ce(z, y, "none"), rtol=1e-5)


def test_token_scores_extreme_logits_and_impossible_tokens():
    z = np.zeros((1, 3, 4), np.float32)
    z[0, 0] = [1e4, 0, 0, 0]  # label 1 is 1e4 below the top: exp overflows when shifted by z_y
    z[0, 1] = [0, -np.inf, 0, 0]  # an impossible token, not the label
    z[0, 2] = [0, -np.inf, 0, 0]  # the label itself is impossible: infinite loss (as torch)
    y = np.array([[1, 0, 1]])
    s = token_scores(y, z, confidence=True)
    expected = F.cross_entropy(
        torch.from_numpy(z).transpose(1, 2), torch.from_numpy(y), reduction="none"
    ).numpy()
    np.testing.assert_array_equal(s.nll, expected)
    assert s.nll[0, 2] == np.inf and s.rank[0, 2] == 3
    np.testing.assert_allclose(s.confidence[0], [1.0, 1 / 3, 1 / 3], rtol=1e-6)


def test_token_scores_ranks_give_torch_topk_accuracy(rng):
    z, y = _batch(rng, k=50)
    s = token_scores(y, z)
    ok = y != -100
    top5 = torch.topk(torch.from_numpy(z), 5, dim=-1).indices.numpy()
    expected = (top5 == np.where(ok, y, 0)[..., None]).any(-1) & ok
    np.testing.assert_array_equal(s.rank < 5, expected | ~ok & (s.rank < 5))
    np.testing.assert_array_equal(s.hits(5), expected.sum(axis=1))
    np.testing.assert_array_equal(s.hits(1), ((z.argmax(-1) == y) & ok).sum(axis=1))


def test_token_scores_from_probabilities_match_logits(rng):
    z, y = _batch(rng)
    p = torch.softmax(torch.from_numpy(z), -1).numpy()
    from_logits = token_scores(y, z, confidence=True)
    from_probs = token_scores(y, p, kind="probs", confidence=True)
    np.testing.assert_allclose(from_probs.nll, from_logits.nll, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(from_probs.rank, from_logits.rank)
    np.testing.assert_allclose(from_probs.confidence, from_logits.confidence, rtol=1e-12)


def test_token_scores_probabilities_clip_zero_by_eps():
    p = np.array([[[1.0, 0.0], [0.5, 0.5]]])
    s = token_scores([[1, 0]], p, kind="probs", eps=1e-12)
    np.testing.assert_allclose(s.nll, [[-math.log(1e-12), math.log(2)]])
    assert s.n_clipped == 1
    assert token_scores([[1, 0]], p, kind="probs", eps=0).nll[0, 0] == np.inf


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": [[0, 1]], "values": np.zeros((1, 3, 2))}, r"`labels` must be B×T = 1×3"),
        ({"labels": [[0, 2, 0]], "values": np.zeros((1, 3, 2))}, r"`labels\[0\]\[1\]` must lie in \[0, 2\)"),
        ({"labels": [[0]], "values": np.zeros((1, 2))}, r"`logits` must be B×T×K"),
        (
            {"labels": [[0, 1, 0]], "values": np.zeros((1, 3, 2)), "mask": [[1, 1]]},
            r"`mask` must be B×T = 1×3",
        ),
        ({"labels": [[0, 1, 0]], "values": np.zeros((1, 3, 2)), "mask": [[1, 2, 0]]}, r"`mask` must hold"),
        (
            {"labels": [[0]], "values": np.full((1, 1, 2), np.nan)},
            r"`logits\[0\]\[0\]\[0\]` must be finite or -inf",
        ),
        ({"labels": [[0]], "values": np.full((1, 1, 2), -np.inf)}, r"`logits\[0\]\[0\]` must hold a finite"),
        (
            {"labels": [[0]], "values": np.full((1, 1, 2), 0.6), "kind": "probs"},
            r"`probs\[0\]\[0\]` must sum",
        ),
        ({"labels": [[0]], "values": np.zeros((1, 1, 2), np.float32), "bfloat16": True}, r"bit patterns"),
    ],
)
def test_token_scores_bad_input_names_field(kwargs, match):
    with pytest.raises(InputError, match=match):
        token_scores(**kwargs)


def test_token_scores_masked_out_nan_rows_still_rejected():
    """A NaN is rejected wherever it is: a silently wrong perplexity is worse than a 422."""
    z = np.zeros((1, 2, 3))
    z[0, 1, 2] = np.nan
    with pytest.raises(InputError, match=r"`logits\[0\]\[1\]\[2\]`"):
        token_scores([[0, -100]], z)


# --- perplexities ------------------------------------------------------------------------


def _docs():
    """Three hand-built documents: (log-likelihood, tokens, text)."""
    return [(-12.5, 5, "The cat sat."), (-3.0, 2, "héllo  wörld"), (-40.25, 11, "a\nb c d e")]


def test_perplexities_follow_lm_eval_harness_formulas():
    docs = _docs()
    ll = [d[0] for d in docs]
    n_bytes, n_words = lm_eval_counts([d[2] for d in docs])
    assert list(n_bytes) == [12, 14, 9] and list(n_words) == [3, 2, 5]
    t = PerplexityTotals.from_sequences([-x for x in ll], [d[1] for d in docs], bytes=n_bytes, words=n_words)
    m = t.metrics()
    # lm_eval/api/metrics.py: perplexity = exp(-mean(items)); weighted_mean = sum(a) / sum(b)
    assert m["lm_eval_perplexity"] == pytest.approx(math.exp(-sum(ll) / len(ll)), rel=1e-15)
    assert m["byte_perplexity"] == pytest.approx(math.exp(-sum(ll) / (12 + 14 + 9)), rel=1e-15)
    assert m["bits_per_byte"] == pytest.approx(-sum(ll) / (12 + 14 + 9) / math.log(2), rel=1e-15)
    assert m["word_perplexity"] == pytest.approx(math.exp(-sum(ll) / (3 + 2 + 5)), rel=1e-15)
    # token-weighted corpus perplexity and Hugging Face evaluate's mean of per-text perplexities
    assert m["token_perplexity"] == pytest.approx(math.exp(-sum(ll) / 18), rel=1e-15)
    per_text = [math.exp(-d[0] / d[1]) for d in docs]
    assert m["hf_mean_perplexity"] == pytest.approx(sum(per_text) / 3, rel=1e-15)
    assert m["bits_per_token"] == pytest.approx(math.log2(m["token_perplexity"]), rel=1e-14)
    np.testing.assert_allclose(sequence_perplexity([-x for x in ll], [5, 2, 11]), per_text, rtol=1e-15)


def test_perplexities_from_token_scores_match_torch_mean_and_hf_evaluate(rng):
    z, y = _batch(rng)
    s = token_scores(y, z)
    t = PerplexityTotals.from_sequences(s.sequence_nll, s.tokens, hits={1: s.hits(1), 5: s.hits(5)})
    m = t.metrics()
    assert m["nll_per_token"] == pytest.approx(float(_torch_ce(z, y, "mean")), rel=1e-12)
    assert m["token_perplexity"] == pytest.approx(math.exp(float(_torch_ce(z, y, "mean"))), rel=1e-12)
    # evaluate's perplexity metric: exp((loss * mask).sum(1) / mask.sum(1)), then np.mean
    losses = torch.from_numpy(_torch_ce(z, y, "none"))
    mask = torch.from_numpy(y != -100).double()
    hf = torch.exp((losses * mask).sum(1) / mask.sum(1)).numpy()
    assert m["hf_mean_perplexity"] == pytest.approx(float(np.mean(hf)), rel=1e-12)
    ok = y != -100
    assert m["accuracy"] == pytest.approx(((z.argmax(-1) == y) & ok).sum() / ok.sum())
    assert 0 <= m["accuracy"] <= m["top_5_accuracy"] <= 1


def test_perplexity_totals_merge_exactly(rng):
    nll = rng.random(10) * 20
    tokens = rng.integers(0, 9, 10)
    n_bytes = rng.integers(1, 50, 10)
    hits = {1: rng.integers(0, 3, 10)}
    whole = PerplexityTotals.from_sequences(nll, tokens, bytes=n_bytes, hits=hits)
    a = PerplexityTotals.from_sequences(nll[:4], tokens[:4], bytes=n_bytes[:4], hits={1: hits[1][:4]})
    b = PerplexityTotals.from_sequences(nll[4:], tokens[4:], bytes=n_bytes[4:], hits={1: hits[1][4:]})
    merged = a.merge(b)
    assert merged.tokens == whole.tokens and merged.bytes == whole.bytes and merged.hits == whole.hits
    for key, value in whole.metrics().items():
        assert merged.metrics()[key] == (None if value is None else pytest.approx(value, rel=1e-13)), key
    assert a.merge(PerplexityTotals.from_sequences([1.0], [1])).bytes is None  # not every batch had bytes


def test_perplexity_of_uniform_model_is_vocabulary_size():
    k = 11
    s = token_scores(np.zeros((2, 3), np.int64), np.zeros((2, 3, k)))
    m = PerplexityTotals.from_sequences(s.sequence_nll, s.tokens).metrics()
    assert m["token_perplexity"] == pytest.approx(k, rel=1e-13)
    assert m["hf_mean_perplexity"] == pytest.approx(k, rel=1e-13)
    assert m["bits_per_token"] == pytest.approx(math.log2(k), rel=1e-13)
    assert m["lm_eval_perplexity"] == pytest.approx(k**3, rel=1e-12)  # per document of 3 tokens


def test_perplexity_totals_empty_sequences_and_missing_counts():
    m = PerplexityTotals.from_sequences([0.0, 2.0], [0, 1]).metrics()
    assert m["hf_mean_perplexity"] == pytest.approx(math.exp(2.0))  # the empty text is left out
    assert m["lm_eval_perplexity"] == pytest.approx(math.exp(1.0))  # it is still a document
    assert m["byte_perplexity"] is None and m["bits_per_byte"] is None
    with pytest.raises(InputError, match="`bytes` must hold one count per sequence"):
        PerplexityTotals.from_sequences([1.0], [1], bytes=[1, 2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_token_scores_entropy_matches_scipy(rng, dtype, monkeypatch):
    from scipy.stats import entropy

    monkeypatch.setattr(blocks, "SEQUENCE_BLOCK_BYTES", 5 * 37 * 16)
    z, y = _batch(rng, dtype=dtype)
    z[1, 2, 4] = -np.inf  # an impossible token: 0 · log 0
    z[2, 3, 0] = 1e4 if dtype == np.float64 else 200  # the label far below the top: the shifted sum overflows
    p = torch.softmax(torch.from_numpy(z).double(), -1).numpy()
    expected = np.where(y != -100, entropy(p, axis=-1), 0)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(token_scores(y, z, entropy=True).entropy, expected, rtol=tol, atol=tol)
    from_probs = token_scores(y, p.astype(dtype), kind="probs", entropy=True).entropy
    np.testing.assert_allclose(from_probs, expected, rtol=tol, atol=tol)


def test_token_scores_invariant_to_a_shift_of_each_position(rng):
    """CE(z + c) = CE(z) for any per-position constant c (DESIGN.md identity), ranks unchanged."""
    z, y = _batch(rng)
    shift = 1e3 * rng.standard_normal(y.shape)[..., None]
    a, b = token_scores(y, z, confidence=True), token_scores(y, z + shift, confidence=True)
    np.testing.assert_allclose(b.nll, a.nll, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(b.rank, a.rank)
    np.testing.assert_allclose(b.confidence, a.confidence, rtol=1e-9)


def test_token_scores_probabilities_are_exp_of_minus_nll(rng):
    """exp(-nll) is the label's probability: it equals softmax(z)[y] (identity perplexity = exp(mean NLL))."""
    z, y = _batch(rng)
    s = token_scores(y, z)
    p = torch.softmax(torch.from_numpy(z), -1).numpy()
    picked = np.take_along_axis(p, np.where(y < 0, 0, y)[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.exp(-s.nll)[s.scored], picked[s.scored], rtol=1e-12)
