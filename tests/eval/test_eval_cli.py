"""`rsir eval`: on a real tiny index, and on a fake two-modality index for cross-modal directions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsir.cli import main
from rsir.commands import eval as eval_cmd
from rsir.data.archive import open_archive
from rsir.index import HammingIndex
from rsir.pipeline import IndexDir
from tests.data.archive_helpers import write_tiny_archive
from tests.eval.by_hand import map_a_and_p_by_hand, ranking_by_hand


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    return write_tiny_archive(root / "arch", n=30, size=12)


def test_eval_on_real_index(tiny, tmp_path, capsys):
    from rsir.pipeline import build_index

    idx = build_index(tiny, tmp_path / "idx", method="lsh", bits=16, progress=False)
    out = tmp_path / "out"
    rc = main(["eval", str(tiny), str(idx), "--protocol", "loo", "--split", "test", "--k", "3,5",
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "mAP@5(A)" in text and "mAP@5(B)" in text and "rsim_F1@3" in text
    for name in ("eval.json", "eval.md", "pr_curve.png", "pk_curve.png"):
        assert (out / name).stat().st_size > 0
    doc = json.loads((out / "eval.json").read_text())
    (res,) = doc["results"].values()
    # recompute from the stored codes: loo over the 10 test items (positions 2, 5, ..., 29)
    from rsir.index import open_index

    a = open_archive(tiny)
    pos = a.split_positions("test")
    ids = [a.ids[p] for p in pos]
    codes = open_index(idx / "index").get(np.array(ids, dtype=object))
    for k in (3, 5):
        map_a, p_k = map_a_and_p_by_hand(codes, codes, a.labels[pos], a.labels[pos], k, loo=True)
        assert res["metrics"][f"mAP@{k}(A)"] == pytest.approx(map_a, abs=1e-12)
        assert res["metrics"][f"P@{k}"] == pytest.approx(p_k, abs=1e-12)
    assert doc["meta"]["protocol"] == "loo" and res["n_queries"] == 10 and res["n_db"] == 10


def test_eval_ranks_as_the_query_engine_does(tiny, tmp_path):
    """The ranking behind the metrics (distance, then archive position) is the one every front end shows."""
    from rsir.eval.protocols import distances
    from rsir.pipeline import build_index
    from rsir.query import SearchEngine

    engine = SearchEngine.open(build_index(tiny, tmp_path / "idx", method="lsh", bits=8, progress=False))
    ids = list(engine.archive.ids)
    codes = engine.vectors(ids)
    d = distances(codes, codes, "hamming")
    for q in (0, 7, 21):
        eval_order = [ids[j] for j in np.argsort(d[q], kind="stable") if j != q]
        assert engine.search_id(ids[q], k=len(ids) - 1).ids == eval_order
        assert eval_order == [ids[j] for j in ranking_by_hand(codes[q], codes, skip=q)]


def _fake(archive_path, seed=0):
    """Two-modality index of 16-bit codes keyed "<modality>/<id>"; the s1 code of an item equals its s2 code."""
    a = open_archive(archive_path)
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (len(a), 2), dtype=np.uint8)
    index = HammingIndex(16)
    index.add(np.array([f"s2/{i}" for i in a.ids] + [f"s1/{i}" for i in a.ids], dtype=object),
              np.concatenate([codes, codes]))
    fake = IndexDir(tmp_path_of(archive_path), {"modalities": ["s2", "s1"], "method": "fake"}, index,
                    encoder=None)  # type: ignore[arg-type]
    return fake, codes, a


def tmp_path_of(archive_path):
    return archive_path.parent / "fake-index"


def test_cross_modal_direction_with_fake_index(tiny, tmp_path, monkeypatch, capsys):
    searcher, codes, a = _fake(tiny)
    monkeypatch.setattr(eval_cmd, "_open", lambda path: searcher)
    rc = main(["eval", str(tiny), "fake-index", "--protocol", "rsim", "--direction", "s1->s2", "--k", "4",
               "--max-queries", "5", "--out", str(tmp_path / "o")])
    assert rc == 0
    assert "s1->s2" in capsys.readouterr().out
    doc = json.loads((tmp_path / "o" / "eval.json").read_text())
    (res,) = doc["results"].values()
    q = a.split_positions("validation")  # 10 validation items; --max-queries 5 keeps an even spread
    q = q[np.unique(np.linspace(0, len(q) - 1, 5).round().astype(int))]
    db = a.split_positions("test")
    # the s1 code of an item equals its s2 code, so s1->s2 equals s2->s2 computed by hand
    map_a, p_k = map_a_and_p_by_hand(codes[q], codes[db], a.labels[q], a.labels[db], 4)
    assert res["metrics"]["mAP@4(A)"] == pytest.approx(map_a, abs=1e-12)
    assert res["metrics"]["P@4"] == pytest.approx(p_k, abs=1e-12)
    assert doc["meta"]["direction"] == "s1->s2" and res["n_queries"] == 5


def test_user_errors_are_one_line(tiny, monkeypatch, capsys):
    searcher, _, _ = _fake(tiny)
    monkeypatch.setattr(eval_cmd, "_open", lambda path: searcher)
    assert main(["eval", str(tiny), "x", "--direction", "s3->s2"]) == 2
    assert "holds codes of s2, s1, not s3" in capsys.readouterr().err
    assert main(["eval", str(tiny), "x", "--k", "ten"]) == 2
    assert "--k 'ten'" in capsys.readouterr().err
    assert main(["eval", str(tiny), "x", "--protocol", "loo", "--split", "nosuch", "--direction", "s2->s2"]) == 2
    assert "at least 2 items" in capsys.readouterr().err
