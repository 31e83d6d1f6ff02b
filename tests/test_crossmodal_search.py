"""Cross-modal search (SS-CM index of S1 and S2 codes): rankings against brute force, S1 GeoTIFF queries, the
four evaluation directions, and the one-line errors of issue 13 item 6."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsir.bits import hamming_matrix
from rsir.cli import main
from rsir.data.archive import open_archive
from rsir.methods.sscm import SSCMOptions, train_sscm
from rsir.pipeline import build_index
from rsir.query import SearchEngine
from rsir.train.loop import TrainConfig
from tests.data.archive_helpers import write_tiny_archive
from tests.data.fixtures_tiff import write_tif


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("x")
    apath = write_tiny_archive(root / "a", n=24, size=12)
    model, _ = train_sscm(open_archive(apath), root / "m", TrainConfig(epochs=1, batch_size=6, progress=False,
                                                                      num_workers=0, selection_fraction=0),
                          SSCMOptions(bits=16, width=8, blocks=(1, 1), hidden=16))
    idx = root / "i"
    assert main(["index", str(apath), "--model", str(model), "--out", str(idx), "--no-progress"]) == 0
    # a classic --method beside --model was silently dropped: now refused, nothing written
    assert main(["index", str(apath), "--model", str(model), "--method", "float", "--out", str(root / "both"),
                 "--no-progress"]) == 2
    assert not (root / "both").exists()
    # --modality was ignored with a cross-modal model (both were indexed anyway): now refused, nothing written
    for m in ("s1", "s2"):
        assert main(["index", str(apath), "--model", str(model), "--modality", m, "--out", str(root / "one"),
                     "--no-progress"]) == 2
        assert not (root / "one").exists()
    single = build_index(apath, root / "lsh", method="lsh", bits=16, progress=False)
    return root, apath, idx, single


def _brute(engine, q_code, target, exclude=None):
    ids = engine.archive.ids
    db = engine.vectors(ids, target)
    d = hamming_matrix(q_code[None], db)[0].astype(np.int64)
    order = [p for p in np.lexsort((np.arange(len(ids)), d)) if p != exclude]
    return [ids[p] for p in order], d


@pytest.mark.parametrize("src,dst", [("s1", "s2"), ("s2", "s1"), ("s1", "s1"), ("s2", "s2")])
def test_search_by_id_matches_brute_force(setup, src, dst):
    _, apath, idx, _ = setup
    engine = SearchEngine.open(idx)
    qid = engine.archive.ids[5]
    res = engine.search_id(qid, k=8, from_=src, target=dst)
    want, d = _brute(engine, engine.vectors([qid], src)[0], dst, exclude=5 if src == dst else None)
    assert res.ids == want[:8] and res.direction == f"{src}->{dst}"
    assert [h.distance for h in res.hits] == [int(d[engine.archive.ids.index(i)]) for i in want[:8]]
    assert res.to_json()["direction"] == f"{src}->{dst}"


def test_s1_geotiff_query_finds_s2_and_names_the_direction(setup, tmp_path, capsys):
    _, apath, idx, _ = setup
    a = open_archive(apath)
    bands = a.get(3, "s1")
    tif = write_tif(tmp_path / "s1_patch.tif", np.stack([bands["VV"], bands["VH"]]).astype(np.float32))
    assert main(["search", str(idx), "--file", str(tif), "--target", "s2", "-k", "5", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["direction"] == "s1->s2" and doc["query"]["modality"] == "s1"
    # the file is item 3's S1 patch: same code as the stored one, so the same ranking as the id query
    engine = SearchEngine.open(idx)
    by_id = engine.search_id(a.ids[3], k=5, from_="s1", target="s2")
    assert [r["id"] for r in doc["results"]] == by_id.ids
    assert main(["search", str(idx), "--id", a.ids[3], "--from", "s1", "--target", "s2", "-k", "3"]) == 0
    assert "(s1->s2)" in capsys.readouterr().out


def test_bad_inputs_are_one_line_errors(setup, tmp_path, capsys):
    _, apath, idx, single = setup
    a = open_archive(apath)
    qid = a.ids[0]
    assert main(["search", str(single), "--id", qid, "--from", "s1", "--target", "s2"]) == 2
    err = capsys.readouterr().err
    assert "--from s1: this index holds s2 codes only" in err and len(err.strip().splitlines()) == 1
    three = write_tif(tmp_path / "three.tif", np.full((3, 12, 12), -10.0, np.float32))
    assert main(["search", str(idx), "--file", str(three), "--from", "s1", "--target", "s2"]) == 2
    err = capsys.readouterr().err
    assert "3 bands" in err and "VV, VH" in err and len(err.strip().splitlines()) == 1
    bands = a.get(1, "s1")
    linear = np.stack([10 ** (bands["VV"] / 10), 10 ** (bands["VH"] / 10)]).astype(np.float32)
    lin = write_tif(tmp_path / "linear.tif", linear)
    assert main(["search", str(idx), "--file", str(lin), "--target", "s2"]) == 2
    err = capsys.readouterr().err
    assert "linear power" in err and "10 * log10" in err and len(err.strip().splitlines()) == 1


def test_eval_defaults_to_the_four_directions(setup, tmp_path, capsys):
    _, apath, idx, _ = setup
    out = tmp_path / "e"
    assert main(["eval", str(apath), str(idx), "--protocol", "rsim", "--k", "5", "--out", str(out)]) == 0
    doc = json.loads((out / "eval.json").read_text())
    assert doc["meta"]["directions"] == ["s1->s1", "s1->s2", "s2->s1", "s2->s2"]
    assert len(doc["results"]) == 4
    # each direction's mAP equals one computed from the stored codes with the same ranking rule
    from tests.eval.by_hand import map_a_and_p_by_hand

    engine = SearchEngine.open(idx)
    a = engine.archive
    q, db = a.split_positions("validation"), a.split_positions("test")
    for name, r in doc["results"].items():
        src, dst = name.split()[-1].split("->")
        qv = engine.vectors([a.ids[p] for p in q], src)
        dv = engine.vectors([a.ids[p] for p in db], dst)
        want, _ = map_a_and_p_by_hand(qv, dv, a.labels[q], a.labels[db], 5)
        assert r["metrics"]["mAP@5(A)"] == pytest.approx(want, abs=1e-12), name
    capsys.readouterr()
    assert main(["eval", str(apath), str(idx), "--protocol", "rsim", "--directions", "s1-s2,s2-s1", "--k", "5"]) == 0
    assert "s1->s2, s2->s1" in capsys.readouterr().out
