"""Report: tables, atomic JSON round trip, PNG plots written."""

from __future__ import annotations

import numpy as np

from rsir.eval.protocols import evaluate_full
from rsir.eval.report import format_table, read_json, write_json, write_report


def _result(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (20, 1), dtype=np.uint8)
    labels = (rng.random((20, 4)) < 0.4).astype(np.uint8)
    return evaluate_full(codes, codes, "hamming", labels, labels, ks=(5,), exclude=np.arange(20),
                         pk_curve=(1, 5, 10)).to_json()


def test_tables_plain_and_markdown():
    res = {"lsh": {"mAP@20(A)": 0.5, "P@20": 0.25}, "itq": {"mAP@20(A)": 0.75}}
    plain = format_table(res).splitlines()
    assert plain[0].split() == ["metric", "lsh", "itq"]
    assert plain[2].split() == ["mAP@20(A)", "0.5000", "0.7500"]
    assert plain[3].split() == ["P@20", "0.2500", "-"]  # missing value shown as "-"
    md = format_table(res, markdown=True).splitlines()
    assert md[0] == "| metric | lsh | itq |" and md[1] == "|---|---:|---:|"
    assert md[2] == "| mAP@20(A) | 0.5000 | 0.7500 |"


def test_json_round_trip_is_atomic(tmp_path):
    obj = {"metrics": {"mAP@20(B)": 0.123456789012345}, "curve": [0.0, 0.5, 1.0]}
    p = write_json(tmp_path / "sub" / "eval.json", obj)
    assert read_json(p) == obj
    write_json(p, {"x": 1})
    assert read_json(p) == {"x": 1}
    assert [f.name for f in p.parent.iterdir()] == ["eval.json"]  # no temporary file left behind


def test_write_report_files(tmp_path):
    results = {"a": _result(0), "b": _result(1)}
    paths = write_report(tmp_path / "out", results, {"protocol": "loo"})
    for key in ("json", "markdown", "pr_curve", "pk_curve", "radius_curve"):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    assert paths["pr_curve"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = read_json(paths["json"])
    assert doc["meta"] == {"protocol": "loo"}
    assert doc["results"]["a"]["metrics"] == results["a"]["metrics"]
    assert doc["results"]["b"]["curves"]["radius_P"] == results["b"]["curves"]["radius_P"]
    assert "mAP@k(B)" in doc["definitions"]
    assert "| mAP@5(A) |" in paths["markdown"].read_text()
