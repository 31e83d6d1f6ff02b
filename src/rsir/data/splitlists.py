"""Patch-name split lists (``--split-list``): the published protocols name their train / validation / test
patches in CSV files, e.g. the BigEarthNet-MM "Serbia summer" subset (7,760 / 3,507 / 3,562 patches) that the
RSiM cross-modal code distributes, or BigEarthNet's train.csv / val.csv / test.csv.

A list file holds one patch per line; the first column is the Sentinel-2 patch name, further columns (e.g. the
Sentinel-1 name of the pair) are accepted, and a row matches an archive item when any of its columns is the item's
id or the name of its Sentinel-1 partner (``s1_id``, ``partner_id``). A header row (``patch_name,...``) is
skipped. Applying lists replaces the archive's splits in memory (nothing is written): listed items take the
list's split, every other item leaves train / validation / test.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from rsir.errors import RsirError

SPLIT_NAMES = {"train": "train", "training": "train", "val": "validation", "validation": "validation",
               "test": "test"}


def parse_spec(text: str) -> tuple[str, Path]:
    """``SPLIT=FILE`` or ``FILE`` (the split taken from the file name: train / val / validation / test)."""
    name, sep, path = text.partition("=")
    if sep and name.lower() in SPLIT_NAMES:
        return SPLIT_NAMES[name.lower()], Path(path)
    p = Path(text)
    stem = p.stem.lower()
    hits = {v for k, v in SPLIT_NAMES.items() if k in stem.replace("-", "_").split("_") or stem == k}
    if len(hits) != 1:
        raise RsirError(f"--split-list {text!r}: say which split it lists, e.g. train={text} (or name the file "
                        "train.csv, val.csv or test.csv)")
    return hits.pop(), p


def read_names(path: Path) -> list[list[str]]:
    """Rows of a patch-name list (each row: its non-empty cells)."""
    try:
        with path.open(newline="") as fh:
            rows = [[c.strip() for c in row if c.strip()] for row in csv.reader(fh)]
    except OSError as e:
        raise RsirError(f"--split-list {path}: cannot read ({e.strerror or e})") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise RsirError(f"--split-list {path}: not a text list of patch names ({e})") from None
    rows = [r for r in rows if r]
    if rows and rows[0][0].lower() in ("patch_name", "patch_id", "name", "s2_name", "patch"):
        rows = rows[1:]
    if not rows:
        raise RsirError(f"--split-list {path}: holds no patch names")
    return rows


def apply_split_lists(archive: Any, specs: list[str]) -> dict[str, Any]:
    """Replace ``archive``'s splits by the lists (in memory); returns counts per split and unmatched names."""
    cat = archive.catalog
    lookup: dict[str, int] = {str(i): q for q, i in enumerate(archive.ids)}
    for col in ("s1_id", "partner_id"):
        if col in cat.columns:
            for q, v in enumerate(cat[col].fillna("").astype(str).tolist()):
                if v:
                    lookup.setdefault(v, q)
    new = np.full(len(archive), "", dtype=object)
    report: dict[str, Any] = {"lists": {}, "unmatched": 0}
    for spec in specs:
        split, path = parse_spec(spec)
        rows = read_names(path)
        matched = 0
        for row in rows:
            hit = next((lookup[c] for c in row if c in lookup), None)
            if hit is None:
                continue
            p = hit
            if new[p] and new[p] != split:
                raise RsirError(f"--split-list: {archive.ids[p]!r} is listed in {new[p]} and in {split} ({path})")
            new[p] = split
            matched += 1
        if not matched:
            raise RsirError(f"--split-list {path}: none of its {len(rows)} patch names is in archive "
                            f"{archive.path} (first: {rows[0][0]!r})")
        report["lists"][str(path)] = {"split": split, "names": len(rows), "matched": matched}
        report["unmatched"] += len(rows) - matched
    cat["split"] = new.astype(str)
    report["counts"] = {s: int((cat["split"] == s).sum()) for s in ("train", "validation", "test")}
    return report
