"""A first ingest as a new user does it: options listed and checked, the S1 folder beside the S2 one found, split
lists found or their absence warned about, clear one-line errors for deep folders, bad values and bad --out."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from rsir.cli import build_parser, main
from rsir.data.archive import ArchiveWriter, open_archive
from rsir.data.bands import s2_spec
from rsir.data.formats import FORMATS, format_options, ingest, open_source
from rsir.data.nomenclature import BEN19
from rsir.errors import ArchiveError, FormatError
from tests.data.fixtures_tiff import V1_S1, V1_S2, write_bigearthnet_v1, write_geotiff_folder, write_tif


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ": error: " in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- options: declared, listed, validated ----------------------------------------------------------------------
def test_every_declared_option_is_listed_in_ingest_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["ingest"]
    text = sub.format_help().split("format options (--option KEY=VALUE):\n", 1)[1]
    listed: dict[str, list[str]] = {}
    for line in text.splitlines():
        if re.fullmatch(r"  (\S+):", line):
            fmt = line.strip()[:-1]
            listed[fmt] = []
        elif re.match(r"    [a-z0-9-]+=", line):
            listed[fmt].append(line.split("=", 1)[0].strip())
    assert listed == {fmt: [o.name for o in format_options(fmt)] for fmt in FORMATS}
    assert "splits" in listed["bigearthnet-v1"] and "patch-size" in listed["majortom"]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_unknown_option_lists_the_valid_ones(tmp_path, fmt):
    names = [o.name for o in format_options(fmt)]
    with pytest.raises(FormatError, match=f"--option bogus-key: format {fmt} has no such option; its options: "
                                          f"{', '.join(names)}"):
        open_source(tmp_path, fmt, {"bogus-key": "1"})


def test_misspelt_option_is_an_error_with_a_suggestion(tmp_path, capsys):
    src = write_bigearthnet_v1(tmp_path / "src")
    rc, _, err = _cli(capsys, "ingest", str(src), "--format", "bigearthnet-v1", "--out", str(tmp_path / "a"),
                      "--option", f"split={tmp_path}")
    line = _one_error_line(err)
    assert rc == 2 and "--option split: format bigearthnet-v1 has no such option (did you mean splits?)" in line
    assert "splits, s1, s1-dir, size" in line and not (tmp_path / "a").exists()


@pytest.mark.parametrize("fmt, opt", [("bigearthnet-v1", "size"), ("reben", "size"), ("geotiff", "size"),
                                      ("majortom", "patch-size"), ("levir-cd", "size"), ("captions", "size")])
def test_non_integer_size_is_a_one_line_error(tmp_path, capsys, fmt, opt):
    rc, _, err = _cli(capsys, "ingest", str(tmp_path), "--format", fmt, "--out", str(tmp_path / "a"),
                      "--option", f"{opt}=abc")
    assert rc == 2 and f"--option {opt}='abc' (format {fmt}): expected an integer" in _one_error_line(err)


def test_option_given_twice_or_without_value(tmp_path, capsys):
    rc, _, err = _cli(capsys, "ingest", str(tmp_path), "--format", "bigearthnet-v1", "--out", str(tmp_path / "a"),
                      "--option", "s1=false", "--option", "s1=true")
    assert rc == 2 and "--option s1 given twice ('false' and 'true')" in _one_error_line(err)
    rc, _, err = _cli(capsys, "ingest", str(tmp_path), "--format", "bigearthnet-v1", "--out", str(tmp_path / "a"),
                      "--option", "splits")
    assert rc == 2 and "--option 'splits': expected KEY=VALUE" in _one_error_line(err)


def test_option_values_are_typed_and_checked(tmp_path):
    with pytest.raises(FormatError, match="s1='maybe' .*expected true or false"):
        open_source(tmp_path, "bigearthnet-v1", {"s1": "maybe"})
    with pytest.raises(FormatError, match="splits=.*no such folder"):
        open_source(tmp_path, "bigearthnet-v1", {"splits": str(tmp_path / "nope")})
    with pytest.raises(FormatError, match="size='0' .*must be at least 6"):
        open_source(tmp_path, "bigearthnet-v1", {"size": "0"})
    with pytest.raises(FormatError, match="s1-scale='loud' .*expected one of auto, db, linear"):
        open_source(tmp_path, "ssl4eo", {"s1-scale": "loud"})


# --- --out --------------------------------------------------------------------------------------------------------
def test_out_under_a_file_is_a_one_line_error(tmp_path, capsys):
    src = write_geotiff_folder(tmp_path / "src")
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    rc, _, err = _cli(capsys, "ingest", str(src / "img"), "--format", "geotiff", "--out", str(blocker / "sub" / "a"))
    assert rc == 2 and f"{blocker} is a file, not a folder" in _one_error_line(err)
    assert blocker.read_text() == "keep me"


def test_overwrite_replaces_only_archives(tmp_path, capsys):
    src = write_geotiff_folder(tmp_path / "src")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    rc, _, err = _cli(capsys, "ingest", str(src / "img"), "--format", "geotiff", "--out", str(mine), "--overwrite")
    assert rc == 2 and "exists and is not an rsir archive; refusing to replace it" in _one_error_line(err)
    assert (mine / "thesis.tex").read_text() == "precious"
    f = tmp_path / "notes.txt"
    f.write_text("x")
    with pytest.raises(ArchiveError, match="is not an rsir archive"):
        ArchiveWriter(f, [s2_spec(12)], BEN19, "t", overwrite=True)
    # an archive and an empty folder are replaced
    ingest(src / "img", "geotiff", tmp_path / "arch", progress=False)
    (tmp_path / "empty").mkdir()
    for out in ("arch", "empty"):
        assert main(["ingest", str(src / "img"), "--format", "geotiff", "--out", str(tmp_path / out), "--quiet",
                     "--overwrite", "--limit", "1"]) == 0
        assert len(open_archive(tmp_path / out)) == 1


# --- BigEarthNet v1 as the tarballs unpack ------------------------------------------------------------------------
def _splits(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_text(f"{V1_S2[0]}\n")
    (folder / "test.csv").write_text(f"{V1_S2[1]}\n")
    return folder


def test_s2_folder_finds_the_s1_folder_beside_it(tmp_path, capsys):
    src = write_bigearthnet_v1(tmp_path / "dl")  # dl/BigEarthNet-v1.0/ and dl/BigEarthNet-S1-v1.0/
    _splits(tmp_path / "dl" / "splits")
    rc, out, err = _cli(capsys, "ingest", str(src / "BigEarthNet-v1.0"), "--format", "bigearthnet-v1", "--out",
                        str(tmp_path / "a"), "--quiet")
    assert rc == 0
    assert f"note: Sentinel-1 patches read from {src / 'BigEarthNet-S1-v1.0'}" in err
    assert f"note: split lists read from {src / 'splits'}" in err and "warning" not in err
    a = open_archive(tmp_path / "a")
    assert a.ids == [V1_S2[0], V1_S2[1], V1_S1[1]] and set(a.modalities) == {"s2", "s1"}
    cat = a.catalog.set_index("id")
    assert cat.loc[V1_S2[0], "s1_id"] == V1_S1[0] and cat["split"].tolist() == ["train", "test", ""]


def test_missing_s1_and_splits_are_warned_about(tmp_path, capsys):
    src = write_bigearthnet_v1(tmp_path / "dl")
    shutil.rmtree(src / "BigEarthNet-S1-v1.0")
    rc, _, err = _cli(capsys, "ingest", str(src / "BigEarthNet-v1.0"), "--format", "bigearthnet-v1", "--out",
                      str(tmp_path / "a"), "--quiet")
    assert rc == 0
    assert "warning: no BigEarthNet-S1 patch folders under" in err and "--option s1-dir=DIR" in err
    assert "warning: no split lists (train.csv, val.csv, test.csv)" in err and "--option splits=DIR" in err
    a = open_archive(tmp_path / "a")
    assert list(a.modalities) == ["s2"] and len(a.manifest["info"]["warnings"]) == 2
    # saying what is meant silences the S1 warning; split lists that name no patch are warned about
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.csv").write_text("S2A_MSIL2A_20990101T000000_1_1\n")
    rc, _, err = _cli(capsys, "ingest", str(src / "BigEarthNet-v1.0"), "--format", "bigearthnet-v1", "--out",
                      str(tmp_path / "b"), "--quiet", "--option", "s1=false", "--option", f"splits={other}")
    assert rc == 0 and "Sentinel-1" not in err
    assert "warning: the split lists in" in err and "name none of the 2 Sentinel-2 patches" in err


def test_s1_dir_option(tmp_path):
    src = write_bigearthnet_v1(tmp_path / "dl")
    s1 = tmp_path / "elsewhere" / "S1"
    shutil.move(src / "BigEarthNet-S1-v1.0", s1)
    rep = ingest(src / "BigEarthNet-v1.0", "bigearthnet-v1", tmp_path / "a", {"s1-dir": str(s1)}, progress=False)
    assert open_archive(rep.path).item(V1_S2[0])["s1_id"] == V1_S1[0]
    with pytest.raises(FormatError, match="s1-dir=.*no BigEarthNet-S1 patch folders"):
        ingest(src / "BigEarthNet-v1.0", "bigearthnet-v1", tmp_path / "b", {"s1-dir": str(tmp_path / "dl")},
               progress=False)


def test_deep_patch_folders_say_where_they_are(tmp_path, capsys):
    src = write_bigearthnet_v1(tmp_path / "dl")
    deep = tmp_path / "top" / "x" / "y"
    deep.mkdir(parents=True)
    shutil.move(src / "BigEarthNet-v1.0", deep / "BigEarthNet-v1.0")
    rc, _, err = _cli(capsys, "ingest", str(tmp_path / "top"), "--format", "bigearthnet-v1", "--out",
                      str(tmp_path / "a"))
    line = _one_error_line(err)
    assert rc == 2 and "no BigEarthNet v1 patch folders (<patch>/<patch>_labels_metadata.json) within 2 levels" in line
    assert f"patch folders are nested deeper than 2 levels: {deep / 'BigEarthNet-v1.0' / V1_S2[0]} is 4 levels " \
           f"down; point the source at {deep / 'BigEarthNet-v1.0'}" in line
    # a metadata file that does not match its folder's name is named
    bad = tmp_path / "bad" / "patchA"
    bad.mkdir(parents=True)
    (bad / "patchB_labels_metadata.json").write_text(json.dumps({"labels": []}))
    with pytest.raises(FormatError, match="patchB_labels_metadata.json does not match its folder name 'patchA'"):
        open_source(tmp_path / "bad", "bigearthnet-v1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no <patch>_labels_metadata.json file at all below it"):
        open_source(tmp_path / "empty", "bigearthnet-v1")


# --- longitude / latitude 0 ---------------------------------------------------------------------------------------
def test_lon_lat_zero_are_stored_not_missing(tmp_path):
    # a 10 x 10 px image of 0.01 degree pixels centred on (0, 0) in EPSG:4326
    write_tif(tmp_path / "img" / "null_island.tif", np.ones((2, 10, 10), np.uint16), crs="EPSG:4326", x0=-0.05,
              y0=0.05, gsd=0.01)
    a = open_archive(ingest(tmp_path / "img", "geotiff", tmp_path / "a", progress=False).path)
    row = a.item("null_island")
    assert abs(row["lon"]) < 1e-9 and abs(row["lat"]) < 1e-9
    assert row["bbox"] == pytest.approx([-0.05, -0.05, 0.05, 0.05])
    with ArchiveWriter(tmp_path / "b", [s2_spec(6)], BEN19, "t") as w:
        w.add("z", {"lon": 0.0, "lat": 0.0}, {"s2": {b: np.zeros(sh, np.uint16) for b, sh in s2_spec(6).shapes.items()}})
    row = open_archive(tmp_path / "b").item("z")
    assert (row["lon"], row["lat"]) == (0.0, 0.0)
