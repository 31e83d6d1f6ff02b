"""The README's usage examples run as written (with smaller sizes so that the suite stays fast)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

#: Size reductions applied to the README's commands: (pattern, replacement).
SMALLER = [(r"--n 2000\b", "--n 150"), (r"--epochs 5\b", "--epochs 1"), (r"--epochs 30\b", "--epochs 2")]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text


@pytest.mark.slow
def test_readme_usage_runs(tmp_path: Path) -> None:
    (script,) = _blocks("bash")
    for pat, rep in SMALLER:
        script, n = re.subn(pat, rep, script)
        assert n, f"README no longer contains {pat!r}: update SMALLER in this test"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    # what the session promises: the reBEN sample with its 24 pairs, a search that lists the query's neighbours,
    # an evaluation table with mAP@20 (A)
    assert "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_37_88" in r.stdout
    assert "mAP@20(A)" in r.stdout
    assert (tmp_path / "eval" / "sim-milan64" / "eval.json").is_file()
    (code,) = _blocks("python")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].split() == ["rank", "id", "distance", "labels"] and len(lines) == 6
