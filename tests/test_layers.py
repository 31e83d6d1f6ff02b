"""The layer rules of docs/ARCHITECTURE.md, checked on the source: which rsir package may import which, and which
packages must not load torch. A new import that breaks a rule fails here with the file and line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "rsir"

GROUND = {"errors", "storage", "bits", "registry", "runtime", "leftovers"}
#: package (or top-level module) -> the rsir packages it may import besides itself
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "bits": set(),
    "runtime": set(),
    "leftovers": set(),
    "storage": {"errors"},
    "registry": {"errors"},
    "data": GROUND,
    "index": GROUND,
    "encoding": GROUND,
    "hashing": GROUND | {"data", "encoding"},
    "eval": GROUND | {"data"},
    "models": GROUND | {"data", "encoding", "text"},
    "losses": GROUND,
    "miners": GROUND | {"losses"},
    "train": GROUND | {"data", "eval", "models", "losses", "miners"},
    "methods": GROUND | {"data", "eval", "models", "losses", "miners", "train", "text", "feedback"},
    "compression": GROUND | {"data", "encoding", "losses", "models", "train"},
    "pipeline": GROUND | {"data", "encoding", "hashing", "index"},
    "query": GROUND | {"data", "encoding", "index", "pipeline"},
    "api": GROUND | {"data", "pipeline", "query", "feedback"},
    "text": GROUND,
    "feedback": GROUND | {"data", "eval", "encoding", "hashing", "index", "losses", "pipeline"},
    "service": GROUND | {"data", "query", "feedback"},
    "scale": GROUND | {"data", "encoding", "eval"},
}
#: front ends: may import anything
FRONT = {"cli", "commands", "demo", "__main__", "__init__"}
#: packages that must not import torch at module level (the archive, the indexes and the service run without it)
NO_TORCH = {"errors", "bits", "runtime", "leftovers", "storage", "registry", "data", "index", "encoding", "hashing", "eval",
            "pipeline", "query", "api", "service", "text", "feedback", "scale"}


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, at module level) for every import in a file (TYPE_CHECKING blocks skipped)."""
    tree = ast.parse(path.read_text())
    out: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                out.extend((child.lineno, a.name, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                out.append((child.lineno, child.module, top))
            inner_top = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner_top)

    visit(tree, True)
    return out


def _violations() -> list[str]:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        pkg = _package(path)
        for line, mod, top in _imports(path):
            where = f"{path.relative_to(SRC.parent)}:{line}"
            if mod.split(".")[0] == "torch" and top and pkg in NO_TORCH:
                bad.append(f"{where}: {pkg} imports torch at module level")
            if not mod.startswith("rsir.") or pkg in FRONT:
                continue
            target = mod.split(".")[1]
            if target != pkg and target not in ALLOWED[pkg]:
                bad.append(f"{where}: {pkg} may not import rsir.{target} ({mod})")
    return bad


def test_every_package_has_a_rule() -> None:
    pkgs = {_package(p) for p in SRC.rglob("*.py")}
    assert pkgs - set(ALLOWED) - FRONT == set()


def test_layer_rules_hold() -> None:
    assert _violations() == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself fails on a planted violation (so the test above can fail)."""
    fake = tmp_path / "rsir"
    (fake / "index").mkdir(parents=True)
    (fake / "index" / "x.py").write_text("import torch\nfrom rsir.hashing import HASHERS\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake)
    got = _violations()
    assert got == ["rsir/index/x.py:1: index imports torch at module level",
                   "rsir/index/x.py:2: index may not import rsir.hashing (rsir.hashing)"]


def test_service_and_readers_run_without_torch() -> None:
    code = ("import sys\n"
            "import rsir.data.formats, rsir.data.archive, rsir.data.uploads, rsir.service.app, rsir.query, "
            "rsir.pipeline, rsir.eval.protocols, rsir.api\n"
            "from rsir.data.formats import FORMATS\n"
            "for name in FORMATS.names():\n"
            "    FORMATS.get(name)\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
