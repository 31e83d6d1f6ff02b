"""Every index against a brute-force numpy search (ties allowed at the k boundary), removal, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rsir.errors import NotFoundError, RsirError
from rsir.index import FloatIndex, HammingIndex, IndexError_, IndexFileError, open_index
from rsir.index.mih import MultiIndexHashing, default_m, split_lengths


def brute_hamming(q: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Reference distances by comparing unpacked bits (independent of rsir's popcount table)."""
    qb = np.unpackbits(q, axis=1)
    cb = np.unpackbits(codes, axis=1)
    return (qb[:, None, :] != cb[None, :, :]).sum(-1)


def clustered_codes(n: int, nbytes: int, seed: int, centres: int = 6, flip: float = 0.08) -> np.ndarray:
    """Codes near a few centres, so many codes share distances (ties) and buckets are uneven."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 2, (centres, nbytes * 8), dtype=np.uint8)
    bits = c[rng.integers(0, centres, n)] ^ (rng.random((n, nbytes * 8)) < flip).astype(np.uint8)
    return np.packbits(bits, axis=1)


def check_knn(dist: np.ndarray, ids: np.ndarray, ref: np.ndarray, all_ids: np.ndarray, k: int,
              ordered_ties: bool = True) -> None:
    """Compare one result row with a stable brute-force ranking, allowing any choice among ties at the boundary."""
    order = np.argsort(ref, kind="stable")  # distance, then insertion order
    kk = min(k, ref.size)
    assert list(dist[:kk]) == list(ref[order[:kk]])  # same distance multiset, sorted
    dk = ref[order[kk - 1]]
    strict = [all_ids[i] for i in order if ref[i] < dk]
    assert list(ids[:len(strict)]) == strict
    tied = {all_ids[i] for i in np.flatnonzero(ref == dk)}
    rest = list(ids[len(strict):kk])
    assert set(rest) <= tied and len(set(rest)) == len(rest)
    if ordered_ties:
        pos = {v: i for i, v in enumerate(all_ids)}
        assert [pos[v] for v in rest] == sorted(pos[v] for v in rest)


def make(mode: str, bits: int) -> HammingIndex:
    if mode == "ivf":
        return HammingIndex(bits, kind="ivf", nlist=8, nprobe=8)  # nprobe = nlist: exact
    if mode == "mih":
        return HammingIndex(bits, kind="mih", mih_m=4)
    return HammingIndex(bits)


@pytest.mark.parametrize("mode", ["flat", "mih", "ivf"])
@pytest.mark.parametrize("bits", [16, 64])
def test_hamming_knn_matches_brute_force(mode: str, bits: int) -> None:
    codes = clustered_codes(600, bits // 8, seed=bits)
    ids = np.arange(1000, 1600, dtype=np.int64)
    index = make(mode, bits)
    index.add(ids[:300], codes[:300])
    index.add(ids[300:], codes[300:])
    assert len(index) == 600
    q = np.concatenate([codes[:5], clustered_codes(10, bits // 8, seed=99)])
    for k in (1, 10, 57):
        d, got = index.search(q, k)
        assert d.shape == (15, k) and got.shape == (15, k) and got.dtype == np.int64
        ref = brute_hamming(q, codes)
        for i in range(q.shape[0]):
            check_knn(d[i], got[i], ref[i], ids, k, ordered_ties=mode != "ivf")


@pytest.mark.parametrize("mode", ["flat", "mih", "ivf"])
def test_hamming_range_search_matches_brute_force(mode: str) -> None:
    codes = clustered_codes(500, 4, seed=3)
    ids = np.array([f"p{i:04d}" for i in range(500)], dtype=object)
    index = make(mode, 32)
    index.add(ids, codes)
    q = codes[:6]
    ref = brute_hamming(q, codes)
    for r in (0, 1, 3, 7):
        res = index.range_search(q, r)
        for i, (d, got) in enumerate(res):
            want = np.flatnonzero(ref[i] <= r)
            want = want[np.lexsort((want, ref[i][want]))]
            assert list(got) == list(ids[want])
            assert list(d) == list(ref[i][want])


def test_mih_pigeonhole_by_hand() -> None:
    # 16-bit codes, m = 2 substrings of 8 bits. Query 0x0000. Code A = 0x0300 differs in 2 bits, both in
    # substring 0 (substring 1 identical) -> found at radius 2 (floor(2/2) = 1 per substring, substring 1 at 0).
    # Code B = 0x0101 differs in 1 bit in each substring -> distance 2. Code C = 0x0701: 3 + 1 = 4 bits.
    codes = np.array([[0x03, 0x00], [0x01, 0x01], [0x07, 0x01]], dtype=np.uint8)
    mih = MultiIndexHashing(codes, 16, m=2)
    assert mih.lengths == [8, 8]
    d, p = mih.range_search(np.array([0, 0], np.uint8), 2)
    assert list(p) == [0, 1] and list(d) == [2, 2]
    d, p = mih.range_search(np.array([0, 0], np.uint8), 4)
    assert list(p) == [0, 1, 2] and list(d) == [2, 2, 4]
    d, p, s = mih.knn(np.array([0, 0], np.uint8), 3)
    assert list(p) == [0, 1, 2] and list(d) == [2, 2, 4]
    # stop rule: all codes at distance <= m(s+1)-1 are seen; distance 4 needs m(s+1)-1 >= 4 -> s >= 2
    assert s == 2


def test_mih_helpers() -> None:
    assert split_lengths(64, 3) == [22, 21, 21]
    assert default_m(64, 2**20) == 3  # 64 / log2(2^20) = 3.2 -> 3
    assert default_m(128, 2**16) == 8  # 128 / 16


def test_missing_slots_and_str_ids() -> None:
    index = HammingIndex(8)
    index.add(["a", "b"], np.array([[0b1], [0b11]], dtype=np.uint8))
    d, ids = index.search(np.array([[0]], dtype=np.uint8), 4)
    assert list(ids[0]) == ["a", "b", None, None]
    assert list(d[0][:2]) == [1, 2] and d[0][2] == index.missing_distance
    empty = HammingIndex(8, kind="mih")
    d, ids = empty.search(np.zeros((1, 1), np.uint8), 2)
    assert list(ids[0]) == [-1, -1]


@pytest.mark.parametrize("mode", ["flat", "mih", "ivf"])
def test_remove_then_search(mode: str) -> None:
    codes = clustered_codes(400, 8, seed=5)
    ids = np.arange(400, dtype=np.int64) * 7
    index = make(mode, 64)
    index.add(ids, codes)
    gone = ids[::3]
    assert index.remove(np.concatenate([gone, [-5, 999999]])) == gone.size  # absent ids are ignored
    assert index.remove(gone[:4]) == 0
    keep = np.ones(400, bool)
    keep[::3] = False
    assert len(index) == keep.sum()
    q = codes[:8]
    d, got = index.search(q, 15)
    ref = brute_hamming(q, codes[keep])
    for i in range(8):
        check_knn(d[i], got[i], ref[i], ids[keep], 15, ordered_ties=mode != "ivf")
    np.testing.assert_array_equal(index.get(ids[keep][:5]), codes[keep][:5])
    with pytest.raises(NotFoundError):
        index.get([gone[0]])
    index.add(gone[:2], codes[:2])  # re-adding removed ids works
    assert len(index) == keep.sum() + 2


def test_add_errors() -> None:
    index = HammingIndex(16)
    index.add([1, 2], np.zeros((2, 2), np.uint8))
    with pytest.raises(IndexError_, match="already"):
        index.add([2], np.zeros((1, 2), np.uint8))
    with pytest.raises(IndexError_, match="duplicate"):
        index.add([5, 5], np.zeros((2, 2), np.uint8))
    with pytest.raises(IndexError_, match="shape"):
        index.add([9], np.zeros((1, 3), np.uint8))
    with pytest.raises(IndexError_, match="one type"):
        index.add(["x"], np.zeros((1, 2), np.uint8))
    with pytest.raises(IndexError_):
        HammingIndex(12)
    assert isinstance(IndexError_("x"), RsirError)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_float_index_matches_brute_force(metric: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    x[100:110] = x[0]  # exact ties
    q = np.concatenate([x[:3], rng.normal(size=(4, 16)).astype(np.float32)])
    ids = np.array([f"id{i}" for i in range(300)], dtype=object)
    index = FloatIndex(16, metric=metric)
    index.add(ids, x)
    d, got = index.search(q, 12)
    for i in range(q.shape[0]):
        if metric == "ip":
            ref = np.array([float(np.dot(q[i].astype(np.float64), row)) for row in x])
            order = np.argsort(-ref, kind="stable")[:12]
        else:
            ref = np.array([float(((q[i].astype(np.float64) - row) ** 2).sum()) for row in x])
            order = np.argsort(ref, kind="stable")[:12]
        np.testing.assert_allclose(d[i], ref[order], rtol=1e-4, atol=1e-4)
        assert list(got[i]) == list(ids[order])  # float ties (x[0] copied to 100..109) in insertion order
    assert index.remove(ids[100:110]) == 10
    d2, got2 = index.search(q[:1], 2)
    assert "id100" not in list(got2[0])
    rad = index.range_search(q[:1], 1e-3 if metric == "l2" else float(d2[0][0]) - 1e-3)
    assert list(rad[0][1]) == [got2[0][0]]


@pytest.mark.parametrize("mode", ["flat", "mih", "ivf"])
def test_save_load_roundtrip(tmp_path: Path, mode: str) -> None:
    codes = clustered_codes(300, 8, seed=11)
    index = make(mode, 64)
    index.add([f"x{i}" for i in range(300)], codes)
    index.remove(["x3", "x7"])
    out = index.save(tmp_path / "idx")
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temp dirs left behind
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "rsir-index" and manifest["version"] == 2 and manifest["backend"] == "hamming"
    assert manifest["count"] == 298 and manifest["dim"] == 64 and manifest["metric"] == "hamming"
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    loaded = open_index(out)
    assert isinstance(loaded, HammingIndex) and loaded.kind == mode and len(loaded) == 298
    q = codes[:5]
    np.testing.assert_array_equal(loaded.search(q, 9)[0], index.search(q, 9)[0])
    assert (loaded.search(q, 9)[1] == index.search(q, 9)[1]).all()
    index.save(out)  # overwriting an existing index is atomic and leaves no siblings
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


def test_float_save_load(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    index = FloatIndex(8, "l2")
    index.add(np.arange(50), x)
    loaded = FloatIndex.load(index.save(tmp_path / "f"))
    assert loaded.metric == "l2" and len(loaded) == 50
    np.testing.assert_array_equal(loaded.get([3, 4]), x[3:5])
    with pytest.raises(IndexFileError, match="not a HammingIndex"):
        HammingIndex.load(tmp_path / "f")


def test_damaged_and_foreign_files(tmp_path: Path) -> None:
    index = HammingIndex(32)
    index.add(np.arange(100), clustered_codes(100, 4, seed=2))
    out = index.save(tmp_path / "idx")
    codes_file = out / "codes.npy"
    data = bytearray(codes_file.read_bytes())
    data[-1] ^= 0xFF
    codes_file.write_bytes(bytes(data))
    with pytest.raises(IndexFileError, match="checksum"):
        open_index(out)
    codes_file.write_bytes(bytes(data[:-10]))
    with pytest.raises(IndexFileError, match="truncated"):
        open_index(out)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "manifest.json").write_text(json.dumps({"format": "rsir-archive", "version": 1}))
    with pytest.raises(IndexFileError, match="not an rsir-index"):
        open_index(tmp_path / "foreign")
    (tmp_path / "foreign" / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFileError, match="damaged manifest"):
        open_index(tmp_path / "foreign")
    with pytest.raises(IndexFileError, match="no such index"):
        open_index(tmp_path / "missing")
    with pytest.raises(IndexFileError, match="no manifest"):
        open_index(tmp_path)
