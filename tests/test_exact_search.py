"""Exact structures end to end: codes of a real (untrained) model from `rsir index --model`, every exact kind equal to
a brute-force ranking, radius queries through the query engine, the CLI and the service, the choice in the
manifest."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from rsir.query import QueryError, QueryLimits, SearchEngine
from tests.data.archive_helpers import write_tiny_archive


@pytest.fixture(scope="module")
def model_indexes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A 40-item archive, an untrained 32-bit model, and its index under every exact kind (via the CLI)."""
    import torch

    from rsir.cli import main
    from rsir.data.archive import open_archive
    from rsir.models.io import ModelMeta, save_model
    from rsir.models.net import NetConfig, RetrievalNet
    from rsir.models.resnet import ResNetConfig

    root = tmp_path_factory.mktemp("exact")
    arch = write_tiny_archive(root / "arch", n=40, size=12)
    a = open_archive(arch)
    spec = a.spec("s2")
    mean, std = a.band_stats("s2")
    torch.manual_seed(0)
    net = RetrievalNet(NetConfig(ResNetConfig(len(spec.bands), 8, [1, 1]), n_classes=19, bits=32, output="hash"))
    model = save_model(root / "m", net.eval(), ModelMeta("s2", list(spec.bands), mean, std, 12,
                                                         list(a.nomenclature.classes)))
    out = {}
    for kind in ("flat", "scan", "mih", "exact-ivf", "auto"):
        out[kind] = root / f"i-{kind}"
        assert main(["index", str(arch), "--model", str(model), "--kind", kind, "--out", str(out[kind]),
                     "--no-progress"]) == 0
    return arch, out


def _brute(codes: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(codes, axis=1)
    return (bits[:, None, :] != bits[None, :, :]).sum(-1)


def test_learned_codes_every_kind_equals_brute_force(model_indexes: tuple[Path, dict[str, Path]]) -> None:
    _, paths = model_indexes
    flat = SearchEngine.open(paths["flat"])
    ids = [str(i) for i in flat.index.ids]
    codes = flat.index.get(ids)
    ref = _brute(codes)
    for kind, path in paths.items():
        eng = SearchEngine.open(path)
        assert [str(i) for i in eng.index.ids] == ids
        for qi in range(0, len(ids), 7):
            res = eng.search_id(ids[qi], k=15, include_query=True)
            order = np.lexsort((np.arange(len(ids)), ref[qi]))[:15]
            assert res.ids == [ids[j] for j in order], kind
            assert [h.distance for h in res.hits] == ref[qi, order].tolist(), kind
            r = int(np.sort(ref[qi])[12])
            within = eng.search_id(ids[qi], k=100, include_query=True, radius=r)
            o = np.lexsort((np.arange(len(ids)), ref[qi]))
            o = o[ref[qi, o] <= r]
            assert within.ids == [ids[j] for j in o] and within.within == o.size and within.radius == r, kind
    manifest = json.loads((paths["auto"] / "manifest.json").read_text())
    assert manifest["kind"] == "auto" and manifest["structure"].startswith("auto -> scan")
    inner = json.loads((paths["auto"] / "index" / "manifest.json").read_text())
    assert inner["backend"] == "hamming-exact" and inner["params"]["chosen"] == "scan"


def test_radius_pages_and_limits(model_indexes: tuple[Path, dict[str, Path]]) -> None:
    _, paths = model_indexes
    eng = SearchEngine.open(paths["mih"], limits=QueryLimits(max_radius_hits=5))
    first = eng.search_id(str(eng.index.ids[0]), k=3, radius=32)
    assert first.within == 39 and len(first.hits) == 3  # every other item is within 32 bits
    page2 = eng.search_id(str(eng.index.ids[0]), k=3, offset=3, radius=32)
    assert [h.rank for h in page2.hits] == [4, 5] and page2.within == 39  # the page stops at max_radius_hits
    assert first.to_json()["within"] == 39 and first.to_json()["radius"] == 32
    with pytest.raises(QueryError, match="radius must be between 0 and 32"):
        eng.search_id(str(eng.index.ids[0]), radius=33)


def test_cli_and_service_radius(model_indexes: tuple[Path, dict[str, Path]], capsys: pytest.CaptureFixture[str]
                                ) -> None:
    from fastapi.testclient import TestClient

    from rsir.cli import main
    from rsir.service.app import create_app

    _, paths = model_indexes
    eng = SearchEngine.open(paths["auto"])
    first = str(eng.index.ids[0])
    assert main(["search", str(paths["auto"]), "--id", first, "--radius", "32", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "39 items within Hamming distance 32" in out
    client = TestClient(create_app(engine=eng))
    r = client.post("/api/search/id", json={"id": first, "k": 5, "radius": 32})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["within"] == 39 and len(body["results"]) == 5
    # an uploaded patch takes a radius too (the page's "all within distance r" sends it as a form field)
    buf = io.BytesIO()
    np.savez(buf, **eng.archive.get(first, eng.modality))
    up = client.post("/api/search/upload", files={"file": ("q.npz", buf.getvalue())},
                     data={"k": "3", "radius": "32"})
    assert up.status_code == 200, up.text
    assert up.json()["within"] == eng.search_id(first, k=3, radius=32, include_query=True).within
    bad = client.post("/api/search/upload", files={"file": ("q.npz", buf.getvalue())}, data={"radius": "x"})
    assert bad.status_code == 422 and "radius must be a whole number" in bad.json()["detail"]


def test_radius_after_adds_and_deletes(model_indexes: tuple[Path, dict[str, Path]]) -> None:
    """Radius hits map index positions to table rows through one array; it follows added and deleted items
    (including an id deleted and added again, which leaves two rows with that id in the table)."""
    _, paths = model_indexes
    for kind in ("flat", "auto"):
        eng = SearchEngine.open(paths[kind])
        ids = [str(i) for i in eng.index.ids]
        q = ids[0]
        before = eng.search_id(q, k=100, radius=32)
        assert before.within == 39
        code = eng.index.get([ids[5]])[0]
        eng.add_vector("new-1", code, ["Arable land"], {})
        eng.delete_item(ids[7])
        after = eng.search_id(q, k=100, radius=32)
        want = [i for i in before.ids if i != ids[7]]
        assert after.within == 39 and sorted(after.ids) == sorted([*want, "new-1"])
        dist = {h.id: h.distance for h in after.hits}
        assert dist["new-1"] == dist[ids[5]] and after.ids.index("new-1") > after.ids.index(ids[5])  # same code
        eng.delete_item("new-1")
        eng.add_vector("new-1", code, ["Arable land"], {})  # the same id again: a second row for it
        again = eng.search_id(q, k=100, radius=32)
        assert sorted(again.ids) == sorted(after.ids) and again.within == 39
        assert eng.search_id("new-1", k=100, radius=0, include_query=True).ids[:2] == [ids[5], "new-1"]
