"""The compiled exact Hamming search (scan, MIH, exact IVF, auto) against brute force and faiss: identical ids and
distances, ties in position order, on uniform, clustered and learned-like codes, over random sizes, k and radii."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from rsir.index import make_index, open_index
from rsir.index.exact import ExactHammingIndex
from rsir.index.ivf_exact import ExactIVF
from rsir.index.kernels import as_words, flat_knn, flat_radius
from rsir.index.mih_compiled import MIHTables, choose_m, decorrelating_permutation, probes_upto


def brute(q: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(nq, n) distances by comparing unpacked bits: independent of every popcount in rsir."""
    return (np.unpackbits(q, axis=1)[:, None, :] != np.unpackbits(codes, axis=1)[None, :, :]).sum(-1)


def ranked(ref_row: np.ndarray) -> np.ndarray:
    """Positions by (distance, position)."""
    return np.lexsort((np.arange(ref_row.size), ref_row))


def uniform(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    return rng.integers(0, 256, (n, nbytes), dtype=np.uint8)


def clustered(rng: np.random.Generator, n: int, nbytes: int, centres: int = 6, flip: float = 0.08) -> np.ndarray:
    c = rng.integers(0, 2, (centres, nbytes * 8), dtype=np.uint8)
    bits = c[rng.integers(0, centres, n)] ^ (rng.random((n, nbytes * 8)) < flip).astype(np.uint8)
    return np.packbits(bits, axis=1)


def correlated(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    """Learned-like codes: sign of a low-rank projection (strongly correlated bits) of clustered features."""
    bits = nbytes * 8
    feats = rng.standard_normal((5, 6))[rng.integers(0, 5, n)] + 0.5 * rng.standard_normal((n, 6))
    return np.packbits(feats @ rng.standard_normal((6, bits)) > 0, axis=1)


KINDS_OF_CODES = {"uniform": uniform, "clustered": clustered, "correlated": correlated}


def queries_for(rng: np.random.Generator, codes: np.ndarray, gen) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Stored codes (distance-0 hits, duplicates) and fresh codes of the same kind."""
    n, nb = codes.shape
    return np.concatenate([codes[rng.integers(0, n, 3)], gen(rng, 3, nb)])


def check_knn(d: np.ndarray, p: np.ndarray, ref: np.ndarray, k: int) -> None:
    for i in range(ref.shape[0]):
        o = ranked(ref[i])[:k]
        assert p[i, :o.size].tolist() == o.tolist()
        assert d[i, :o.size].tolist() == ref[i, o].tolist()
        assert (p[i, o.size:] == -1).all()


def check_radius(d: np.ndarray, p: np.ndarray, ref_row: np.ndarray, r: int) -> None:
    o = ranked(ref_row)
    o = o[ref_row[o] <= r]
    assert p.tolist() == o.tolist()
    assert d.tolist() == ref_row[o].tolist()


@pytest.mark.parametrize("nbytes", [1, 3, 8, 16])
def test_scan_matches_brute_force(nbytes: int) -> None:
    rng = np.random.default_rng(nbytes)
    codes = clustered(rng, 5000, nbytes)
    q = queries_for(rng, codes, clustered)
    ref = brute(q, codes)
    for k in (1, 10, 100, 5001):
        d, p = flat_knn(as_words(codes), as_words(q), k)
        check_knn(d, p, ref, k)
    for r in (0, 2, nbytes * 3, nbytes * 8):
        d, p = flat_radius(as_words(codes), as_words(q)[0], r)
        check_radius(d, p, ref[0], r)


def test_scan_agrees_with_faiss() -> None:
    rng = np.random.default_rng(7)
    codes = clustered(rng, 20_000, 8)
    q = codes[:20]
    flat = faiss.IndexBinaryFlat(64)
    flat.add(codes)
    fd, _ = flat.search(q, 50)
    d, _ = flat_knn(as_words(codes), as_words(q), 50)
    assert (d == fd).all()


@pytest.mark.parametrize("trial", range(9))
def test_mih_and_ivf_properties(trial: int) -> None:
    """Random sizes, code lengths, k, radii, m and nlist: both structures equal brute force exactly; MIH with its
    scan fallback switched off, so the tables themselves are checked."""
    rng = np.random.default_rng(100 + trial)
    name = list(KINDS_OF_CODES)[trial % 3]
    gen = KINDS_OF_CODES[name]
    nbytes = int(rng.choice([1, 2, 3, 8, 16]))
    n = int(rng.integers(1, 2500))
    codes = gen(rng, n, nbytes)
    q = queries_for(rng, codes, gen)
    ref = brute(q, codes)
    words, qw = as_words(codes), as_words(q)
    bits = nbytes * 8
    m = None if trial % 2 else int(rng.integers(-(-bits // 24), min(bits, 9) + 1))
    mih = MIHTables.build(words, bits, m, permute=trial % 4 != 1, seed=trial)
    mih.budget_fraction = float("inf")
    ivf = ExactIVF.build(words, bits, None if trial % 3 else int(rng.integers(1, 40)), train_size=800, seed=trial)
    k = int(rng.choice([1, 2, 10, 100, n + 3]))
    for struct in (mih, ivf):
        d, p, stats = struct.knn(qw, k)
        check_knn(d, p, ref, k)
        for i in range(q.shape[0]):
            r = int(rng.integers(0, bits + 1))
            d1, p1, _ = struct.radius(qw[i], r)
            check_radius(d1, p1, ref[i], r)
    assert mih.members.size == mih.m * n


def test_mih_prunes_and_falls_back_exactly() -> None:
    rng = np.random.default_rng(3)
    codes = correlated(rng, 30_000, 8)
    words = as_words(codes)
    mih = MIHTables.build(words, 64, seed=0)
    q = words[:8]
    d, p, stats = mih.knn(q, 10)
    ref = brute(codes[:8], codes)
    check_knn(d, p, ref, 10)
    assert (stats[:, 0] < 30_000).all()  # candidates checked: a fraction of the archive
    d, p, _ = mih.knn(q, 1000)
    check_knn(d, p, ref, 1000)
    mih.budget_fraction = 1e-9  # every query over budget (256 candidates): the flat scan answers, exactly
    d2, p2, stats2 = mih.knn(q, 1000)
    assert (stats2[:, 3] == 1).all() and (d2 == d).all() and (p2 == p).all()


def test_mih_helpers() -> None:
    assert choose_m(64, 10**7) == 3 and choose_m(64, 10**3) == 6 and choose_m(128, 10**7) == 6
    assert choose_m(8, 10) == 2 and choose_m(64, 2) == 64 and choose_m(64, 10**8) == 3
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2, (4000, 8), dtype=np.uint8)
    bits = np.concatenate([base, base, base, base], axis=1)  # bit b, b+8, b+16, b+24 identical
    words = as_words(np.packbits(bits, axis=1))
    groups = decorrelating_permutation(words, 32, 4)
    assert sorted(np.concatenate(groups).tolist()) == list(range(32))
    # identical bits (same b mod 8 in the packed layout) are spread over different substrings
    for g in groups:
        packed_col = [(b // 8) * 8 + 7 - b % 8 for b in g.tolist()]  # word bit -> unpacked column
        assert len({c % 8 for c in packed_col}) == len(g)
    assert probes_upto([4, 4], 0) == 1 and probes_upto([4, 4], 2) == 1 + 1 + 4


@pytest.mark.parametrize("kind", ["scan", "mih", "exact-ivf", "auto"])
def test_index_protocol(tmp_path, kind: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    codes = correlated(rng, 25_000, 8)
    ids = np.array([f"im{i}" for i in range(codes.shape[0])], dtype=object)
    index = make_index("hamming", 64, kind)
    assert isinstance(index, ExactHammingIndex)
    index.add(ids, codes)
    q = codes[:5]
    ref = brute(q, codes)
    d, got = index.search(q, 20)
    for i in range(5):
        o = ranked(ref[i])[:20]
        assert got[i].tolist() == ids[o].tolist() and d[i].tolist() == ref[i, o].tolist()
    hits = index.range_search(q[:2], 6)
    for i in range(2):
        o = ranked(ref[i])
        o = o[ref[i, o] <= 6]
        assert hits[i][1].tolist() == ids[o].tolist()
    chosen = index.structure()
    assert chosen in ("scan", "mih", "exact-ivf")
    if kind != "auto":
        assert chosen == kind
    else:
        assert set(index.auto_info["query_ms"]) >= {"scan", "mih"}
    index.save(tmp_path / "ix")
    loaded = open_index(tmp_path / "ix")
    assert isinstance(loaded, ExactHammingIndex) and loaded.chosen == chosen and loaded.kind == kind
    d2, got2 = loaded.search(q, 20)
    assert (d2 == d).all() and got2.tolist() == got.tolist()
    assert index.remove(ids[:3]) == 3
    d3, got3 = index.search(codes[3:4], 1)
    assert got3[0, 0] == "im3" and d3[0, 0] == 0


def test_empty_small_and_bad_input() -> None:
    index = make_index("hamming", 16, "auto")
    d, ids = index.search(np.zeros((1, 2), np.uint8), 3)
    assert (ids == -1).all()
    index.add([1, 2], np.array([[0, 0], [255, 255]], np.uint8))
    d, ids = index.search(np.zeros((1, 2), np.uint8), 3)
    assert ids.tolist() == [[1, 2, -1]] and d[0, :2].tolist() == [0, 16]
    assert index.structure() == "scan"  # too few codes to be worth measuring
    with pytest.raises(Exception, match="packed uint8"):
        index.search(np.zeros((1, 3), np.uint8), 1)
    with pytest.raises(Exception, match="unknown index kind"):
        make_index("hamming", 16, "nope")
    assert make_index("l2", 4, "auto").metric == "l2"
