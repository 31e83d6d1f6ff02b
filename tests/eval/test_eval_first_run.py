"""`rsir eval` on a first archive: an empty test split suggests --split all, a k beyond the archive is warned about."""

from __future__ import annotations

import json

import numpy as np

from rsir.cli import main
from rsir.data.archive import ArchiveWriter
from rsir.data.bands import s2_spec
from rsir.data.nomenclature import BEN19


def _unsplit_archive(path, n=29, split=""):
    """n items without a split (as a BigEarthNet v1 ingest without split lists gives)."""
    rng = np.random.default_rng(1)
    spec = s2_spec(12)
    with ArchiveWriter(path, [spec], BEN19, "test") as w:
        for i in range(n):
            w.add(f"p{i:02d}", {"split": split, "labels": [BEN19.classes[i % 4]]},
                  {"s2": {b: rng.integers(0, 3000, sh, dtype=np.uint16) for b, sh in spec.shapes.items()}})
    return path


def test_loo_on_an_empty_split_suggests_split_all(tmp_path, capsys):
    from rsir.pipeline import build_index

    arch = _unsplit_archive(tmp_path / "a")
    idx = build_index(arch, tmp_path / "idx", method="lsh", bits=16, progress=False)
    rc = main(["eval", str(arch), str(idx), "--protocol", "loo"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "protocol loo needs at least 2 items in split 'test' (found 0; the archive's splits: (none) 29); " \
           "evaluate over all 29 items with split 'all' (--split all)" in err
    # the suggestion works; the default k of 100 exceeds the 28 items each query is ranked against: warned
    out = tmp_path / "ev"
    assert main(["eval", str(arch), str(idx), "--protocol", "loo", "--split", "all", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert "rsir eval: warning: k = 100 exceeds the 28 database items each query is ranked against" in cap.err
    assert "P@100 is at most 0.28" in cap.err and "k = 10," not in cap.err and "20" not in cap.err.split("against")[0]
    assert "P@100" in cap.out
    meta = json.loads((out / "eval.json").read_text())["meta"]
    assert len(meta["warnings"]) == 1
    assert main(["eval", str(arch), str(idx), "--protocol", "loo", "--split", "all", "--k", "5,28"]) == 0
    assert "warning" not in capsys.readouterr().err
