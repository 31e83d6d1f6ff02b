"""--split-list: patch-name lists in the BigEarthNet-MM format (S2 name, S1 name per line) replace the splits."""

from __future__ import annotations

import json

import pytest

from rsir.cli import main
from rsir.data.archive import open_archive
from rsir.data.splitlists import apply_split_lists, parse_spec
from rsir.errors import RsirError
from tests.data.archive_helpers import write_tiny_archive


def _write(path, rows):
    path.write_text("".join(",".join(r) + "\n" for r in rows))
    return path


@pytest.fixture
def lists(tmp_path):
    apath = write_tiny_archive(tmp_path / "a", n=12, size=12)
    # "Serbia summer" style rows: S2 patch name, S1 patch name; one name of another archive
    val = _write(tmp_path / "val.csv", [("item000", "S1A_IW_GRDH_1SDV_20170613T165043_x"), ("item001", "S1B_y"),
                                         ("item002", "S1B_z"), ("S2B_notinthisarchive", "S1B_q")])
    test = _write(tmp_path / "test.csv", [("item003", "S1_a"), ("item004", "S1_b"), ("item005", "S1_c"),
                                          ("item006", "S1_d")])
    return apath, val, test


def test_lists_replace_the_splits(lists):
    apath, val, test = lists
    a = open_archive(apath)
    rep = apply_split_lists(a, [str(val), f"test={test}"])
    assert rep["counts"] == {"train": 0, "validation": 3, "test": 4} and rep["unmatched"] == 1
    assert a.split_positions("validation").tolist() == [0, 1, 2]
    assert a.split_positions("test").tolist() == [3, 4, 5, 6]


def test_a_row_matches_by_its_s1_name(lists, tmp_path):
    apath, _, _ = lists
    a = open_archive(apath)
    a.catalog["s1_id"] = [f"S1_{i}" for i in range(len(a))]
    lst = _write(tmp_path / "train.csv", [("unknown_s2", "S1_7"), ("S1_9",)])
    apply_split_lists(a, [str(lst)])
    assert a.split_positions("train").tolist() == [7, 9]


def test_bad_lists_are_one_line_errors(lists, tmp_path):
    apath, val, _ = lists
    a = open_archive(apath)
    with pytest.raises(RsirError, match="say which split"):
        parse_spec(str(tmp_path / "subset.csv"))
    with pytest.raises(RsirError, match="none of its 1 patch names"):
        apply_split_lists(a, [str(_write(tmp_path / "test.csv", [("nope",)]))])
    with pytest.raises(RsirError, match="cannot read"):
        apply_split_lists(a, [f"train={tmp_path / 'missing.csv'}"])
    with pytest.raises(RsirError, match="listed in validation and in test"):
        apply_split_lists(a, [str(val), f"test={val}"])


def test_eval_takes_split_lists(lists, tmp_path, capsys):
    apath, val, test = lists
    idx = tmp_path / "i"
    assert main(["index", str(apath), "--method", "lsh", "--bits", "16", "--out", str(idx), "--no-progress"]) == 0
    out = tmp_path / "e"
    assert main(["eval", str(apath), str(idx), "--protocol", "rsim", "--k", "3", "--split-list",
                 f"validation={val}", "--split-list", f"test={test}", "--out", str(out)]) == 0
    assert "split lists: train 0, validation 3, test 4 (1 listed names not in the archive)" in capsys.readouterr().out
    doc = json.loads((out / "eval.json").read_text())
    (res,) = doc["results"].values()
    assert res["n_queries"] == 3 and res["n_db"] == 4
