"""API tests of the search service, in-process with fastapi's TestClient."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from rsir.data.archive import Archive, open_archive
from rsir.pipeline import build_index
from rsir.query import SearchEngine
from rsir.service.app import ServiceLimits, create_app
from tests.data.archive_helpers import write_tiny_archive

TOKEN = "s3cret-token"


def make_searcher(archive: Archive, index_dir: Path) -> SearchEngine:
    """A real LSH index (64 bits) of the archive, opened as the service opens it."""
    if not index_dir.exists():
        build_index(archive, index_dir, method="lsh", bits=64, progress=False)
    return SearchEngine.open(index_dir, archive=archive)


@pytest.fixture(scope="module")
def archive_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_archive(tmp_path_factory.mktemp("svc") / "arch", n=60, size=12)


@pytest.fixture(scope="module")
def searcher(archive_path: Path) -> SearchEngine:
    return make_searcher(open_archive(archive_path), archive_path.parent / "index")


@pytest.fixture(scope="module")
def client(searcher) -> TestClient:
    app = create_app(engine=searcher, token=TOKEN, limits=ServiceLimits(max_upload_bytes=200_000))
    return TestClient(app)


def _post_npz(client: TestClient, arrays: dict, k: int = 5, name: str = "q.npz", path: str = "/api/search/upload",
              **form) -> object:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return client.post(path, files={"file": (name, buf.getvalue(), "application/octet-stream")},
                       data={"k": str(k), **form})


def _popcount_distances(codes: np.ndarray, q: np.ndarray) -> np.ndarray:
    # brute force: unpack bits and count differing ones
    return (np.unpackbits(codes, axis=1) != np.unpackbits(q[None], axis=1)).sum(1)


def test_health_and_stats(client: TestClient) -> None:
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["items"] == 60
    assert h["index"]["metric"] == "hamming" and h["index"]["size"] == 60
    s = client.get("/api/stats").json()
    assert s["splits"] == {"test": 20, "train": 20, "validation": 20}
    assert len(s["labels"]) == 19 and s["text_mode"] == "label-match"
    assert client.get("/openapi.json").json()["paths"]["/api/search/id"]


def test_search_id_ranking_equals_searcher_and_brute_force(client: TestClient, searcher) -> None:
    import time

    t0 = time.perf_counter()
    r = client.post("/api/search/id", json={"id": "item007", "k": 10})
    elapsed_ms = (time.perf_counter() - t0) * 1000
    assert r.status_code == 200
    body = r.json()
    got = [x["id"] for x in body["results"]]
    # the engine's own ranking, with the query itself left out (the page shows it separately)
    want = searcher.search_id("item007", 10).ids
    assert got == want
    codes = searcher.index.get(list(searcher.archive.ids))
    d = _popcount_distances(codes, searcher.index.get(["item007"])[0])
    order = [i for i in np.lexsort((np.arange(60), d)) if searcher.archive.ids[i] != "item007"][:10]
    assert got == [searcher.archive.ids[i] for i in order]
    assert [x["distance"] for x in body["results"]] == [int(d[i]) for i in order]
    assert [x["rank"] for x in body["results"]] == list(range(1, 11))
    qlab = set(body["query"]["labels"])
    shares = [bool(qlab & set(x["labels"])) for x in body["results"]]
    assert [x["shares_label"] for x in body["results"]] == shares
    assert body["precision"] == pytest.approx(sum(shares) / 10)
    # the reported search time is part of the request's own wall time
    assert isinstance(body["query_ms"], float) and body["query_ms"] < elapsed_ms


def test_paging_and_filters(client: TestClient) -> None:
    full = client.post("/api/search/id", json={"id": "item004", "k": 59}).json()["results"]
    page = client.post("/api/search/id", json={"id": "item004", "k": 5, "offset": 5}).json()["results"]
    assert [x["id"] for x in page] == [x["id"] for x in full[5:10]]
    assert [x["rank"] for x in page] == [6, 7, 8, 9, 10]
    lab = "Arable land"
    flt = client.post("/api/search/id", json={"id": "item004", "k": 59,
                                              "filters": {"labels": [lab], "split": "test"}}).json()
    want = [x["id"] for x in full if lab in x["labels"] and x["split"] == "test"]
    assert [x["id"] for x in flt["results"]] == want and want
    two = ["Arable land", "Pastures"]
    allr = client.post("/api/search/id", json={"id": "item004", "k": 59,
                                               "filters": {"labels": two, "labels_mode": "all"}}).json()
    assert [x["id"] for x in allr["results"]] == [x["id"] for x in full if set(two) <= set(x["labels"])]
    # the tiny archive's lon is 14.0 + 0.01 * i: a box from 14.095 to 14.205 holds items 10..20
    box = client.post("/api/search/id", json={"id": "item004", "k": 59,
                                              "filters": {"bbox": [14.095, 46.9, 14.205, 47.1]}}).json()
    assert sorted(x["id"] for x in box["results"]) == [f"item{i:03d}" for i in range(10, 21)]
    none = client.post("/api/search/id", json={"id": "item004", "k": 5,
                                               "filters": {"date_from": "2018-01-01"}}).json()
    assert none["results"] == [] and none["matching"] == 0


def test_errors(client: TestClient) -> None:
    r = client.post("/api/search/id", json={"id": "nope", "k": 5})
    assert r.status_code == 404 and "'nope'" in r.json()["detail"]
    assert client.get("/api/items/nope").status_code == 404
    assert client.post("/api/search/id", json={"id": "item001", "k": 0}).status_code == 422
    assert client.post("/api/search/id", json={"id": "item001", "k": 100000}).status_code == 422
    r = client.post("/api/search/id", json={"id": "item001", "filters": {"labels": ["Lava"]}})
    assert r.status_code == 422 and "Lava" in r.json()["detail"]
    r = client.post("/api/search/id", json={"id": "item001", "target_modality": "s1"})
    assert r.status_code == 422 and "s2" in r.json()["detail"]
    assert client.get("/api/items/item001/quicklook.png?modality=xx").status_code == 422


def test_browse_item_and_quicklook(client: TestClient) -> None:
    r = client.get("/api/items", params={"offset": 2, "limit": 3, "split": "train"}).json()
    # splits cycle train/validation/test, so train items are 0, 3, 6, ... and offset 2 starts at item006
    assert r["total"] == 20 and [x["id"] for x in r["items"]] == ["item006", "item009", "item012"]
    it = client.get("/api/items/item006").json()
    assert it["lon"] == pytest.approx(14.06) and it["split"] == "train"
    for m in ("s2", "s1"):
        q = client.get(f"/api/items/item006/quicklook.png?modality={m}")
        assert q.status_code == 200 and q.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/").status_code == 200 and "rsir" in client.get("/").text
    assert client.get("/static/app.js").status_code == 200


def test_text_label_match_ranking(client: TestClient, searcher) -> None:
    r = client.post("/api/search/text", json={"text": "Coniferous forest next to inland waters", "k": 100})
    body = r.json()
    assert body["mode"] == "label-match"
    assert body["query"]["labels"] == ["Coniferous forest", "Inland waters"]
    # by hand: score = number of the two labels present, then Jaccard with the query set, then position
    q = {"Coniferous forest", "Inland waters"}
    rows = []
    for p, i in enumerate(searcher.archive.ids):
        labs = set(searcher.archive.item(i)["labels"])
        inter = len(labs & q)
        if inter:
            rows.append((-inter, -inter / len(labs | q), p, i))
    assert [x["id"] for x in body["results"]] == [i for *_, i in sorted(rows)]
    assert body["precision"] == 1.0
    r2 = client.post("/api/search/text", json={"text": "gibberish words", "k": 5}).json()
    assert r2["results"] == [] and r2["note"]


def test_upload_npz_finds_the_item_itself(client: TestClient, searcher) -> None:
    bands = searcher.archive.get("item011", "s2")
    r = _post_npz(client, bands, k=5)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert res[0]["id"] == "item011" and res[0]["distance"] == 0
    by_id = client.post("/api/search/id", json={"id": "item011", "k": 5, "include_query": True}).json()
    assert [x["id"] for x in res] == [x["id"] for x in by_id["results"]]
    assert r.json()["query"]["quicklook"].startswith("data:image/png;base64,")
    # one C x H x W array on the grid (bands in the encoder's order) is accepted too
    stack = searcher.archive.image("item011", "s2", normalized=False)
    r = _post_npz(client, {"image": stack}, k=1)
    assert r.status_code == 200 and r.json()["results"][0]["id"] == "item011"


def test_upload_geotiff(client: TestClient, searcher, tmp_path: Path) -> None:
    import rasterio
    from affine import Affine

    stack = searcher.archive.image("item020", "s2", normalized=False)
    fp = tmp_path / "q.tif"
    with rasterio.open(fp, "w", driver="GTiff", width=12, height=12, count=12, dtype="float32",
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5200000)) as ds:
        ds.write(stack)
    r = client.post("/api/search/upload", files={"file": ("q.tif", fp.read_bytes(), "image/tiff")},
                    data={"k": "3"})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["id"] == "item020" and r.json()["query"]["format"] == "geotiff"


def test_upload_rejections(client: TestClient, searcher) -> None:
    bands = searcher.archive.get("item001", "s2")
    r = _post_npz(client, {"image": np.zeros((3, 12, 12), np.float32)})
    assert r.status_code == 422
    assert "file has 3 bands, the index's encoder expects 12 bands (s2: B01..B12)" in r.json()["detail"]
    bad = {b: a.astype(np.float32) for b, a in bands.items()}
    bad["B04"][0, 0] = np.nan
    r = _post_npz(client, bad)
    assert r.status_code == 422 and "B04" in r.json()["detail"] and "NaN" in r.json()["detail"]
    r = _post_npz(client, {**bands, "B02": np.zeros((5, 5), np.uint16)})
    assert r.status_code == 422 and "B02" in r.json()["detail"] and "5x5" in r.json()["detail"]
    r = _post_npz(client, {**bands, "B03": np.zeros((12, 12), np.complex64)})
    assert r.status_code == 422 and "dtype" in r.json()["detail"]
    r = client.post("/api/search/upload", files={"file": ("x.png", b"\x89PNG\r\n\x1a\n0000", "image/png")})
    assert r.status_code == 415 and "12 bands" in r.json()["detail"]
    r = client.post("/api/search/upload", files={"file": ("x.txt", b"hello", "text/plain")})
    assert r.status_code == 415
    big = {b: np.random.default_rng(0).random((600, 600)) for b in ("B01", "B02")}  # ~5.7 MB > 200 kB limit
    r = _post_npz(client, big)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    r = client.post("/api/search/upload", files={"file": ("q.npz", b"PK\x03\x04garbage", "x")})
    assert r.status_code == 400


@pytest.fixture
def fresh_client(searcher) -> TestClient:
    # a new index over the same Archive object (LMDB allows one open environment per process and path)
    return TestClient(create_app(engine=SearchEngine.open(searcher.index_dir.path, archive=searcher.archive), token=TOKEN))


def test_add_item_needs_token(fresh_client: TestClient, searcher) -> None:
    bands = searcher.archive.get("item030", "s2")
    form = {"id": "new-1", "labels": "Arable land|Pastures", "lon": "15.5", "lat": "48.1"}
    assert _post_npz(fresh_client, bands, path="/api/items", **form).status_code == 401
    buf = io.BytesIO()
    np.savez(buf, **bands)
    files = {"file": ("a.npz", buf.getvalue(), "x")}
    r = fresh_client.post("/api/items", files=files, data=form, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403
    r = fresh_client.post("/api/items", files=files, data=form, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201, r.text
    assert r.json()["labels"] == ["Arable land", "Pastures"]
    res = fresh_client.post("/api/search/id", json={"id": "new-1", "k": 3, "include_query": True}).json()
    # the new item has the very code of item030: both at distance 0, archive item first (insertion order)
    assert [x["id"] for x in res["results"][:2]] == ["item030", "new-1"]
    assert res["results"][1]["distance"] == 0
    assert fresh_client.get("/api/items/new-1/quicklook.png").status_code == 200
    r = fresh_client.post("/api/items", files=files, data=form, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 409
    assert fresh_client.get("/api/health").json()["items"] == 61
    no_token = TestClient(create_app(engine=SearchEngine.open(searcher.index_dir.path, archive=searcher.archive)))
    assert no_token.post("/api/items", files=files, data=form).status_code == 403


def test_searches_stay_correct_during_adds(fresh_client: TestClient, searcher) -> None:
    # added items have split "" so the train-only ranking must not change while they are being added
    query = {"id": "item002", "k": 10, "filters": {"split": "train"}}
    baseline = fresh_client.post("/api/search/id", json=query).json()["results"]
    bands = {b: a for b, a in searcher.archive.get("item002", "s2").items()}
    errors: list[str] = []

    def adder() -> None:
        for j in range(15):
            buf = io.BytesIO()
            np.savez(buf, **bands)
            r = fresh_client.post("/api/items", files={"file": ("a.npz", buf.getvalue(), "x")},
                                  data={"id": f"added-{j}"}, headers={"Authorization": f"Bearer {TOKEN}"})
            if r.status_code != 201:
                errors.append(r.text)

    def searcher_loop() -> None:
        for _ in range(25):
            r = fresh_client.post("/api/search/id", json=query)
            if r.status_code != 200 or r.json()["results"] != baseline:
                errors.append(f"{r.status_code} {json.dumps(r.json())[:200]}")

    threads = [threading.Thread(target=adder)] + [threading.Thread(target=searcher_loop) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fresh_client.get("/api/health").json()["index"]["size"] == 75
    # and the unfiltered ranking now holds the 15 copies of item002 right after it (distance 0)
    res = fresh_client.post("/api/search/id", json={"id": "item002", "k": 16, "include_query": True}).json()
    assert [x["distance"] for x in res["results"]] == [0] * 16


def test_several_collections_on_one_server(archive_path: Path, searcher: SearchEngine, tmp_path: Path) -> None:
    from rsir.service.app import CollectionSpec, create_multi_app

    other = write_tiny_archive(tmp_path / "other", n=30, size=12)
    make_searcher(open_archive(other), tmp_path / "other-index")
    app = create_multi_app([CollectionSpec("main", archive_path, archive_path.parent / "index"),
                            CollectionSpec("other", other, tmp_path / "other-index")])
    c = TestClient(app)
    listing = c.get("/api/collections").json()
    assert [(x["name"], x["url"], x["items"], x["current"]) for x in listing] == [
        ("main", "/", 60, True), ("other", "/c/other/", 30, False)]
    assert [x["current"] for x in c.get("/c/other/api/collections").json()] == [False, True]
    assert c.get("/api/stats").json()["items"] == 60
    assert c.get("/c/other/api/stats").json()["items"] == 30
    # the sub-collection's page loads its assets relative to its own URL, and its quicklooks carry its prefix
    page = c.get("/c/other/")
    assert page.status_code == 200 and 'src="static/app.js"' in page.text
    assert c.get("/c/other/static/app.js").status_code == 200
    hit = c.post("/c/other/api/search/id", json={"id": "item003", "k": 3}).json()["results"][0]
    assert hit["quicklook"].startswith("/c/other/api/items/")
    png = c.get(hit["quicklook"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    # ids are per collection: the root answers for its own archive only
    assert c.post("/api/search/id", json={"id": "item045", "k": 3}).status_code == 200
    assert c.post("/c/other/api/search/id", json={"id": "item045", "k": 3}).status_code == 404


@pytest.mark.parametrize("text", ["noname", "a b=x,y", "x=onlyone", "x=a,b,c,d"])
def test_collection_spec_errors_name_the_problem(text: str) -> None:
    from rsir.errors import RsirError
    from rsir.service.app import CollectionSpec

    with pytest.raises(RsirError, match="NAME=ARCHIVE,INDEX"):
        CollectionSpec.parse(text)
    assert CollectionSpec.parse("sim=a,b,m") == CollectionSpec("sim", Path("a"), Path("b"), Path("m"))


def test_api_docs_work_offline(client: TestClient) -> None:
    import re

    for path in ("/docs", "/redoc"):
        html = client.get(path).text
        assert not re.search(r"""(src|href)=["']?https?://""", html), f"{path} loads something from the internet"
        assets = re.findall(r"""(?:src|href)=["']?(/[^"' >]+)""", html)
        assert assets, html
        for a in assets:
            assert client.get(a).status_code == 200, a
        assert "/openapi.json" in html


def test_service_and_cli_answer_identically(client: TestClient, searcher, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The same query through the HTTP API and through `rsir search --json` gives the same results."""
    from rsir.cli import main

    index_dir = str(searcher.index_dir.path)
    keys = ("rank", "id", "distance", "labels", "shares_label", "split", "country", "date", "lon", "lat", "bbox")

    def strip(results: list[dict]) -> list[dict]:
        return [{k: r[k] for k in keys} for r in results]

    body = client.post("/api/search/id", json={"id": "item012", "k": 15, "offset": 3,
                                               "filters": {"split": "test"}}).json()
    assert main(["search", index_dir, "--id", "item012", "-k", "15", "--offset", "3", "--split", "test",
                 "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert strip(cli["results"]) == strip(body["results"]) and len(body["results"]) > 0
    assert cli["matching"] == body["matching"] and cli["precision"] == body["precision"]
    # by image: the service's upload and the CLI's --file parse the same bytes the same way
    buf = io.BytesIO()
    np.savez(buf, **searcher.archive.get("item033", "s2"))
    (tmp_path / "q.npz").write_bytes(buf.getvalue())
    up = client.post("/api/search/upload", files={"file": ("q.npz", buf.getvalue(), "application/octet-stream")},
                     data={"k": "8"}).json()
    assert main(["search", index_dir, "--file", str(tmp_path / "q.npz"), "-k", "8", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert strip(cli["results"]) == strip(up["results"]) and up["results"][0]["distance"] == 0
