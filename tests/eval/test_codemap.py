"""Code map (openTSNE) and relevant / irrelevant distance histograms, and what rsir eval writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsir.cli import main
from rsir.query.codemap import fit_codemap, pair_distances, rarest_label
from tests.data.archive_helpers import write_tiny_archive


def test_rarest_label_by_hand() -> None:
    lab = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]], np.uint8)
    # class frequencies 3, 2, 1: item 0 -> class 1, item 1 -> class 0, item 2 unlabelled, item 3 -> class 2
    assert rarest_label(lab).tolist() == [1, 0, -1, 2]
    assert rarest_label(np.zeros((3, 0), np.uint8)).tolist() == [-1, -1, -1]  # an unlabelled archive


def test_pair_distances_equal_brute_force() -> None:
    rng = np.random.default_rng(1)
    q = rng.integers(0, 256, (6, 4), dtype=np.uint8)
    db = rng.integers(0, 256, (9, 4), dtype=np.uint8)
    ql = rng.integers(0, 2, (6, 5)).astype(np.uint8)
    dl = rng.integers(0, 2, (9, 5)).astype(np.uint8)
    rel, irr = pair_distances(q, db, ql, dl, "hamming", max_pairs=10_000)
    want_rel, want_irr = [], []
    for i in range(6):
        for j in range(9):
            d = int((np.unpackbits(q[i]) != np.unpackbits(db[j])).sum())
            (want_rel if (ql[i] & dl[j]).any() else want_irr).append(d)
    assert sorted(rel.tolist()) == sorted(want_rel) and sorted(irr.tolist()) == sorted(want_irr)
    # leave-one-out: query i's own row is not a pair
    rel2, irr2 = pair_distances(db, db, dl, dl, "hamming", max_pairs=10_000, exclude_self=np.arange(9))
    assert len(rel2) + len(irr2) == 9 * 8


def test_map_separates_clusters_and_places_queries() -> None:
    rng = np.random.default_rng(0)
    base = [np.zeros(64, np.uint8), np.ones(64, np.uint8)]
    bits = np.stack([np.where(rng.random(64) < 0.08, 1 - base[i % 2], base[i % 2]) for i in range(80)])
    codes = np.packbits(bits, axis=1)
    labels = np.eye(2, dtype=np.uint8)[np.arange(80) % 2]
    cm = fit_codemap(codes, "hamming", labels, max_points=80)
    assert cm.xy.shape == (80, 2) and sorted(set(cm.colour.tolist())) == [0, 1]
    c0, c1 = cm.xy[cm.colour == 0].mean(0), cm.xy[cm.colour == 1].mean(0)
    spread = max(np.linalg.norm(cm.xy[cm.colour == k] - c, axis=1).mean() for k, c in ((0, c0), (1, c1)))
    assert np.linalg.norm(c0 - c1) > 2 * spread
    # a new code of cluster 1 is placed beside cluster 1
    new = np.packbits(np.where(rng.random(64) < 0.05, 0, 1).astype(np.uint8))[None]
    xy = cm.place(new)[0]
    assert np.linalg.norm(xy - c1) < np.linalg.norm(xy - c0)


@pytest.mark.filterwarnings("ignore")
def test_eval_writes_code_pictures(tmp_path, capsys) -> None:
    from rsir.pipeline import build_index

    arch = write_tiny_archive(tmp_path / "arch", n=45, size=12)
    idx = build_index(arch, tmp_path / "idx", method="lsh", bits=16, progress=False)
    out = tmp_path / "out"
    assert main(["eval", str(arch), str(idx), "--split", "all", "--k", "5", "--out", str(out),
                 "--codemap-points", "30"]) == 0
    assert "code map: openTSNE of 30 database codes" in capsys.readouterr().out
    for name in ("codemap.png", "distance_hist.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((out / "codemap.json").read_text())
    assert doc["n"] == 30 and doc["metric"] == "hamming" and len(doc["points"]) == 30
    assert all(p["id"].startswith("item") for p in doc["points"])
