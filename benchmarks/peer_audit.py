"""Audit of issue #20 over HTTP: each option the issue names, on each endpoint, against its peer.

Run a server, then ``python -m benchmarks.peer_audit PORT``: one line per (option, endpoint) —
``OK`` (agrees with the peer), ``200`` (answered, no peer check), ``HTTP 4xx`` (still refused, with
the reason) or ``DISAGREES``. Not a test: it lists what a peer user still meets.
"""

import math
import sys

import httpx
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from scipy.special import expit, rel_entr, softmax
from scipy.stats import entropy as sp_entropy
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss, log_loss


def main() -> None:
    """Run every check against the server on the port given (default 8000) and print the table."""
    url = f"http://127.0.0.1:{sys.argv[1] if len(sys.argv) > 1 else 8000}"
    c = httpx.Client(base_url=url, timeout=60)
    rng = np.random.default_rng(5)
    rows = []

    def call(name, path, body, check=None):
        r = c.post(path, json=body)
        if r.status_code != 200:
            rows.append((name, path, f"HTTP {r.status_code}: {r.json().get('detail', '')[:150]}"))
            return None
        j = r.json()
        if check is None:
            rows.append((name, path, "200 (no peer check)"))
            return j
        try:
            msg = check(j)
            rows.append((name, path, "OK" + (f" {msg}" if msg else "")))
        except AssertionError as e:
            rows.append((name, path, f"DISAGREES {e}"))
        return j

    def _fail(message):
        raise AssertionError(message)

    def close(a, b, rel=1e-9, abs_=1e-12):
        assert math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_), f"{a} vs {b}"

    N, K = 200, 3
    logits = 2 * rng.standard_normal((N, K))
    probs = softmax(logits, axis=1)
    labels = (logits / 2 + rng.gumbel(size=logits.shape)).argmax(1)
    w = rng.random(N) + 0.1
    z = 2 * rng.standard_normal(N)
    p = expit(z)
    y = (rng.random(N) < expit(z / 2)).astype(int)
    soft = softmax(rng.standard_normal((N, K)), axis=1)

    # sample_weight on cross-entropy
    call(
        "sample_weight categorical probs",
        "/v1/cross-entropy",
        {"probs": probs.tolist(), "labels": labels.tolist(), "sample_weight": w.tolist()},
        lambda j: close(j["loss"], log_loss(labels, probs, sample_weight=w)),
    )
    call(
        "sample_weight binary probs",
        "/v1/cross-entropy",
        {"probs": p.tolist(), "labels": y.tolist(), "sample_weight": w.tolist()},
        lambda j: close(j["loss"], log_loss(y, p, sample_weight=w)),
    )
    call(
        "sample_weight soft targets logits",
        "/v1/cross-entropy",
        {"logits": logits.tolist(), "targets": soft.tolist(), "sample_weight": w.tolist()},
        lambda j: close(
            j["loss"],
            float(
                (
                    F.cross_entropy(torch.tensor(logits), torch.tensor(soft), reduction="none").numpy() * w
                ).sum()
                / w.sum()
            ),
        ),
    )
    # sample_weight on divergence
    q = softmax(rng.standard_normal((N, K)), axis=1)
    call(
        "sample_weight divergence",
        "/v1/divergence",
        {"p_probs": probs.tolist(), "q_probs": q.tolist(), "sample_weight": w.tolist()},
        lambda j: close(
            j["mean"]["kl_pq"] if "mean" in j else j["kl_pq"],
            float((rel_entr(probs, q).sum(1) * w).sum() / w.sum()),
        ),
    )
    # sample_weight on calibration parts
    for metrics in (["ece"], ["brier"], ["reliability"]):
        call(
            f"sample_weight calibration {metrics}",
            "/v1/calibration",
            {"probs": p.tolist(), "labels": y.tolist(), "sample_weight": w.tolist(), "metrics": metrics},
            (lambda j: close(j["metrics"]["brier"], brier_score_loss(y, p, sample_weight=w)))
            if metrics == ["brier"]
            else None,
        )
    call(
        "sample_weight calibration brier decomposition (default metrics)",
        "/v1/calibration",
        {"probs": p.tolist(), "labels": y.tolist(), "sample_weight": w.tolist(), "metrics": ["brier"]},
        lambda j: None if j["metrics"]["brier_reliability"] is not None else _fail("no decomposition"),
    )
    call(
        "sample_weight calibration bootstrap",
        "/v1/calibration",
        {
            "probs": p.tolist(),
            "labels": y.tolist(),
            "sample_weight": w.tolist(),
            "metrics": ["ece"],
            "bootstrap": {"n": 50},
        },
    )
    # fits
    call(
        "sample_weight temperature",
        "/v1/temperature",
        {"logits": logits.tolist(), "labels": labels.tolist(), "sample_weight": w.tolist()},
    )
    for method in ("platt", "isotonic", "beta", "vector", "matrix", "histogram"):
        body = {"method": method, "sample_weight": w.tolist()}
        body |= (
            {"probs": p.tolist(), "labels": y.tolist()}
            if method in ("platt", "isotonic", "beta", "histogram")
            else {"logits": logits.tolist(), "labels": labels.tolist()}
        )
        call(f"sample_weight recalibrate {method}", "/v1/recalibrate", body)
    # classes
    names = np.array(["bird", "cat", "dog"])[labels]
    call(
        "classes strings",
        "/v1/cross-entropy",
        {"probs": probs.tolist(), "labels": names.tolist(), "classes": ["bird", "cat", "dog"]},
        lambda j: close(j["loss"], log_loss(names, probs, labels=["bird", "cat", "dog"])),
    )
    call(
        "classes single-class y",
        "/v1/cross-entropy",
        {"probs": probs.tolist(), "labels": ["cat"] * N, "classes": ["bird", "cat", "dog"]},
        lambda j: close(j["loss"], log_loss(["cat"] * N, probs, labels=["bird", "cat", "dog"])),
    )
    r = c.post(
        "/v1/cross-entropy",
        json={"probs": probs.tolist(), "labels": names.tolist(), "classes": ["bird", "cat", "dog", "eel"]},
    )
    rows.append(
        (
            "classes > columns is 422 naming both counts",
            "/v1/cross-entropy",
            f"HTTP {r.status_code}: {r.json().get('detail')}",
        )
    )
    yn = np.array(["ham", "spam"])[y]
    call(
        "pos_label binary",
        "/v1/calibration",
        {
            "probs": p.tolist(),
            "labels": yn.tolist(),
            "classes": ["ham", "spam"],
            "pos_label": "ham",
            "metrics": ["brier"],
            "brier_scale": "half",
        },
        lambda j: close(j["metrics"]["brier"], brier_score_loss(yn, p, pos_label="ham")),
    )
    ints = np.array([10, 20, 30])[labels]
    for path in ("/v1/cross-entropy", "/v1/calibration", "/v1/temperature", "/v1/recalibrate", "/v1/apply"):
        extra = (
            {"method": "vector"}
            if path == "/v1/recalibrate"
            else {"temperature": 1.3}
            if path == "/v1/apply"
            else {}
        )
        call(
            "classes + targets",
            path,
            dict(logits=logits.tolist(), targets=soft.tolist(), classes=[10, 20, 30], **extra),
        )
        if path != "/v1/apply":
            pad = ints.copy()
            pad[:20] = -100
            call(
                "classes + ignore_index",
                path,
                dict(
                    logits=logits.tolist(),
                    labels=pad.tolist(),
                    classes=[10, 20, 30],
                    ignore_index=-100,
                    **extra,
                ),
                (
                    lambda j: close(
                        j["loss"],
                        float(
                            F.cross_entropy(
                                torch.tensor(logits),
                                torch.tensor(np.where(np.arange(N) < 20, -100, labels)),
                                ignore_index=-100,
                            )
                        ),
                    )
                )
                if path == "/v1/cross-entropy"
                else None,
            )
    # multilabel
    Y = (rng.random((N, K)) < 0.4).astype(float)
    P = rng.uniform(0.02, 0.98, (N, K))
    call(
        "multilabel cross-entropy torch",
        "/v1/cross-entropy",
        {"multilabel": True, "probs": P.tolist(), "targets": Y.tolist()},
        lambda j: close(j["loss"], float(F.binary_cross_entropy(torch.tensor(P), torch.tensor(Y)))),
    )
    call(
        "multilabel cross-entropy sklearn",
        "/v1/cross-entropy",
        {"multilabel": True, "probs": P.tolist(), "targets": Y.tolist(), "multilabel_convention": "sklearn"},
        lambda j: close(j["loss"], log_loss(Y, P)),
    )
    for metrics in (
        ["brier"],
        ["ece"],
        ["ace_nixon", "ace_netcal"],
        ["reliability"],
        ["smooth_ece"],
        ["debiased_l2"],
        ["spiegelhalter"],
    ):
        call(
            f"multilabel calibration {metrics}",
            "/v1/calibration",
            {"multilabel": True, "probs": P.tolist(), "targets": Y.tolist(), "metrics": metrics},
            (
                lambda j: close(
                    j["metrics"]["brier"], np.mean([brier_score_loss(Y[:, k], P[:, k]) for k in range(K)])
                )
            )
            if metrics == ["brier"]
            else None,
        )
    call(
        "multilabel calibration bootstrap",
        "/v1/calibration",
        {"multilabel": True, "probs": P.tolist(), "targets": Y.tolist(), "bootstrap": {"n": 50}},
    )
    # BCE weights
    pw = 2.5
    ew = rng.random(N)
    call(
        "pos_weight + weight logits",
        "/v1/cross-entropy",
        {"logits": z.tolist(), "labels": y.tolist(), "pos_weight": pw, "weight": ew.tolist()},
        lambda j: close(
            j["loss"],
            float(
                F.binary_cross_entropy_with_logits(
                    torch.tensor(z),
                    torch.tensor(y, dtype=torch.float64),
                    pos_weight=torch.tensor(pw),
                    weight=torch.tensor(ew),
                )
            ),
        ),
    )
    call(
        "weight probs",
        "/v1/cross-entropy",
        {"probs": p.tolist(), "labels": y.tolist(), "weight": ew.tolist()},
        lambda j: close(
            j["loss"],
            float(
                F.binary_cross_entropy(
                    torch.tensor(p), torch.tensor(y, dtype=torch.float64), weight=torch.tensor(ew)
                )
            ),
        ),
    )
    # divergence outputs
    kl_rows = rel_entr(probs, q).sum(1)
    for red, want in (("none", kl_rows), ("sum", kl_rows.sum()), ("mean", kl_rows.mean())):

        def chk(j, red=red, want=want):
            if red == "none":
                np.testing.assert_allclose(j["per_sample"]["kl_pq"], want, rtol=1e-12)
            else:
                close(j[red]["kl_pq"] if red in j else j["kl_pq"], want, rel=1e-12)

        call(
            f"divergence reduction {red}",
            "/v1/divergence",
            {"p_probs": probs.tolist(), "q_probs": q.tolist(), "reduction": red},
            chk,
        )
    call(
        "divergence elementwise",
        "/v1/divergence",
        {"p_probs": probs.tolist(), "q_probs": q.tolist(), "elementwise": True},
        lambda j: np.testing.assert_allclose(
            np.asarray(j["terms"]["kl_pq"] if isinstance(j.get("terms"), dict) else j["terms"]),
            rel_entr(probs, q),
            rtol=1e-12,
            atol=1e-15,
        ),
    )
    call(
        "divergence broadcast one q row",
        "/v1/divergence",
        {"p_probs": probs.tolist(), "q_probs": [q[0].tolist()], "reduction": "none"},
        lambda j: np.testing.assert_allclose(
            j["per_sample"]["kl_pq"], sp_entropy(probs, q[0][None, :], axis=1), rtol=1e-12
        ),
    )
    call(
        "divergence base 3.7",
        "/v1/divergence",
        {"p_probs": probs.tolist(), "q_probs": q.tolist(), "base": 3.7},
        lambda j: close(
            j["kl_pq"] if "kl_pq" in j else j["mean"]["kl_pq"],
            float(rel_entr(probs, q).sum(1).mean() / np.log(3.7)),
        ),
    )
    # ignore_index
    pad = labels.copy()
    pad[:30] = -100
    for path, extra in (
        ("/v1/calibration", {}),
        ("/v1/temperature", {}),
        ("/v1/recalibrate", {"method": "vector"}),
    ):
        call(
            "ignore_index",
            path,
            dict(logits=logits.tolist(), labels=pad.tolist(), ignore_index=-100, **extra),
            lambda j: None if j["n_ignored"] == 30 else _fail(j["n_ignored"]),
        )
    for red, want in (("sum", 0.0), ("none", None), ("mean", "NaN")):
        call(
            f"every label ignored reduction {red}",
            "/v1/cross-entropy",
            {"logits": logits[:5].tolist(), "labels": [-100] * 5, "ignore_index": -100, "reduction": red},
            lambda j, want=want, red=red: (
                None
                if (red == "none" and j["losses"] == [0.0] * 5) or j["loss"] == want
                else _fail(j["loss"])
            ),
        )
    # isotonic on scores
    s = 3 * rng.standard_normal(N)
    ys = (rng.random(N) < expit(s)).astype(int)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s, ys)
    call(
        "isotonic scores",
        "/v1/recalibrate",
        {"method": "isotonic", "scores": s.tolist(), "labels": ys.tolist(), "return_probs": True},
        lambda j: np.testing.assert_allclose(j["probs"], iso.predict(s), atol=1e-12),
    )
    # top_k
    call(
        "top_k cross-entropy",
        "/v1/cross-entropy",
        {"logits": logits.tolist(), "labels": labels.tolist(), "top_k": [1, 2]},
        lambda j: close(
            j["top_k_accuracy"]["2"], np.mean((np.argsort(-logits, 1)[:, :2] == labels[:, None]).any(1))
        ),
    )
    call(
        "top_k calibration",
        "/v1/calibration",
        {"logits": logits.tolist(), "labels": labels.tolist(), "top_k": [1, 2]},
    )
    # disagreements
    P4 = [[0.9, 0.05, 0.05], [0.85, 0.1, 0.05], [0.5, 0.3, 0.2], [0.35, 0.33, 0.32]]
    call(
        "netcal ACE sample_threshold=2",
        "/v1/calibration",
        {
            "probs": P4,
            "labels": [0, 1, 0, 2],
            "preset": "netcal",
            "n_bins": 5,
            "min_bin_count": 2,
            "metrics": ["ace_netcal"],
        },
        lambda j: close(j["metrics"]["ace_netcal"], 0.125),
    )
    pp, qq = 0.9456657713430001, 0.9456657713430094
    call(
        "rel_entr near-equal",
        "/v1/divergence",
        {"p_probs": [pp], "q_probs": [qq], "elementwise": True},
        lambda j: close(
            (j["terms"]["kl_pq"] if isinstance(j.get("terms"), dict) else j["terms"])[0][1],
            rel_entr(pp, qq),
            rel=1e-12,
        ),
    )
    try:
        import netcal.metrics as nm

        Pf = rng.dirichlet(np.ones(3), 300).astype(np.float32)
        yf = rng.integers(0, 3, 300)
        want = nm.ECE(bins=10, equal_intervals=False).measure(Pf, yf)
        call(
            "netcal quantile FP32",
            "/v1/calibration",
            {
                "probs": {"datatype": "FP32", "shape": [300, 3], "data": Pf.ravel().tolist()},
                "labels": yf.tolist(),
                "preset": "netcal",
                "binning": "quantile",
                "n_bins": 10,
                "metrics": ["ece"],
            },
            lambda j: close(j["metrics"]["ece"], want, rel=1e-12, abs_=1e-14),
        )
    except ImportError:
        rows.append(("netcal quantile FP32", "-", "netcal not importable"))
    # T = inf through apply
    call("apply T=Infinity", "/v1/apply", {"logits": logits.tolist(), "temperature": "Infinity"})
    call("apply T=0", "/v1/apply", {"logits": logits.tolist(), "temperature": 0})

    width = max(len(r[0]) for r in rows)
    for name, path, result in rows:
        print(f"{name:<{width}}  {path:<18} {result}")


if __name__ == "__main__":
    main()
