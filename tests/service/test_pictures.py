"""Montages (CLI and service) and the page's code map with the query placed on it."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from rsir.cli import main
from rsir.data.archive import open_archive
from rsir.query.montage import IRRELEVANT, QUERY, RELEVANT
from rsir.service.app import ServiceLimits, create_app
from tests.data.archive_helpers import write_tiny_archive
from tests.service.test_api import make_searcher


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TestClient]:
    root = tmp_path_factory.mktemp("pics")
    arch = write_tiny_archive(root / "arch", n=30, size=12)
    eng = make_searcher(open_archive(arch), root / "index")
    return root, TestClient(create_app(engine=eng, limits=ServiceLimits(codemap_points=25)))


def _png(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def _frame_colours(img: np.ndarray, n: int, cols: int = 6, tile: int = 150) -> list[tuple[int, ...]]:
    # the top-left pixel of each tile's frame (pad 8, frame 5, caption 58; see rsir.query.montage)
    cw, ch = tile + 10, tile + 10 + 58
    return [tuple(int(v) for v in img[8 + (i // cols) * (ch + 8) + 1, 8 + (i % cols) * (cw + 8) + 1])
            for i in range(n)]


def test_montage_frames_follow_relevance(setup: tuple[Path, TestClient]) -> None:
    _, client = setup
    r = client.post("/api/search/id", json={"id": "item003", "k": 7, "montage": True}).json()
    img = _png(r["montage"])
    assert img.shape[1] == 8 + 6 * (160 + 8) and img.shape[0] == 8 + 2 * (218 + 8)  # 8 tiles: 2 rows of 6
    want = [QUERY] + [RELEVANT if h["shares_label"] else IRRELEVANT for h in r["results"]]
    assert _frame_colours(img, 8) == [tuple(c) for c in want]
    t = client.post("/api/search/text", json={"text": "coniferous forest", "k": 3, "montage": True}).json()
    assert _png(t["montage"]).shape[0] == 8 + 218 + 8


def test_codemap_and_query_placement(setup: tuple[Path, TestClient]) -> None:
    root, client = setup
    # before the map exists a search answers no place
    assert client.post("/api/search/id", json={"id": "item001", "k": 3, "codemap": True}).json()["query"][
        "codemap"] is None
    cm = client.get("/api/codemap").json()
    assert cm["n"] == 25 and len(cm["points"]) == 25 and cm["metric"] == "hamming"
    on_map = {p["id"]: (p["x"], p["y"]) for p in cm["points"]}
    iid = next(iter(on_map))
    xy = client.post("/api/search/id", json={"id": iid, "k": 3, "codemap": True}).json()["query"]["codemap"]
    assert xy == pytest.approx(list(on_map[iid]), abs=1e-3)
    off = next(f"item{i:03d}" for i in range(30) if f"item{i:03d}" not in on_map)
    xy = client.post("/api/search/id", json={"id": off, "k": 3, "codemap": True}).json()["query"]["codemap"]
    pts = np.array(list(on_map.values()))
    assert len(xy) == 2 and pts.min(0)[0] - 50 < xy[0] < pts.max(0)[0] + 50
    buf = io.BytesIO()
    np.savez(buf, **open_archive(root / "arch").get(off, "s2"))
    up = client.post("/api/search/upload", files={"file": ("q.npz", buf.getvalue())},
                     data={"k": "3", "codemap": "true", "montage": "true"}).json()
    assert len(up["query"]["codemap"]) == 2 and _png(up["montage"]).shape[0] > 0


def test_cli_montage(setup: tuple[Path, TestClient], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = setup
    out = tmp_path / "m.png"
    assert main(["search", str(root / "index"), "--id", "item002", "-k", "4", "--montage", str(out),
                 "--montage-cols", "5"]) == 0
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (8 + 218 + 8, 8 + 5 * 168, 3)
    assert _frame_colours(img, 1, cols=5)[0] == QUERY


def test_service_draws_at_most_montage_tiles(setup: tuple[Path, TestClient]) -> None:
    _, client = setup
    small = TestClient(create_app(engine=client.app.state.service.engine, limits=ServiceLimits(montage_tiles=3)))
    r = small.post("/api/search/id", json={"id": "item003", "k": 20, "montage": True}).json()
    assert len(r["results"]) == 20
    assert _png(r["montage"]).shape == (8 + 218 + 8, 8 + 4 * 168, 3)  # the query and 3 results, one row
