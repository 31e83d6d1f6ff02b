"""The search path end to end on a tiny archive: build_index, the query engine, file queries, CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rsir.bits import unpack_bits
from rsir.data.uploads import UploadError
from rsir.encoding import EncoderError, load_encoder
from rsir.errors import NotFoundError
from rsir.index import IndexError_
from rsir.pipeline import PipelineError, build_index
from rsir.query import Filters, QueryError, SearchEngine
from tests.data.archive_helpers import write_tiny_archive


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_archive(tmp_path_factory.mktemp("arch") / "tiny", n=30, size=12)


def _brute_hamming(codes: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Differing bits counted on unpacked 0/1 arrays (independent of rsir.bits' popcount)."""
    return (unpack_bits(codes) != unpack_bits(q[None])).sum(1)


def test_fit_sample_caps_the_training_items(tiny: Path, tmp_path: Path) -> None:
    from rsir.data.archive import open_archive

    n_train = len(open_archive(tiny).split_positions("train"))
    full = build_index(tiny, tmp_path / "full", method="kslsh", bits=8, progress=False)
    assert json.loads((full / "manifest.json").read_text())["fit_items"] == n_train
    out = build_index(tiny, tmp_path / "few", method="kslsh", bits=8, progress=False, fit_sample=6)
    m = json.loads((out / "manifest.json").read_text())
    assert m["fit_items"] == 6 < n_train and m["count"] == 30
    with pytest.raises(EncoderError, match="fit sample must be at least 2"):
        build_index(tiny, tmp_path / "bad", method="lsh", bits=8, progress=False, fit_sample=1)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("method,kind", [("itq", "flat"), ("kslsh", "mih"), ("klsh", "ivf"), ("float", "flat")])
def test_build_and_search(tiny: Path, tmp_path: Path, method: str, kind: str) -> None:
    out = build_index(tiny, tmp_path / "idx", method=method, bits=16, kind=kind, progress=False)
    m = json.loads((out / "manifest.json").read_text())
    assert m["count"] == 30 and m["method"] == method and m["modality"] == "s2" and m["kind"] == kind
    assert "bits" not in m and m["dim"] == (16 if method != "float" else m["dim"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    s = SearchEngine.open(out)
    assert len(s.index) == 30
    res = s.search_id("item004", k=5)
    assert [h.rank for h in res.hits] == [1, 2, 3, 4, 5]
    assert "item004" not in res.ids
    qlab = set(s.archive.item("item004")["labels"])
    for h in res.hits:
        assert h.shares_label == bool(qlab & set(h.labels))
        assert sorted(h.labels) == sorted(s.archive.item(h.id)["labels"])
    codes = s.vectors(list(s.archive.ids))
    q = s.vectors(["item004"])[0]
    if m["metric"] == "hamming":
        d = _brute_hamming(codes, q)
    else:
        d = ((codes.astype(np.float64) - q) ** 2).sum(1)
    # the ranking is the brute-force one: distance, then archive position, the query left out
    order = [int(i) for i in np.lexsort((np.arange(30), d)) if i != s.archive.position("item004")][:5]
    if kind != "ivf":  # ivf is approximate
        assert res.ids == [s.archive.ids[i] for i in order]
    for h in res.hits:
        want = d[s.archive.position(h.id)]
        assert h.distance == (int(want) if m["metric"] == "hamming" else pytest.approx(want, rel=1e-4, abs=1e-4))
    # re-encoding the archive image gives the stored code / vector
    img = s.archive.image("item004", "s2", normalized=False)
    np.testing.assert_allclose(s.encode_raw(img), q, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s.encode_bands(s.archive.get("item004", "s2")), q, rtol=1e-4, atol=1e-4)
    top = s.search_bands(s.archive.get("item004", "s2"), k=1).hits[0]
    assert top.distance == 0 or (method == "float" and top.id == "item004")


def test_filters_and_paging_follow_the_unfiltered_ranking(tiny: Path, tmp_path: Path) -> None:
    s = SearchEngine.open(build_index(tiny, tmp_path / "idx", method="lsh", bits=16, progress=False))
    full = s.search_id("item002", k=29)
    assert len(full.hits) == 29
    page2 = s.search_id("item002", k=5, offset=5)
    assert page2.ids == full.ids[5:10] and [h.rank for h in page2.hits] == [6, 7, 8, 9, 10]
    flt = s.search_id("item002", k=29, filters=Filters(split="test"))
    assert flt.ids == [i for i in full.ids if s.archive.item(i)["split"] == "test"]
    assert flt.matching == len(s.archive.split_positions("test"))
    label = s.archive.nomenclature.classes[int(np.argmax(s.archive.labels.sum(0)))]
    by_label = s.search_id("item002", k=29, filters=Filters(labels=[label, label]))
    assert by_label.ids == [i for i in full.ids if label in s.archive.item(i)["labels"]]
    with pytest.raises(QueryError, match="unknown label 'Moon'"):
        s.search_id("item002", filters=Filters(labels=["Moon"]))
    with pytest.raises(QueryError, match="k must be between"):
        s.search_id("item002", k=0)
    df = s.search("item002", k=4).to_dataframe()
    assert list(df["id"]) == full.ids[:4] and list(df["rank"]) == [1, 2, 3, 4]
    assert list(df.columns[:5]) == ["rank", "id", "distance", "labels", "shares_label"]


def test_file_queries_and_errors(tiny: Path, tmp_path: Path) -> None:
    out = build_index(tiny, tmp_path / "idx", method="lsh", bits=16, progress=False)
    s = SearchEngine.open(out)
    bands = s.archive.get("item007", "s2")
    np.savez(tmp_path / "q.npz", **bands)
    res = s.search_file(tmp_path / "q.npz", k=3)
    assert res.mode == "file" and res.hits[0].distance == 0
    np.testing.assert_array_equal(s.encode_raw(s.parse("q.npz", (tmp_path / "q.npz").read_bytes()).image),
                                  s.vectors(["item007"])[0])
    import rasterio
    from rasterio.transform import from_origin

    stack = np.stack([np.zeros((12, 12), np.uint16)] * 3)
    with rasterio.open(tmp_path / "bad.tif", "w", driver="GTiff", height=12, width=12, count=3, dtype="uint16",
                       transform=from_origin(0, 0, 10, 10)) as dst:
        dst.write(stack)
    with pytest.raises(UploadError, match="bad.tif: file has 3 bands, the index's encoder expects 12 bands"):
        s.search_file(tmp_path / "bad.tif")
    (tmp_path / "q.txt").write_text("hello")
    with pytest.raises(UploadError, match="unsupported file type"):
        s.search_file(tmp_path / "q.txt")
    with pytest.raises(UploadError, match="cannot read"):
        s.search_file(tmp_path / "missing.tif")
    with pytest.raises(NotFoundError, match="'nope' is not in the archive"):
        s.search_id("nope", 3)
    with pytest.raises(PipelineError, match="not an rsir-index-dir directory"):
        SearchEngine.open(tmp_path)
    with pytest.raises(IndexError_, match="divisible by 8"):
        build_index(tiny, tmp_path / "x", method="lsh", bits=12, progress=False)
    with pytest.raises(EncoderError, match="unknown encoder type 'nonexistent'"):
        load_encoder("nonexistent", tmp_path)


def test_cli_index_and_search(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rsir.cli import main

    assert main(["index", str(tiny), "--method", "itq", "--bits", "16", "--out", str(tmp_path / "i"),
                 "--no-progress"]) == 0
    assert "indexed 30 items (s2, itq, 16 bits, auto -> scan (n < 20000: the scan))" in capsys.readouterr().out
    assert main(["search", str(tmp_path / "i"), "--id", "item001", "-k", "3"]) == 0
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert lines[0].startswith("query item001") and lines[-1].startswith("precision@3")
    assert len(lines) == 6  # query, header, 3 rows, precision
    assert main(["search", str(tmp_path / "i"), "--id", "missing", "-k", "3"]) == 2
    assert "'missing' is not in the archive" in capsys.readouterr().err


def test_bits_must_match_a_given_model(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--bits used to be ignored silently with --model; now it must repeat the model's code length."""
    import torch

    from rsir.cli import main
    from rsir.data.archive import open_archive
    from rsir.models.encoder import ModelEncoder
    from rsir.models.io import ModelMeta, save_model
    from rsir.models.net import NetConfig, RetrievalNet
    from rsir.models.resnet import ResNetConfig

    a = open_archive(tiny)
    spec = a.spec("s2")
    mean, std = a.band_stats("s2")
    torch.manual_seed(0)
    net = RetrievalNet(NetConfig(ResNetConfig(len(spec.bands), 8, [1, 1]), n_classes=19, bits=16, output="hash"))
    model = save_model(tmp_path / "m", net.eval(), ModelMeta("s2", list(spec.bands), mean, std, 12,
                                                             list(a.nomenclature.classes)))
    with pytest.raises(PipelineError, match="--bits 32 does not match the model, which makes 16-bit codes"):
        build_index(a, tmp_path / "x", bits=32, encoder=ModelEncoder(net.eval(), ModelMeta("s2", list(spec.bands),
                                                                                          mean, std, 12)))
    assert not (tmp_path / "x").exists()
    assert main(["index", str(tiny), "--model", str(model), "--bits", "32", "--out", str(tmp_path / "y")]) == 2
    assert "does not match the model" in capsys.readouterr().err and not (tmp_path / "y").exists()
    assert main(["index", str(tiny), "--model", str(model), "--out", str(tmp_path / "z"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "z" / "manifest.json").read_text())["dim"] == 16
