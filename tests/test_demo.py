"""`make demo`'s pipeline end to end at toy sizes (the real reBEN sample from ../shared, a small simulation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsir import demo
from tests.conftest import shared_path


@pytest.mark.slow
def test_demo_pipeline_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reben = shared_path("reben-sample")
    demo.STEPS.clear()
    rc = demo.main(["--out", str(tmp_path / "d"), "--n-sim", "240", "--epochs", "1", "--bits", "16",
                    "--reben", str(reben), "--no-serve"])
    out = capsys.readouterr().out
    assert rc == 0
    # every step ran and was timed, and both tables were printed with a row per method
    # the real sample first (steps 1-2, the page could serve it from here on), then the simulated archive
    assert [n for n, _, _ in demo.STEPS] == [1, 2, 3, 4, 5, 6]
    assert out.index("Real reBEN sample (24 pairs)") < out.index("Simulated archive (240 hard pairs")
    assert "Time per step" in out and "demo pipeline finished" in out
    for row in ("LSH 16 bit (hand-crafted)", "KSLSH 16 bit (hand-crafted)", "classifier float features",
                "MiLAN 16 bit"):
        assert f"| {row} |" in out
    # the summaries and the indexes the page serves exist, with the evaluation behind each row
    d = tmp_path / "d"
    assert (d / "eval" / "sim" / "summary.md").exists() and (d / "eval" / "reben" / "summary.md").exists()
    for name in ("sim-milan16", "reben-milan16", "sim-kslsh16"):
        m = json.loads((d / "indexes" / name / "manifest.json").read_text())
        assert m["dim"] == 16 and m["metric"] == "hamming" and m["count"] > 0
    ev = json.loads((d / "eval" / "sim-milan16" / "eval.json").read_text())
    metrics = next(iter(ev["results"].values()))["metrics"]
    # the reported mAP@20 (A) equals one computed here by hand from the index's codes (RSiM protocol)
    assert metrics["mAP@20(A)"] == pytest.approx(_map20_a_by_hand(d / "indexes" / "sim-milan16"), abs=1e-9)


def _map20_a_by_hand(index_dir: Path) -> float:
    """mAP@20 variant A by plain loops: validation queries against the test split (RSiM protocol)."""
    import numpy as np

    from rsir.data.archive import open_archive
    from rsir.index import open_index
    from tests.eval.by_hand import map_a_and_p_by_hand

    manifest = json.loads((index_dir / "manifest.json").read_text())
    a = open_archive(manifest["archive"])
    codes = open_index(index_dir / "index").get(np.array(a.ids, dtype=object))
    q, db = a.split_positions("validation"), a.split_positions("test")
    return map_a_and_p_by_hand(codes[q], codes[db], a.labels[q], a.labels[db], 20)[0]


@pytest.mark.slow
def test_demo_serves_the_real_sample_while_the_simulation_is_built(tmp_path: Path, monkeypatch) -> None:
    """The page answers as soon as the reBEN models exist, before the simulated archive is simulated."""
    import socket
    import urllib.request

    reben = shared_path("reben-sample")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen: dict[str, object] = {}

    def sim_probe(out: Path, args: object) -> tuple[str, str]:
        # called where the simulated archive would be built: the page must already answer for the reBEN sample
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/collections", timeout=10) as r:
            seen["collections"] = json.loads(r.read())
        seen["sim_exists"] = (out / "sim").exists()
        raise demo.DemoError("stop here")

    monkeypatch.setattr(demo, "run_sim", sim_probe)
    demo.STEPS.clear()
    rc = demo.main(["--out", str(tmp_path / "d"), "--bits", "16", "--reben", str(reben), "--port", str(port)])
    assert rc == 2 and seen["sim_exists"] is False
    assert [c["name"] for c in seen["collections"]] == ["reben"]  # type: ignore[union-attr]
    # the early server was shut down on the error: nothing listens on the port any more
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))
