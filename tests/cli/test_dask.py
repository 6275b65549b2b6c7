"""``xent score DATASET --scheduler``: partitions summarised on Dask workers equal one process."""

import json
import re

import numpy as np
import pytest

from service.__main__ import main
from service.cli.datasets import Columns, find_files, partitions
from service.cli.reduce import Job, reduce_local
from tests.cli.parquet_data import assert_matches, http_reference, make_dataset, pa, write

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        yield local, client


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    rng = np.random.default_rng(17)
    arrays = make_dataset(
        root / "d", kind="logits", layout="fixed", dtype=np.float32, k=7, sizes=(900, 1, 1300, 650), rng=rng
    )
    return root / "d", arrays


def assert_same_stats(a, b):
    """Counts equal exactly; float sums to 1e-12 relative (only the merge order differs)."""
    for name in ("n_predictions", "n_labelled", "correct"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("predicted_counts", "label_counts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("weight_labelled", "nll_sum", "brier_sum", "confidence_sum", "labelled_confidence_sum"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, atol=0, err_msg=name)
    np.testing.assert_array_equal(a.top.cells, b.top.cells)
    np.testing.assert_array_equal(a.top.count, b.top.count)
    np.testing.assert_allclose(a.top.conf, b.top.conf, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(a.top.hits, b.top.hits)


@pytest.mark.parametrize("by", [None, "day", "segment"])
def test_dask_tree_equals_one_process(cluster, dataset, by):
    from service.cli.dask_reduce import reduce_with

    path, _ = dataset
    parts = partitions(find_files(str(path)))
    columns = Columns(
        "logits",
        "logits",
        (),
        "label",
        None,
        "ts" if by == "day" else None,
        "segment" if by == "segment" else None,
    )
    job = Job(columns, 7, False, "auto", 128, by)
    local = reduce_local(parts, job)
    remote = reduce_with(cluster[1], parts, job)
    assert remote.rows == local.rows == 2851
    assert_same_stats(remote.total, local.total)
    assert remote.groups.keys() == local.groups.keys()
    for key in local.groups:
        assert_same_stats(remote.groups[key], local.groups[key])


def test_cli_on_a_scheduler_address_equals_local_and_the_routes(cluster, dataset, capsys):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    path, (values, labels, *_) = dataset
    address = cluster[0].scheduler_address
    assert main(["score", str(path), "--scheduler", address, "--json", "--batch-size", "200"]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert main(["score", str(path), "--json", "--batch-size", "200"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert remote["scored_by"] == f"dask {address}" and local["scored_by"] == "local"
    assert remote["n"] == local["n"] == 2851
    for name, value in local["metrics"].items():
        np.testing.assert_allclose(remote["metrics"][name], value, rtol=1e-12, atol=0, err_msg=name)
    with TestClient(create_app(Settings())) as http:
        assert_matches(remote["metrics"], *http_reference(http, "logits", values, labels))


def test_bad_partition_on_a_worker_names_file_and_row_group(cluster, tmp_path, capsys):
    rng = np.random.default_rng(1)
    for i in range(3):
        z = rng.standard_normal((250, 3))
        y = rng.integers(0, 3, 250)
        if i == 2:
            y[160] = 3
        logits = pa.FixedSizeListArray.from_arrays(pa.array(z.reshape(-1)), 3)
        write(
            tmp_path / "d", f"p{i}.parquet", pa.table({"logits": logits, "label": pa.array(y)}), row_group=100
        )
    out = tmp_path / "r.json"
    code = main(["score", str(tmp_path / "d"), "--scheduler", cluster[0].scheduler_address, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 4, err
    assert re.search(
        r"p2\.parquet, row group 1, column 'label': must lie in \[0, 3\); got 3 \(row 60 of", err
    ), err
    assert not out.exists()
