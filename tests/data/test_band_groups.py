"""Archive.band_groups reads bands straight from the store into per-size stacks: the batches it makes are the ones
the decode-every-value path (get -> group_bands -> to_grid_batch) makes, bit for bit."""

from __future__ import annotations

from pathlib import Path

import lmdb
import numpy as np
import pytest

from rsir.data.archive import encode_value, open_archive, value_layout
from rsir.data.bands import group_bands, to_grid_batch
from rsir.errors import NotFoundError
from tests.data.archive_helpers import write_tiny_archive


@pytest.fixture(scope="module")
def arch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_archive(tmp_path_factory.mktemp("bg") / "a", n=10, size=24)


@pytest.mark.parametrize("modality", ["s1", "s2"])
def test_batches_equal_the_decoding_path(arch: Path, modality: str) -> None:
    a = open_archive(arch)
    spec = a.spec(modality)
    order = list(spec.bands)
    mean, std = a.band_stats(modality, order)
    pos = [7, 0, 3, 9, 1]  # not in archive order
    ref = group_bands([a.get(p, modality) for p in pos], order)
    got = a.band_groups(pos, modality)
    assert [(g.shape, g.idx, g.data.dtype) for g in got] == [(g.shape, g.idx, g.data.dtype) for g in ref]
    for g, r in zip(got, ref, strict=True):
        assert np.array_equal(g.data, r.data)
    if modality == "s2":
        assert sorted(g.shape for g in got) == [(4, 4), (12, 12), (24, 24)]
    for normalised in (True, False):
        kw = {"mean": mean, "std": std} if normalised else {}
        want = to_grid_batch([a.get(p, modality) for p in pos], order, spec.grid, **kw)
        ids, x = next(a.batches(8, modality=modality, positions=pos, normalized=normalised))
        assert ids == [a.ids[p] for p in pos]
        assert x.dtype == np.float32 and np.array_equal(x, want)


def _copy_with(arch: Path, tmp_path: Path, key: str, value: bytes | None) -> Path:
    """A copy of the archive whose store holds ``value`` under ``key`` (the key deleted for None)."""
    import shutil

    copy = tmp_path / "a"
    shutil.copytree(arch, copy)
    env = lmdb.open(str(copy / "patches.lmdb"), subdir=True)
    with env.begin(write=True) as txn:
        if value is None:
            txn.delete(key.encode())
        else:
            txn.put(key.encode(), value)
    env.close()
    return copy


def test_missing_value_is_named(arch: Path, tmp_path: Path) -> None:
    a = open_archive(arch)
    copy = _copy_with(arch, tmp_path, f"s1/{a.ids[2]}", None)
    with pytest.raises(NotFoundError, match=f"{a.ids[2]}.*no s1 data"):
        open_archive(copy).band_groups([1, 2], "s1")


def test_odd_values_fall_back_to_decoding(arch: Path, tmp_path: Path) -> None:
    """An item stored with another dtype than the first one of the batch is decoded as get() does, so the batch
    is what group_bands makes of it (np.stack's promotion)."""
    a = open_archive(arch)
    odd = {b: v.astype(np.float64) for b, v in a.get(4, "s1").items()}
    b = open_archive(_copy_with(arch, tmp_path, f"s1/{a.ids[4]}", encode_value(odd)))
    got = b.band_groups([3, 4], "s1")
    ref = group_bands([b.get(3, "s1"), b.get(4, "s1")], list(b.spec("s1").bands))
    assert got[0].data.dtype == ref[0].data.dtype == np.float64
    assert np.array_equal(got[0].data, ref[0].data)


def test_value_layout() -> None:
    v = encode_value({"B": np.arange(6, dtype=np.uint16).reshape(2, 3), "A": np.ones((1, 2), np.float32)})
    lay = value_layout(v)
    assert lay is not None and lay["B"][1] == (2, 3) and lay["A"][0] == np.dtype("<f4")
    dt, shape, off = lay["B"]
    assert np.array_equal(np.frombuffer(v, dt, 6, off), np.arange(6))
    assert value_layout(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}") is None
    assert value_layout(v[:-4]) is None  # truncated data


def test_damaged_value_is_named(arch: Path, tmp_path: Path) -> None:
    from rsir.errors import ItemError

    a = open_archive(arch)
    copy = _copy_with(arch, tmp_path, f"s2/{a.ids[5]}", b"\x07\x00")
    with pytest.raises(ItemError, match=a.ids[5]):
        next(open_archive(copy).batches(8, modality="s2"))
