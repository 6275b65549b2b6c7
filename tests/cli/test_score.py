"""``xent score``: files in, the core's numbers out, documented exit codes."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import log_softmax
from sklearn.metrics import log_loss

from service.__main__ import main


@pytest.fixture
def files(tmp_path, rng):
    logits = (3 * rng.standard_normal((500, 6))).astype(np.float32)
    # labels drawn from softmax(logits / 2): the logits are overconfident, the fitted T is near 2
    cumulative = np.cumsum(np.exp(log_softmax(logits.astype(np.float64) / 2, axis=1)), axis=1)
    labels = np.argmax(cumulative > rng.random((500, 1)), axis=1)
    probs = np.exp(log_softmax(logits.astype(np.float64), axis=1))
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    np.savetxt(tmp_path / "probs.csv", probs, delimiter=",", header="a,b,c,d,e,f", comments="")
    np.savetxt(tmp_path / "labels.csv", labels, fmt="%d")
    np.savez(tmp_path / "batch.npz", logits=logits, labels=labels, extra=labels)
    return tmp_path, logits, labels, probs


def score_json(capsys, *args):
    assert main(["score", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def expected_ce(logits, labels):
    return -log_softmax(logits.astype(np.float64), axis=1)[np.arange(len(labels)), labels].mean()


def test_score_npy_logits_matches_scipy(files, capsys):
    path, logits, labels, _ = files
    report = score_json(capsys, path / "logits.npy", path / "labels.npy", "--logits")
    assert report["metrics"]["ce"] == pytest.approx(expected_ce(logits, labels), rel=1e-5)
    assert report["metrics"]["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == labels))
    assert report["input"] == "logits"
    assert report["dtype"] == "float32"
    assert report["n"] == 500


def test_score_csv_probabilities_with_header_matches_sklearn_in_bits(files, capsys):
    path, _, labels, probs = files
    report = score_json(capsys, path / "probs.csv", path / "labels.csv", "--base", "2")
    assert report["input"] == "probs"
    assert report["detected"] is True
    assert report["unit"] == "bits"
    assert report["metrics"]["ce"] == pytest.approx(log_loss(labels, probs) / np.log(2), rel=1e-6)


def test_score_npz_picks_arrays_by_their_names(files, capsys):
    path, logits, labels, _ = files
    report = score_json(capsys, path / "batch.npz", path / "batch.npz", "--metrics", "ce")
    assert report["input"] == "logits"
    assert report["detected"] is False
    assert list(report["metrics"]) == ["ce"]
    assert report["metrics"]["ce"] == pytest.approx(expected_ce(logits, labels), rel=1e-5)
    named = score_json(
        capsys, f"{path / 'batch.npz'}:logits", f"{path / 'batch.npz'}:extra", "--metrics", "ce"
    )
    assert named["metrics"] == report["metrics"]


def test_score_binary_probability_vector(tmp_path, capsys):
    np.savetxt(tmp_path / "p.csv", [0.9, 0.2, 0.5])
    np.savetxt(tmp_path / "y.csv", [1, 0, 1], fmt="%d")
    report = score_json(capsys, tmp_path / "p.csv", tmp_path / "y.csv")
    assert report["form"] == "binary"
    assert report["metrics"]["ce"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.5])), rel=1e-12)
    assert report["metrics"]["entropy"] == pytest.approx(
        -np.mean([p * np.log(p) + (1 - p) * np.log(1 - p) for p in (0.9, 0.2, 0.5)]), rel=1e-12
    )


def test_score_infinite_loss_is_reported_as_a_string_in_json(tmp_path, capsys):
    np.save(tmp_path / "p.npy", np.array([[1.0, 0.0]]))
    np.save(tmp_path / "y.npy", np.array([1]))
    report = score_json(capsys, tmp_path / "p.npy", tmp_path / "y.npy", "--eps", "0", "--metrics", "ce")
    assert report["metrics"]["ce"] == "Infinity"


def test_score_prints_a_readable_table(files, capsys):
    path, logits, labels, _ = files
    assert main(["score", str(path / "logits.npy"), str(path / "labels.npy")]) == 0
    out = capsys.readouterr().out
    assert "logits (detected), categorical, float32" in out
    assert re.search(rf"^cross-entropy +{expected_ce(logits, labels):.6f} nats$", out, re.MULTILINE)
    assert "samples      500" in out
    assert "ECE (top-label, 15 bins)" in out


def test_score_shows_progress_when_asked(files, capsys):
    path, *_ = files
    assert main(["score", str(path / "probs.csv"), str(path / "labels.csv"), "--progress"]) == 0
    assert "100%" in capsys.readouterr().err


def test_score_unknown_metric_exits_2(files, capsys):
    path, *_ = files
    with pytest.raises(SystemExit) as caught:
        main(["score", str(path / "logits.npy"), str(path / "labels.npy"), "--metrics", "ce,nope"])
    assert caught.value.code == 2
    assert "unknown metric nope" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("predictions", "labels", "message"),
    [
        ("missing.npy", "labels.npy", "missing.npy: no such file"),
        ("labels.csv", "batch.npz:nope", "has no array 'nope'"),
        ("logits.npy", "notes.txt.gz", "unknown format"),
        ("batch.npz", "multi.npz", "name the labels as"),
    ],
)
def test_score_unreadable_file_exits_3(files, capsys, predictions, labels, message):
    path, *_ = files
    (path / "notes.txt.gz").write_bytes(b"x")
    np.savez(path / "multi.npz", a=[0], b=[1])
    assert main(["score", str(path / predictions), str(path / labels)]) == 3
    assert message in capsys.readouterr().err


def test_score_rejected_values_exit_4_naming_the_element(files, capsys):
    path, logits, labels, _ = files
    labels[7] = 6
    np.save(path / "bad.npy", labels)
    assert main(["score", str(path / "logits.npy"), str(path / "bad.npy")]) == 4
    assert "`labels[7]` must lie in [0, 6); got 6" in capsys.readouterr().err


def test_score_length_mismatch_exits_4(files, capsys):
    path, _, labels, _ = files
    np.save(path / "short.npy", labels[:-1])
    assert main(["score", str(path / "logits.npy"), str(path / "short.npy")]) == 4
    assert "must have as many samples as `logits` (500); got 499" in capsys.readouterr().err


def test_score_on_a_server_gives_the_local_numbers(files, capsys, live_url):
    path, *_ = files
    args = (path / "logits.npy", path / "labels.npy", "--base", "10")
    local = score_json(capsys, *args)
    remote = score_json(capsys, *args, "--url", live_url)
    assert remote["scored_by"] == live_url
    assert remote["dtype"] == "float32"
    for name, value in local["metrics"].items():
        assert remote["metrics"][name] == pytest.approx(value, rel=1e-6)


def test_score_rejected_by_the_server_exits_4(files, capsys, live_url):
    path, *_ = files
    np.save(path / "bad.npy", np.full(500, 9))
    assert main(["score", str(path / "logits.npy"), str(path / "bad.npy"), "--url", live_url]) == 4
    assert "422 Unprocessable Content: `labels[0]` must lie in [0, 6)" in capsys.readouterr().err


def test_score_unreachable_server_exits_5(files, capsys):
    path, *_ = files
    args = [str(path / "logits.npy"), str(path / "labels.npy"), "--url", "http://127.0.0.1:9"]
    assert main(["score", *args]) == 5
    assert "could not reach the Xent server" in capsys.readouterr().err


def test_console_script_runs_score(files):
    path, *_ = files
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "score",
            str(path / "logits.npy"),
            str(path / "labels.npy"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["n"] == 500


def test_openapi_command_prints_the_spec(capsys):
    from service.app import create_app
    from service.settings import Settings

    assert main(["openapi"]) == 0
    assert json.loads(capsys.readouterr().out) == create_app(Settings()).openapi()


def test_large_files_are_read_in_chunks_exactly(tmp_path, rng, capsys):
    from service.cli.files import read_array

    logits = rng.standard_normal((700_000, 2)).astype(np.float32)  # 5.6 MB: two 4 MiB chunks
    np.save(tmp_path / "big.npy", logits)
    np.testing.assert_array_equal(read_array(str(tmp_path / "big.npy"), role="predictions").array, logits)
    probs = rng.dirichlet(np.ones(3), size=120_000)  # ~7 MB of CSV: a line straddles the chunk edge
    np.savetxt(tmp_path / "big.csv", probs, delimiter=",", header="a,b,c", comments="")
    loaded = read_array(str(tmp_path / "big.csv"), role="predictions", progress=True).array
    np.testing.assert_array_equal(loaded, np.loadtxt(tmp_path / "big.csv", delimiter=",", skiprows=1))
    assert "reading" in capsys.readouterr().err


def reference_ece(probs, labels, n_bins=15):
    """Guo et al.'s _ECELoss: bins (lo, hi], |accuracy - confidence| weighted by bin mass."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = predicted == labels
    ece = 0.0
    for lo, hi in zip(np.arange(n_bins) / n_bins, np.arange(1, n_bins + 1) / n_bins, strict=True):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return ece


def test_score_calibration_metrics_match_independent_references(files, capsys):
    from scipy.optimize import minimize_scalar

    path, logits, labels, probs = files
    report = score_json(
        capsys, path / "logits.npy", path / "labels.npy", "--metrics", "ece,brier,temperature"
    )
    z = logits.astype(np.float64)
    onehot = np.eye(6)[labels]
    assert report["metrics"]["brier"] == pytest.approx(((probs - onehot) ** 2).sum(axis=1).mean(), rel=1e-5)
    assert report["metrics"]["ece"] == pytest.approx(reference_ece(probs, labels), abs=1e-6)
    best = minimize_scalar(
        lambda t: expected_ce(z / t, labels), bounds=(0.05, 50), method="bounded", options={"xatol": 1e-10}
    ).x
    assert report["metrics"]["temperature"] == pytest.approx(best, rel=1e-4)


def test_score_calibration_metrics_on_a_server_match_local(files, capsys, live_url):
    path, *_ = files
    args = (path / "probs.csv", path / "labels.csv", "--metrics", "ce,ece,brier,temperature")
    local = score_json(capsys, *args)
    remote = score_json(capsys, *args, "--url", live_url)
    for name, value in local["metrics"].items():
        assert remote["metrics"][name] == pytest.approx(value, rel=1e-9), name


def test_score_one_npz_holding_predictions_and_labels(files, capsys):
    """Issue 21: `xent score batch.npz` finds the predictions and the labels in the one archive."""
    path, logits, labels, _ = files
    report = score_json(capsys, path / "batch.npz")
    assert report["metrics"]["ce"] == pytest.approx(expected_ce(logits, labels), rel=1e-5)
    assert report["n"] == 500


def test_score_without_labels_for_npy_is_a_usage_error(files, capsys):
    path, *_ = files
    with pytest.raises(SystemExit) as exited:
        main(["score", str(path / "logits.npy")])
    assert exited.value.code == 2
    assert "LABELS is required" in capsys.readouterr().err


def test_version_flag_prints_the_package_version(capsys):
    from service import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"xent {__version__}"
