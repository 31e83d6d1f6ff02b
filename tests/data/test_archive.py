"""Archive: write/read round trip, statistics against numpy, atomicity, clear errors."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from rsir.data.archive import Archive, ArchiveWriter, decode_value, open_archive
from rsir.data.bands import s2_spec, to_grid
from rsir.data.nomenclature import BEN19
from rsir.errors import ArchiveError, ItemError, NotFoundError, RsirError
from tests.data.archive_helpers import write_tiny_archive


def test_round_trip_and_access(tmp_path):
    a = open_archive(write_tiny_archive(tmp_path / "a", n=9))
    assert len(a) == 9 and a.ids[0] == "item000"
    assert set(a.modalities) == {"s2", "s1"}
    raw = a.get("item004", "s2")
    assert raw["B01"].shape == (2, 2) and raw["B02"].shape == (12, 12) and raw["B02"].dtype == np.uint16
    assert a.position("item004") == 4 and a.get(4, "s2")["B03"].tolist() == raw["B03"].tolist()
    x = a.image("item004", "s2", normalized=False)
    assert x.shape == (12, 12, 12)
    np.testing.assert_array_equal(x[1], raw["B02"].astype(np.float32))  # 10 m band is not resampled
    # label vector agrees with names
    row = a.item("item004")
    assert BEN19.decode(a.labels[4]) == row["labels"]


def test_stats_are_training_split_moments(tmp_path):
    a = open_archive(write_tiny_archive(tmp_path / "a", n=9))
    train = a.split_positions("train")
    vals = np.concatenate([a.get(int(p), "s2")["B05"].ravel().astype(np.float64) for p in train])
    st = a.stats["s2"]["B05"]
    assert st["mean"] == pytest.approx(vals.mean(), rel=1e-12)
    assert st["std"] == pytest.approx(vals.std(), rel=1e-9)
    mean, std = a.band_stats("s2")
    xn = a.image(int(train[0]), "s2")
    xr = a.image(int(train[0]), "s2", normalized=False)
    assert np.allclose(xn[4], (xr[4] - mean[4]) / std[4], atol=1e-4)


def test_training_dataset_samples(tmp_path):
    from rsir.train.data import SplitDataset

    a = open_archive(write_tiny_archive(tmp_path / "a", n=6))
    ds = SplitDataset(a, "s1", split="train", preload=False)
    assert len(ds) == 2
    s = ds[1]
    p = int(a.split_positions("train")[1])
    assert s["x"].shape == (2, 12, 12) and s["index"] == p
    np.testing.assert_array_equal(s["x"].numpy(), a.image(p, "s1"))
    np.testing.assert_array_equal(s["label"].numpy(), a.labels[p])


def test_batches_cover_split(tmp_path):
    a = open_archive(write_tiny_archive(tmp_path / "a", n=7))
    got = [i for ids, x in a.batches(3, modality="s1") for i in ids]
    assert got == a.ids


def test_interrupted_write_leaves_nothing(tmp_path):
    spec = s2_spec(12)
    target = tmp_path / "arch"
    with pytest.raises(RuntimeError):
        with ArchiveWriter(target, [spec], BEN19, "test") as w:
            w.add("x", {"split": "train"}, {"s2": {b: np.zeros(s, np.uint16) for b, s in spec.shapes.items()}})
            raise RuntimeError("killed")
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir()]
    with pytest.raises(ArchiveError, match="not an rsir archive|no archive"):
        Archive(target)


def test_bad_items_are_named(tmp_path):
    spec = s2_spec(12)
    w = ArchiveWriter(tmp_path / "a", [spec], BEN19, "test")
    good = {b: np.zeros(s, np.uint16) for b, s in spec.shapes.items()}
    with pytest.raises(ItemError, match="p1.*band set mismatch.*missing \\['B12'\\]"):
        w.add("p1", {}, {"s2": {k: v for k, v in good.items() if k != "B12"}})
    with pytest.raises(ItemError, match="p2.*B03: shape \\(10, 10\\)"):
        w.add("p2", {}, {"s2": {**good, "B03": np.zeros((10, 10), np.uint16)}})
    with pytest.raises(ItemError, match="p3.*not in the bigearthnet-19"):
        w.add("p3", {"labels": ["Lava"]}, {"s2": good})
    w.abort()


def test_existing_archive_survives_failed_overwrite(tmp_path):
    path = write_tiny_archive(tmp_path / "a", n=3)
    before = (path / "manifest.json").read_text()
    with pytest.raises(ArchiveError, match="already exists"):
        ArchiveWriter(path, [s2_spec(12)], BEN19, "test")
    with pytest.raises(ValueError):
        with ArchiveWriter(path, [s2_spec(12)], BEN19, "test", overwrite=True):
            raise ValueError("boom")
    assert (path / "manifest.json").read_text() == before
    assert len(open_archive(path)) == 3


def test_damaged_and_foreign(tmp_path):
    path = write_tiny_archive(tmp_path / "a", n=3)
    m = json.loads((path / "manifest.json").read_text())
    m["format"] = "something-else"
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArchiveError, match="foreign format"):
        open_archive(path)
    with pytest.raises(ItemError, match="k1.*not valid safetensors"):
        decode_value(b"\x00garbage", "k1")
    with pytest.raises(NotFoundError, match="nope"):
        open_archive(write_tiny_archive(tmp_path / "b", n=3)).position("nope")
    assert not os.path.exists(tmp_path / "b.partial")


def test_to_grid_bilinear_upsamples_constant():
    x = to_grid({"a": np.full((2, 2), 7.0, np.float32), "b": np.ones((4, 4), np.float32)}, ["a", "b"], (4, 4))
    assert np.allclose(x[0], 7.0) and np.allclose(x[1], 1.0)


def test_batches_equal_per_item_images(tmp_path):
    # batched resampling of the 20 m / 60 m bands gives exactly what image() gives item by item
    a = open_archive(write_tiny_archive(tmp_path / "a", n=7, size=12))
    for normalized in (True, False):
        ids, x = next(iter(a.batches(5, modality="s2", positions=[6, 0, 3, 2, 5], normalized=normalized)))
        ref = np.stack([a.image(i, "s2", normalized=normalized) for i in ids])
        assert ids == [a.ids[p] for p in (6, 0, 3, 2, 5)]
        np.testing.assert_array_equal(x, ref)


def test_to_grid_batch_refuses_mixed_band_shapes():
    from rsir.data.bands import to_grid_batch

    a = {"B02": np.zeros((4, 4), np.float32), "B05": np.zeros((2, 2), np.float32)}
    b = {"B02": np.zeros((4, 4), np.float32), "B05": np.zeros((3, 3), np.float32)}
    with pytest.raises(RsirError, match="B05"):
        to_grid_batch([a, b], ["B02", "B05"], (4, 4))


def test_to_grid_batch_normalises_before_resampling_like_normalize_after():
    # normalising the 20 m / 60 m bands at their native size equals normalising the resampled grid, because the
    # interpolation weights sum to one; band order, mixed dtypes and big-endian input are kept straight
    from rsir.data.bands import normalize, to_grid_batch

    rng = np.random.default_rng(0)
    items = [{"B02": rng.integers(0, 10000, (12, 12)).astype(np.uint16),
              "B05": rng.integers(0, 10000, (6, 6)).astype(">u2"),
              "B01": rng.normal(500, 90, (2, 2)).astype(np.float64),
              "B03": rng.normal(0, 1, (12, 12)).astype(np.float32)} for _ in range(3)]
    order = ["B01", "B02", "B03", "B05"]
    mean, std = [500.0, 4000.0, 0.0, 5000.0], [90.0, 2000.0, 0.0, 3000.0]  # a zero std divides by one
    fused = to_grid_batch(items, order, (12, 12), mean=mean, std=std)
    after = normalize(to_grid_batch(items, order, (12, 12)), mean, std)
    assert fused.shape == (3, 4, 12, 12) and fused.dtype == np.float32
    np.testing.assert_allclose(fused, after, rtol=1e-5, atol=1e-5)
    # the 10 m bands are not resampled: exactly (x - mean) / std of the stored values
    np.testing.assert_allclose(fused[1, 1], (items[1]["B02"].astype(np.float32) - 4000.0) / 2000.0, rtol=1e-6)
    np.testing.assert_array_equal(fused[2, 2], items[2]["B03"])


def test_several_archives_on_one_store_in_one_process(tmp_path):
    # LMDB allows one environment per file and process: a second Archive on the same path (e.g. a second `rsir`
    # command run in-process while the first one's archive is still referenced) shares the first one's
    path = write_tiny_archive(tmp_path / "a", n=4, size=8)
    a, b = open_archive(path), open_archive(path)
    np.testing.assert_array_equal(a.image(1, "s2"), b.image(1, "s2"))
    before = a.get(0, "s2")
    # an archive replaced on disk (ingest --overwrite) is a new file: a new Archive reads the new data
    replaced = write_tiny_archive(tmp_path / "new", n=4, size=8, seed=7)
    shutil.rmtree(path)
    os.replace(replaced, path)
    c = open_archive(path)
    assert any(not np.array_equal(before[k], v) for k, v in c.get(0, "s2").items())
    np.testing.assert_array_equal(a.get(0, "s2")["B02"], before["B02"])  # the old one still reads its own file
