"""``xent score DATASET``: Parquet / Arrow in record batches equals /v1/calibration and /v1/cross-entropy."""

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.__main__ import main
from service.app import create_app
from service.settings import Settings
from tests.cli.parquet_data import (
    DAY_MS,
    T0,
    assert_matches,
    http_reference,
    make_dataset,
    npz,
    pa,
    pq,
    write,
)

SIZES = (700, 1, 950, 420)  # several files and row groups of 300, a one-row file


@pytest.fixture(scope="module")
def http():
    with TestClient(create_app(Settings())) as client:
        yield client


def score(capsys, *args) -> tuple[int, dict | None, str]:
    code = main(["score", *map(str, args), "--json", "--no-progress"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


CASES = [
    ("logits", "fixed", np.float32, 6),
    ("logits", "list", np.float64, 4),
    ("probs", "list", np.float32, 5),
    ("probs", "fixed", np.float64, 3),
    ("logits", "classes", np.float64, 4),
    ("probs", "classes", np.float32, 3),
    ("probs", "scalar", np.float64, 1),  # binary: a positive-class probability column
    ("logits", "scalar", np.float32, 1),  # binary logits
]


@pytest.mark.parametrize(("kind", "layout", "dtype", "k"), CASES)
def test_dataset_equals_the_http_routes_on_all_rows(tmp_path, capsys, http, kind, layout, dtype, k):
    rng = np.random.default_rng(k * 7 + len(layout))
    values, labels, *_ = make_dataset(
        tmp_path / "d", kind=kind, layout=layout, dtype=dtype, k=k, sizes=SIZES, rng=rng
    )
    columns = ["--class-prefix", "p"] if layout == "classes" else []
    code, report, err = score(capsys, tmp_path / "d", f"--{kind}", *columns, "--batch-size", 128)
    assert code == 0, err
    assert (report["n"], report["files"], report["partitions"]) == (sum(SIZES), 4, 3 + 1 + 4 + 2)
    assert report["form"] == ("binary" if k == 1 else "categorical")
    calibration, ce = http_reference(http, kind, values, labels)
    assert ce["convention"]["dtype"] == np.dtype(dtype).name
    assert_matches(report["metrics"], calibration, ce)
    assert set(report["metrics"]) >= {"ece", "debiased_l2", "ace_netcal", "cross_entropy"}
    assert "smooth_ece" in report["left_out"] and "smooth_ece" not in report["metrics"]


@pytest.mark.parametrize(
    ("n_bins", "closed", "base"), [(10, "left", "2"), (20, "right", "10"), (7, "left", "e")]
)
def test_bins_closed_and_base_follow_the_route(tmp_path, capsys, http, n_bins, closed, base):
    rng = np.random.default_rng(n_bins)
    values, labels, *_ = make_dataset(
        tmp_path / "d", kind="probs", layout="fixed", dtype=np.float64, k=4, sizes=(500, 600), rng=rng
    )
    args = ("--n-bins", n_bins, "--closed", closed, "--base", base)
    code, report, err = score(capsys, tmp_path / "d" / "*.parquet", "--column", "probs", *args)
    assert code == 0, err
    calibration, ce = http_reference(http, "probs", values, labels, base=base, n_bins=n_bins, closed=closed)
    assert_matches(report["metrics"], calibration, ce)
    assert report["convention"]["unit"] == {"e": "nats", "2": "bits", "10": "hartleys"}[base]


def test_arrow_ipc_files_equal_the_routes(tmp_path, capsys, http):
    rng = np.random.default_rng(3)
    values, labels, *_ = make_dataset(
        tmp_path, kind="logits", layout="list", dtype=np.float32, k=5, sizes=(640, 300), rng=rng, fmt="arrow"
    )
    code, report, err = score(capsys, tmp_path, "--batch-size", 100)
    assert code == 0, err
    assert report["input"] == "logits"  # from the column's name
    assert report["partitions"] == 3 + 1
    assert_matches(report["metrics"], *http_reference(http, "logits", values, labels))


def test_integer_weights_equal_repeated_rows(tmp_path, capsys, http):
    rng = np.random.default_rng(11)
    values, labels, _, _, weights = make_dataset(
        tmp_path, kind="logits", layout="fixed", dtype=np.float64, k=4, sizes=(800, 500), rng=rng
    )
    code, report, err = score(capsys, tmp_path, "--weight-column", "w")
    assert code == 0, err
    repeat = weights.astype(np.int64)
    calibration, ce = http_reference(
        http, "logits", np.repeat(values, repeat, axis=0), np.repeat(labels, repeat)
    )
    assert report["weighted"] is True
    assert "debiased_l2" not in report["metrics"] and "debiased_l2" in report["left_out"]
    assert_matches(report["metrics"], calibration, ce, rtol=1e-11)


def test_series_by_day_equals_the_routes_per_day(tmp_path, capsys, http):
    rng = np.random.default_rng(5)
    values, labels, days, *_ = make_dataset(
        tmp_path, kind="probs", layout="list", dtype=np.float64, k=3, sizes=(900, 400), rng=rng
    )
    code, report, err = score(capsys, tmp_path, "--by", "day", "--time-column", "ts", "--batch-size", 256)
    assert code == 0, err
    groups = report["series"]["groups"]
    assert [g["key"] for g in groups] == ["2024-10-04", "2024-10-05", "2024-10-06"]
    for day, group in enumerate(groups):
        rows = days == day
        assert group["n"] == rows.sum()
        calibration, ce = http_reference(http, "probs", values[rows], labels[rows])
        for name in ("accuracy", "ece", "brier", "mean_confidence"):
            np.testing.assert_allclose(group["metrics"][name], calibration[name], rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(group["metrics"]["cross_entropy"], ce["loss"], rtol=1e-12)


def test_series_by_segment_keeps_null_segments(tmp_path, capsys, http):
    rng = np.random.default_rng(6)
    values, labels, _, segments, _ = make_dataset(
        tmp_path, kind="logits", layout="classes", dtype=np.float32, k=3, sizes=(700, 300), rng=rng
    )
    code, report, err = score(
        capsys,
        tmp_path,
        "--logits",
        "--class-columns",
        "p0,p1,p2",
        "--by",
        "segment",
        "--segment-column",
        "segment",
    )
    assert code == 0, err
    groups = {g["key"]: g for g in report["series"]["groups"]}
    assert list(groups) == ["asia", "eu", "us", None]
    for key, group in groups.items():
        rows = np.array([s == key for s in segments])
        calibration, ce = http_reference(http, "logits", values[rows], labels[rows])
        np.testing.assert_allclose(group["metrics"]["ece"], calibration["ece"], rtol=1e-12)
        np.testing.assert_allclose(group["metrics"]["cross_entropy"], ce["loss"], rtol=1e-12)


def test_svg_has_the_routes_bars(tmp_path, capsys, http):
    rng = np.random.default_rng(8)
    values, labels, *_ = make_dataset(
        tmp_path / "d", kind="probs", layout="fixed", dtype=np.float64, k=4, sizes=(600,), rng=rng
    )
    svg = tmp_path / "out" / "reliability.svg"
    svg.parent.mkdir()
    code, _, err = score(capsys, tmp_path / "d", "--svg", svg, "--n-bins", 10)
    assert code == 0, err
    ours = ET.parse(svg).getroot()
    body = npz(probs=values, labels=labels, parameters=np.array(json.dumps({"n_bins": 10})))
    theirs = ET.fromstring(
        http.post(
            "/v1/reliability-diagram", content=body, headers={"content-type": "application/x-npz"}
        ).content
    )

    def bars(root):
        return [
            r.attrib
            for r in root.iter("{http://www.w3.org/2000/svg}rect")
            if r.get("class") in ("bar", "over", "under", "hist")
        ]

    assert bars(ours) == bars(theirs) and len(bars(ours)) > 10
    assert os.listdir(svg.parent) == ["reliability.svg"]


def test_output_file_and_progress(tmp_path, capsys):
    rng = np.random.default_rng(9)
    make_dataset(tmp_path / "d", kind="logits", layout="fixed", dtype=np.float32, k=3, sizes=(500,), rng=rng)
    out = tmp_path / "report.json"
    assert main(["score", str(tmp_path / "d"), "-o", str(out), "--progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # the report went to the file
    assert "100%" in captured.err
    assert json.loads(out.read_text())["n"] == 500


def _bad(tmp_path, name, table, *, row_group=100):
    return write(tmp_path / "bad", name, table, row_group=row_group)


def _good_table(n, k=3, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k))
    return z, rng.integers(0, k, n)


def _fixed(z):
    return pa.FixedSizeListArray.from_arrays(pa.array(z.reshape(-1)), z.shape[1])


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        (
            "missing",
            r"part-1\.parquet, row group 0, column 'label': is missing; the file has columns logits, y",
        ),
        (
            "length",
            r"part-1\.parquet, row group 1, column 'logits': has a list of length 2; expected K = 3 "
            r"\(row 17 of",
        ),
        ("nan", r"part-1\.parquet, row group 2, column 'logits': must be finite; got nan \(row 5 of"),
        ("range", r"part-1\.parquet, row group 1, column 'label': must lie in \[0, 3\); got 7 \(row 3 of"),
        ("null", r"part-1\.parquet, row group 0, column 'label': holds a null \(row 4 of"),
        ("class", r"part-1\.parquet, row group 0, column 'p1': must be finite; got inf \(row 9 of"),
    ],
)
def test_bad_content_names_file_row_group_and_column(tmp_path, capsys, case, pattern):
    z, y = _good_table(300)
    first = {"logits": _fixed(z), "label": pa.array(y)}
    if case == "class":
        first = {
            "p0": pa.array(z[:, 0]),
            "p1": pa.array(z[:, 1]),
            "p2": pa.array(z[:, 2]),
            "label": pa.array(y),
        }
    _bad(tmp_path, "part-0.parquet", pa.table(first))
    bad = dict(first)
    if case == "missing":
        bad = {"logits": first["logits"], "y": first["label"]}
    elif case == "length":
        lists = [list(row) for row in z]
        lists[117] = lists[117][:2]
        bad["logits"] = pa.array(lists, type=pa.list_(pa.float64()))
    elif case == "nan":
        z2 = z.copy()
        z2[205, 1] = np.nan
        bad["logits"] = _fixed(z2)
    elif case == "range":
        y2 = y.copy()
        y2[103] = 7
        bad["label"] = pa.array(y2)
    elif case == "null":
        bad["label"] = pa.array([None if i == 4 else int(v) for i, v in enumerate(y)], type=pa.int64())
    elif case == "class":
        p1 = z[:, 1].copy()
        p1[9] = np.inf
        bad["p1"] = pa.array(p1)
    _bad(tmp_path, "part-1.parquet", pa.table(bad))
    out, svg = tmp_path / "r.json", tmp_path / "r.svg"
    columns = ["--class-prefix", "p", "--logits"] if case == "class" else []
    code = main(
        ["score", str(tmp_path / "bad"), *columns, "-o", str(out), "--svg", str(svg), "--batch-size", "64"]
    )
    err = capsys.readouterr().err
    assert code == 4, err
    assert re.search(pattern, err), err
    assert sorted(os.listdir(tmp_path)) == ["bad"]  # nothing written, no temporary left


def test_file_problems_exit_3(tmp_path, capsys):
    assert main(["score", str(tmp_path / "none.parquet"), "--no-progress"]) == 3
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    assert main(["score", str(tmp_path / "junk.parquet"), "-o", str(tmp_path / "r.json")]) == 3
    assert re.search(r"junk\.parquet: not a readable parquet file", capsys.readouterr().err)
    assert main(["score", str(tmp_path / "*.arrow")]) == 3
    assert "holds no Parquet or Arrow files" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["junk.parquet"]


def test_npy_files_still_score(tmp_path, capsys):
    z, y = _good_table(50)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    assert main(["score", str(tmp_path / "z.npy"), str(tmp_path / "y.npy"), "--logits", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 50


def _run(code: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )


def test_scoring_a_dataset_imports_no_fastapi(tmp_path):
    make_dataset(
        tmp_path / "d",
        kind="probs",
        layout="fixed",
        dtype=np.float64,
        k=3,
        sizes=(50,),
        rng=np.random.default_rng(1),
    )
    code = (
        "import sys; from service.__main__ import main; "
        "rc = main(['score', sys.argv[1], '--svg', sys.argv[2], '--json']); "
        "assert rc == 0 and 'fastapi' not in sys.modules, sorted(m for m in sys.modules if 'fastapi' in m)"
    )
    result = _run(code, str(tmp_path / "d"), str(tmp_path / "r.svg"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.svg").exists()


@pytest.mark.parametrize(
    ("module", "flags", "extra"),
    [("pyarrow", [], "parquet"), ("distributed", ["--scheduler", "local"], "dask")],
)
def test_missing_extra_is_named(tmp_path, module, flags, extra):
    make_dataset(
        tmp_path / "d",
        kind="probs",
        layout="fixed",
        dtype=np.float64,
        k=3,
        sizes=(20,),
        rng=np.random.default_rng(2),
    )
    code = (
        f"import sys; sys.modules[{module!r}] = None; "
        "from service.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    result = _run(code, "score", str(tmp_path / "d"), *flags)
    assert result.returncode == 6, result.stderr
    assert f"pip install 'xent-service[{extra}]'" in result.stderr


def test_timestamps_are_utc_days(tmp_path, capsys):
    """A time zone changes how a timestamp prints, not its UTC day."""
    z, y = _good_table(4)
    ts = pa.array([T0 - 1, T0, T0 + DAY_MS - 1, T0 + DAY_MS]).cast(pa.timestamp("ms", tz="Asia/Tokyo"))
    pq.write_table(pa.table({"logits": _fixed(z), "label": pa.array(y), "ts": ts}), tmp_path / "t.parquet")
    code, report, err = score(capsys, tmp_path / "t.parquet", "--by", "day", "--time-column", "ts")
    assert code == 0, err
    assert [(g["key"], g["n"]) for g in report["series"]["groups"]] == [
        ("2024-10-03", 1),
        ("2024-10-04", 2),
        ("2024-10-05", 1),
    ]


def test_float32_logits_with_a_one_row_tail_equal_the_routes(tmp_path, capsys, http):
    """257-row row groups read 128 rows at a time would end in a lone row; K = 10 rounds one apart."""
    rng = np.random.default_rng(12)
    values, labels, *_ = make_dataset(
        tmp_path,
        kind="logits",
        layout="fixed",
        dtype=np.float32,
        k=10,
        sizes=(514, 300),
        rng=rng,
        row_group=257,
    )
    code, report, err = score(capsys, tmp_path, "--batch-size", 128)
    assert code == 0, err
    assert_matches(report["metrics"], *http_reference(http, "logits", values, labels))


def test_batches_are_bounded_and_never_a_lone_row(tmp_path):
    from service.cli.datasets import Columns, find_files, partitions, read

    rng = np.random.default_rng(13)
    make_dataset(
        tmp_path, kind="probs", layout="list", dtype=np.float64, k=3, sizes=(257, 100), rng=rng, row_group=257
    )
    parts = partitions(find_files(str(tmp_path)))
    assert [p.rows for p in parts] == [257, 100]
    sizes = [
        [len(b.labels) for b in read(p, Columns("probs", "probs"), n_classes=3, batch_size=64)] for p in parts
    ]
    assert sizes == [[65, 65, 65, 62], [64, 36]]


def test_segments_of_any_type_are_json_keys(tmp_path, capsys):
    z, y = _good_table(6)
    days = pa.array(
        np.array([0, 1, 0, 1, 1, 0], dtype="datetime64[D]").astype("datetime64[D]"), type=pa.date32()
    )
    pq.write_table(pa.table({"logits": _fixed(z), "label": pa.array(y), "seg": days}), tmp_path / "s.parquet")
    code, report, err = score(capsys, tmp_path / "s.parquet", "--by", "segment", "--segment-column", "seg")
    assert code == 0, err
    assert [(g["key"], g["n"]) for g in report["series"]["groups"]] == [("1970-01-01", 3), ("1970-01-02", 3)]
