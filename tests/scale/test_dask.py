"""Dask: encoding on a LocalCluster started by the test gives the local path's codes bit for bit, survives a
worker killed in the middle of the job, and distributed evaluation gives the local metrics exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("distributed")

from rsir.data.archive import open_archive  # noqa: E402
from rsir.eval.protocols import evaluate_full, split_queries  # noqa: E402
from rsir.pipeline import IndexDir, build_index  # noqa: E402
from rsir.scale.cluster import ClusterError, open_client, parse_spec  # noqa: E402
from rsir.scale.encode import encode_on_cluster, partitions  # noqa: E402
from rsir.scale.evaluate import dask_blocks  # noqa: E402
from tests.data.archive_helpers import write_tiny_archive  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class SlowEncoder:
    """Wraps an encoder and sleeps per batch, so that a partition is still running when a worker is killed."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay = inner, delay

    def encode(self, x: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        return self.inner.encode(x)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IndexDir]:
    root = tmp_path_factory.mktemp("dask")
    arch = write_tiny_archive(root / "arch", n=150, size=12)
    build_index(open_archive(arch), root / "local", method="lsh", bits=64, progress=False)
    return arch, IndexDir.open(root / "local")


@pytest.fixture(scope="module")
def client() -> Any:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests package
    with open_client("local:2") as c:
        yield c


def test_specs_and_partitions() -> None:
    assert parse_spec("local:3") == ("local", 3) and parse_spec("tcp://10.1.2.3:8786")[0] == "address"
    for bad in ("local:0", "local", "nowhere at all"):
        with pytest.raises(ClusterError):
            parse_spec(bad)
    parts = partitions(150, 64, 2, 100)
    # whole batches of the local path: every partition starts at a multiple of 64
    assert parts == [(0, 128), (128, 150)] and all(s % 64 == 0 for s, _ in parts)


def test_dask_codes_equal_local_codes(local: tuple[Path, IndexDir], client: Any, tmp_path: Path) -> None:
    arch, idx = local
    out = build_index(arch, tmp_path / "dask", encoder=idx.encoder, progress=False,
                      encode_batches=lambda a, e, m, b, p: encode_on_cluster(client, a.path, len(a), e, m, b, p, 64))
    got = IndexDir.open(out)
    assert list(got.index.ids) == list(idx.index.ids)
    assert np.array_equal(got.index.codes(), idx.index.codes())


def test_worker_killed_mid_job_is_survived(local: tuple[Path, IndexDir], client: Any) -> None:
    arch, idx = local
    n = len(open_archive(arch))
    stream = encode_on_cluster(client, arch, n, SlowEncoder(idx.encoder, 0.5), idx.modality, 16, False, 16)
    got_ids: list[str] = []
    chunks = []
    pids = client.run(os.getpid)
    for i, (ids, codes) in enumerate(stream):
        if i == 0:  # partitions are still running on both workers: kill one of them
            os.kill(next(iter(pids.values())), signal.SIGKILL)
        got_ids += ids
        chunks.append(codes)
    assert got_ids == list(idx.index.ids)
    assert np.array_equal(np.concatenate(chunks), idx.index.codes())
    deadline = time.time() + 30  # the nanny restarts the killed worker
    while len(client.scheduler_info()["workers"]) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert set(client.run(os.getpid).values()) != set(pids.values())


def test_distributed_eval_equals_local(local: tuple[Path, IndexDir], client: Any) -> None:
    arch, idx = local
    archive = open_archive(arch)
    split = split_queries(archive, "loo", "all")
    codes = idx.vectors([archive.ids[p] for p in split.db_pos])
    args = (codes, codes, "hamming", archive.labels, archive.labels, (5, 10), split.exclude)
    here = evaluate_full(*args, block_size=16)
    there = evaluate_full(*args, block_size=16, run_blocks=dask_blocks(client))
    assert here.metrics == there.metrics and here.curves == there.curves and here.n_queries == 150


@pytest.mark.slow
def test_cli_index_with_local_cluster(local: tuple[Path, IndexDir], tmp_path: Path) -> None:
    arch, idx = local
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-m", "rsir", "index", str(arch), "--method", "lsh", "--bits", "64",
                        "--out", str(tmp_path / "cli"), "--dask", "local:1", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.array_equal(IndexDir.open(tmp_path / "cli").index.codes(), idx.index.codes())


@pytest.mark.slow
def test_sharded_archive_reads_and_encodes_the_same(local: tuple[Path, IndexDir], client: Any, tmp_path: Path
                                                    ) -> None:
    from rsir.data.shards import shard_archive

    arch, idx = local
    out = shard_archive(arch, tmp_path / "sharded", 4)
    a, b = open_archive(arch), open_archive(out)
    assert [s["store"] for s in b.manifest["shards"]] == [f"patches-{i:03d}.lmdb" for i in range(4)]
    assert not (out / "patches.lmdb").exists()
    for item in ("item000", "item037", "item038", "item149"):
        for m in ("s2", "s1"):
            x, y = a.get(item, m), b.get(item, m)
            assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    codes = np.concatenate([c for _, c in encode_on_cluster(client, out, len(b), idx.encoder, idx.modality, 64,
                                                            False, 64)])
    assert np.array_equal(codes, idx.index.codes())
