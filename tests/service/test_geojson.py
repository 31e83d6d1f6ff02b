"""The service answers a STAC ItemCollection to clients that send Accept: application/geo+json."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pystac
import pytest
from fastapi.testclient import TestClient
from pystac.validation.stac_validator import JsonSchemaSTACValidator

from rsir.data.archive import open_archive
from rsir.service.app import create_app
from tests.data.archive_helpers import write_tiny_archive
from tests.service.test_api import make_searcher

GEO = {"Accept": "application/geo+json"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    root = tmp_path_factory.mktemp("geo")
    eng = make_searcher(open_archive(write_tiny_archive(root / "arch", n=30, size=12)), root / "index")
    return TestClient(create_app(engine=eng))


def _check(fc: dict, plain: dict) -> None:
    v = JsonSchemaSTACValidator()
    assert fc["type"] == "FeatureCollection" and fc["numberReturned"] == len(plain["results"])
    assert fc["numberMatched"] == plain["matching"]
    for f, r in zip(fc["features"], plain["results"], strict=True):
        assert f["id"] == r["id"] and f["properties"]["rsir:distance"] == r["distance"]
        assert f["properties"]["rsir:labels"] == r["labels"] and f["properties"]["rsir:rank"] == r["rank"]
        # tiny archives have a centre and no bbox: the footprint is the point
        assert f["geometry"] == {"type": "Point", "coordinates": [r["lon"], r["lat"]]}
        assert f["properties"]["datetime"] == "2017-06-13T00:00:00Z"
        assert f["assets"]["thumbnail"]["href"].startswith("http://testserver/api/items/")
        v.validate_core(f, pystac.STACObjectType.ITEM, "1.1.0")


def test_id_and_text_searches(client: TestClient) -> None:
    body = {"id": "item004", "k": 7, "filters": {"split": "test"}}
    plain = client.post("/api/search/id", json=body).json()
    r = client.post("/api/search/id", json=body, headers=GEO)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    _check(r.json(), plain)
    body = {"text": "coniferous forest", "k": 5}
    plain = client.post("/api/search/text", json=body).json()
    _check(client.post("/api/search/text", json=body, headers=GEO).json(), plain)
    # a thumbnail URL of the collection answers a PNG
    href = client.post("/api/search/id", json=body | {"id": "item001"}, headers=GEO).json()["features"][0]
    png = client.get(href["assets"]["thumbnail"]["href"].replace("http://testserver", ""))
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"


def test_upload_search(client: TestClient, tmp_path: Path) -> None:
    arch = client.app.state.service.archive
    buf = io.BytesIO()
    np.savez(buf, **arch.get("item010", "s2"))
    files = {"file": ("q.npz", buf.getvalue(), "application/octet-stream")}
    plain = client.post("/api/search/upload", files=files, data={"k": "4"}).json()
    fc = client.post("/api/search/upload", files=files, data={"k": "4"}, headers=GEO).json()
    _check(fc, plain)
    assert fc["features"][0]["id"] == "item010" and fc["features"][0]["properties"]["rsir:distance"] == 0
