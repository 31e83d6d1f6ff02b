"""The Milvus backend (Milvus Lite, a file in tmp): the same results as the faiss backend on the same codes, ties
included (tie order normalised to position order); paging past Milvus's 16,384-hit cap; filters applied inside
the Milvus search give the engine's filtered ranking; save / load; rsir index --backend milvus and the service."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
from rsir.index.milvus import _pymilvus  # noqa: E402

_pymilvus()  # milvus-lite 2.5's __init__ imports pkg_resources: the backend stands in for it where it is gone
pytest.importorskip("milvus_lite")

from fastapi.testclient import TestClient  # noqa: E402

from rsir.data.archive import open_archive  # noqa: E402
from rsir.index import HammingIndex, make_index, open_index  # noqa: E402
from rsir.index.milvus import MILVUS_CAP, MilvusIndex  # noqa: E402
from rsir.pipeline import IndexDir, build_index  # noqa: E402
from rsir.query import Filters, SearchEngine  # noqa: E402
from rsir.service.app import create_app  # noqa: E402
from tests.data.archive_helpers import write_tiny_archive  # noqa: E402


def tied_codes(n: int, distinct: int, seed: int = 0) -> np.ndarray:
    """n 64-bit codes drawn from a few distinct ones, so that most distances are tied."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (distinct, 8), dtype=np.uint8)
    return pool[rng.integers(0, distinct, n)]


def pair(codes: np.ndarray, uri: Path) -> tuple[HammingIndex, MilvusIndex]:
    ids = np.array([f"c{i}" for i in range(len(codes))], dtype=object)
    f = HammingIndex(64)
    f.add(ids, codes)
    m = make_index("hamming", 64, backend="milvus", uri=str(uri))
    assert isinstance(m, MilvusIndex)
    m.add(ids, codes)
    return f, m


def assert_same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
    assert np.array_equal(a[0], b[0])
    assert a[1].tolist() == b[1].tolist()


def test_same_results_as_faiss_with_ties(tmp_path: Path) -> None:
    codes = tied_codes(1500, 30)
    f, m = pair(codes, tmp_path / "m.db")
    q = np.concatenate([codes[:3], tied_codes(3, 5, seed=9)])
    for k in (1, 7, 60, 400, 1500, 1600):
        assert_same(f.search(q, k), m.search(q, k))
    for r in (0, 10, 30):
        for (fd, fi), (md, mi) in zip(f.range_search(q, r), m.range_search(q, r), strict=True):
            assert np.array_equal(fd, md) and fi.tolist() == mi.tolist()
    assert np.array_equal(m.get(["c5", "c1499", "c0"]), codes[[5, 1499, 0]])
    assert f.remove(["c3", "c10", "c11"]) == m.remove(["c3", "c10", "c11"]) == 3
    assert_same(f.search(q, 50), m.search(q, 50))
    m.add(["new"], codes[:1])
    f.add(["new"], codes[:1])
    assert_same(f.search(q, 200), m.search(q, 200))
    # saved and loaded again: the pointer to the collection and the id map
    m.save(tmp_path / "idx")
    m.close()
    again = open_index(tmp_path / "idx")
    assert isinstance(again, MilvusIndex)
    assert_same(f.search(q, 100), again.search(q, 100))
    again.close()


@pytest.mark.slow  # ~20k rows and pages of 16,384 hits: about a minute on a loaded 2-core machine
def test_beyond_the_16384_cap_pages_by_distance_and_key_windows(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (MILVUS_CAP + 3000, 8), dtype=np.uint8)
    codes[: MILVUS_CAP + 1000] = codes[0]  # 17,384 codes at distance 0 from the query: one band over the cap
    f, m = pair(codes, tmp_path / "m.db")
    q = codes[:1]
    for k in (MILVUS_CAP - 1, MILVUS_CAP + 500, MILVUS_CAP + 2500):
        assert_same(f.search(q, k), m.search(q, k))
    (fd, fi), (md, mi) = f.range_search(q, 28)[0], m.range_search(q, 28)[0]
    assert fd.size > MILVUS_CAP and np.array_equal(fd, md) and fi.tolist() == mi.tolist()
    m.close()


def test_lite_refuses_ivf_with_the_reason(tmp_path: Path) -> None:
    from rsir.index import IndexError_

    with pytest.raises(IndexError_, match="only BIN_FLAT"):
        make_index("hamming", 64, "ivf", backend="milvus", uri=str(tmp_path / "x.db"))


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> tuple[SearchEngine, SearchEngine, Path, Path]:
    root = tmp_path_factory.mktemp("milvus")
    arch = write_tiny_archive(root / "arch", n=90, size=12)
    build_index(open_archive(arch), root / "faiss", method="lsh", bits=16, progress=False)  # 16 bits: many ties
    enc = IndexDir.open(root / "faiss").encoder
    build_index(open_archive(arch), root / "milvus", encoder=enc, progress=False,
                backend_options={"backend": "milvus", "uri": str(root / "milvus.db")})
    return (SearchEngine.open(root / "faiss", archive=arch), SearchEngine.open(root / "milvus", archive=arch),
            arch, root / "milvus")


FILTERS = [None, Filters(split="test"), Filters(labels=["Urban fabric", "Pastures"]),
           Filters(labels=["Arable land", "Pastures"], labels_mode="all"), Filters(country="austria"),
           Filters(date_from="2017-06-13", date_to="2017-06-13", split="train"),
           Filters(bbox=[14.1, 46.0, 14.5, 48.0]), Filters(bbox=[0, 0, 1, 1]),
           # request text never becomes expression syntax (it is compared as hex): no item has this split
           Filters(split='test" or pk >= 0 or split == "'), Filters(country="Austria') or (pk >= 0")]


def test_engine_over_milvus_equals_faiss_filtered_and_not(engines) -> None:
    fe, me, _, _ = engines
    assert me.index.backend == "milvus" and hasattr(me.index, "filtered_search")
    for item in ("item000", "item031", "item077"):
        for flt in FILTERS:
            a, b = fe.search_id(item, k=25, filters=flt), me.search_id(item, k=25, filters=flt)
            assert a.ids == b.ids and [h.distance for h in a.hits] == [h.distance for h in b.hits], (item, flt)
            assert a.matching == b.matching
    page = me.search_id("item005", k=10, offset=20, filters=Filters(split="validation"))
    assert page.ids == fe.search_id("item005", k=10, offset=20, filters=Filters(split="validation")).ids


def test_service_over_milvus(engines) -> None:
    fe, me, arch, idx = engines
    me.close()  # one process at a time holds a Milvus Lite file: the app below opens it again
    app = create_app(arch, idx)
    c = TestClient(app)
    body = {"id": "item010", "k": 15, "filters": {"labels": ["Pastures", "Urban fabric"]}}
    got = [h["id"] for h in c.post("/api/search/id", json=body).json()["results"]]
    assert got == fe.search_id("item010", k=15, filters=Filters(labels=["Pastures", "Urban fabric"])).ids
    assert c.get("/api/health").json()["index"]["size"] == 90
    app.state.service.engine.close()


def test_durable_writes_over_milvus_replay_without_duplicates(engines, tmp_path: Path) -> None:
    fe, _, arch, _ = engines
    out = build_index(open_archive(arch), tmp_path / "mv", encoder=fe.encoder, progress=False,
                      backend_options={"backend": "milvus", "uri": str(tmp_path / "mv.db")})
    code = fe.index.get(["item003"])[0]
    eng = SearchEngine.open(out, archive=arch, durable=True)
    eng.add_vector("a1", code, ["Pastures"], {"split": "test"})
    eng.add_vector("a2", code, [], {"split": "train"})
    eng.delete_item("a1")
    eng.delete_item("item003")
    eng.add_vector("a3", code, ["Pastures"], {"split": "test"})
    want = eng.search_vector(code, k=30).ids
    want_f = eng.search_vector(code, k=10, filters=Filters(split="test")).ids
    eng.close()
    for durable in (True, False, True):  # the writer reconciles Milvus with the journal; a reader only maps
        again = SearchEngine.open(out, archive=arch, durable=durable)
        assert again.search_vector(code, k=30).ids == want
        assert again.search_vector(code, k=10, filters=Filters(split="test")).ids == want_f
        assert want[:2] == ["a2", "a3"] and "item003" not in want and want_f[0] == "a3"
        assert len(again.index) == 90 - 1 + 2
        again.close()
    n_rows = again.index.client.query(again.index.collection, filter="pk >= 0", output_fields=["count(*)"])
    assert n_rows[0]["count(*)"] == 91  # no duplicate rows from the replays
    again.index.close()
