"""The search pipeline end to end on a tiny archive: build_index, Searcher, file uploads, CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rsir.errors import RsirError
from rsir.hashing.bitpack import hamming_one
from rsir.search import PipelineError, Searcher, build_index, load_encoder
from tests.data.archive_helpers import write_tiny_archive


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_archive(tmp_path_factory.mktemp("arch") / "tiny", n=30, size=12)


def test_fit_sample_caps_the_training_items(tiny: Path, tmp_path: Path) -> None:
    from rsir.data.archive import open_archive

    n_train = len(open_archive(tiny).split_positions("train"))
    full = build_index(tiny, tmp_path / "full", method="kslsh", bits=8, progress=False)
    assert json.loads((full / "manifest.json").read_text())["fit_items"] == n_train
    out = build_index(tiny, tmp_path / "few", method="kslsh", bits=8, progress=False, fit_sample=6)
    m = json.loads((out / "manifest.json").read_text())
    assert m["fit_items"] == 6 < n_train and m["count"] == 30
    with pytest.raises(PipelineError, match="fit-sample"):
        build_index(tiny, tmp_path / "bad", method="lsh", bits=8, progress=False, fit_sample=1)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("method,kind", [("itq", "flat"), ("kslsh", "mih"), ("klsh", "ivf"), ("float", "flat")])
def test_build_and_search(tiny: Path, tmp_path: Path, method: str, kind: str) -> None:
    out = build_index(tiny, tmp_path / "idx", method=method, bits=16, index_kind=kind, progress=False)
    m = json.loads((out / "manifest.json").read_text())
    assert m["count"] == 30 and m["method"] == method and m["modality"] == "s2" and m["index_kind"] == kind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    s = Searcher.open(out)
    assert s.archive is not None and len(s.index) == 30
    res = s.search_id("item004", k=5)
    assert len(res) == 5 and [r["rank"] for r in res] == [1, 2, 3, 4, 5]
    assert "item004" not in [r["id"] for r in res]
    qlab = set(s.archive.item("item004")["labels"])
    for r in res:
        assert r["shares_label"] == bool(qlab & set(r["labels"]))
    if m["metric"] == "hamming":
        # distances are the Hamming distances of the stored codes, ranked ascending
        q = s.index.get(["item004"])[0]
        for r in res:
            assert r["distance"] == int(hamming_one(q, s.index.get([r["id"]]))[0])
        assert [r["distance"] for r in res] == sorted(r["distance"] for r in res)
    # re-encoding the archive image gives the stored code / vector
    img = s.archive.image("item004", "s2")
    np.testing.assert_allclose(s.encode_image(img), s.index.get(["item004"]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.encode_image(s.archive.get("item004", "s2")), s.index.get(["item004"]),
                               rtol=1e-4, atol=1e-4)
    assert s.search_image(img, k=1)[0]["id"] == "item004" or s.search_image(img, k=1)[0]["distance"] == 0


def test_uploads_and_errors(tiny: Path, tmp_path: Path) -> None:
    out = build_index(tiny, tmp_path / "idx", method="lsh", bits=16, progress=False)
    s = Searcher.open(out)
    bands = s.archive.get("item007", "s2")
    np.savez(tmp_path / "q.npz", **bands)
    np.testing.assert_array_equal(s.encode_file(tmp_path / "q.npz"), s.index.get(["item007"]))
    import rasterio
    from rasterio.transform import from_origin

    stack = np.stack([np.zeros((12, 12), np.uint16)] * 3)
    with rasterio.open(tmp_path / "bad.tif", "w", driver="GTiff", height=12, width=12, count=3, dtype="uint16",
                       transform=from_origin(0, 0, 10, 10)) as dst:
        dst.write(stack)
    with pytest.raises(PipelineError, match="3 bands, but modality s2 needs 12"):
        s.encode_file(tmp_path / "bad.tif")
    with pytest.raises(PipelineError, match="unsupported"):
        s.encode_file(tmp_path / "q.txt")
    with pytest.raises(RsirError):
        s.search_id("nope", 3)
    with pytest.raises(PipelineError, match="not an rsir index directory"):
        Searcher.open(tmp_path)
    with pytest.raises(PipelineError, match="multiple of 8"):
        build_index(tiny, tmp_path / "x", method="lsh", bits=12, progress=False)
    with pytest.raises(PipelineError):
        load_encoder("nonexistent", tmp_path)


def test_cli_index_and_search(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rsir.cli import main

    assert main(["index", str(tiny), "--method", "itq", "--bits", "16", "--out", str(tmp_path / "i"),
                 "--no-progress"]) == 0
    assert main(["search", str(tmp_path / "i"), "--id", "item001", "-k", "3"]) == 0
    text = capsys.readouterr().out
    assert "query item001" in text and "precision@3" in text and len(text.strip().splitlines()) == 7  # indexed, query, header, 3 rows, precision
    assert main(["search", str(tmp_path / "i"), "--id", "missing", "-k", "3"]) != 0
