"""The search and eval paths before and after the query-engine refactor, side by side in one run.

Same archive, same INDEX directory (built once by the reference tree, which the new tree reads), same queries.
Each tree runs in its own child process with its own sources first on sys.path; the two alternate (reference,
new, reference, new, ...) so that load from other work on the machine falls on both. Measured per tree:

- ``search_id``: the library call behind ``rsir search --id`` (reference: ``rsir.search.Searcher.search_id``;
  new: ``rsir.query.SearchEngine.search_id``), k = 20, median over the queries.
- ``service_search_id``: ``POST /api/search/id`` through FastAPI's TestClient (in process, no network), k = 20,
  with a label filter on every other query, median.
- ``eval_rsim``: ``rsir eval ARCHIVE INDEX --protocol rsim --k 10,20,100`` in process (wall seconds, median of
  3 after a first, cold run that is reported apart as ``eval_rsim_first``).

Data: a SIMULATED hard archive (``rsir simulate --n N --difficulty hard --seed 0``) and an LSH 64-bit index.

Usage: .venv/bin/python bench/refactor_bench.py [--n 6000] [--reference 2f17d8a] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, sys, time
import numpy as np
tree, archive_dir, index_dir, nq = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, tree + "/src")
import rsir
assert rsir.__file__.startswith(tree), rsir.__file__
from fastapi.testclient import TestClient
from rsir.cli import main
from rsir.data.archive import open_archive
from rsir.service.app import create_app

arch = open_archive(archive_dir)
rng = np.random.default_rng(0)
ids = [arch.ids[int(p)] for p in rng.choice(len(arch), nq, replace=False)]
label = arch.nomenclature.classes[int(np.argmax(arch.labels.sum(0)))]
try:
    from rsir.query import SearchEngine
    eng = SearchEngine.open(index_dir, archive=arch)
    search = lambda i: eng.search_id(i, 20).ids
    app = create_app(engine=SearchEngine.open(index_dir, archive=arch))
    which = "new"
except ImportError:
    from rsir.search import Searcher
    s = Searcher.open(index_dir, archive=arch)
    search = lambda i: [r["id"] for r in s.search_id(i, 20)]
    app = create_app(searcher=Searcher.open(index_dir, archive=arch))
    which = "reference"

def median_ms(fn):
    for i in ids[:5]:
        fn(i)
    t = []
    for i in ids:
        t0 = time.perf_counter(); fn(i); t.append(time.perf_counter() - t0)
    return float(np.median(t) * 1e3)

client = TestClient(app)
def service(i):
    body = {"id": i, "k": 20}
    if hash(i) % 2:
        body["filters"] = {"labels": [label]}
    r = client.post("/api/search/id", json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"]

out = {"tree": which, "search_id_ms": median_ms(search), "service_search_id_ms": median_ms(service),
       "first_ids": search(ids[0])}
import contextlib, io
def evaluate():
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["eval", archive_dir, index_dir, "--protocol", "rsim", "--k", "10,20,100"]) == 0
    return time.perf_counter() - t0
out["eval_rsim_first_s"] = evaluate()  # cold: imports, archive and index read from disk
out["eval_rsim_s"] = float(np.median([evaluate() for _ in range(3)]))
print(json.dumps(out))
'''


def run(cmd: list[str], **kw: object) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed:\n{r.stderr[-3000:]}")
    return str(r.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6000, help="simulated pairs")
    ap.add_argument("--reference", default="2f17d8a", help="commit of the reference (pre-refactor) tree")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="OMP/BLAS threads of each child (1: single-query latency, least disturbed by other load)")
    ap.add_argument("--work", default="/tmp/rsir-refactor-bench")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "refactor.json"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    ref_tree = work / f"tree-{args.reference}"
    if not ref_tree.exists():
        run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(ref_tree), args.reference])
    archive = work / f"sim{args.n}"
    if not archive.exists():
        run([py, "-m", "rsir", "simulate", "--n", str(args.n), "--difficulty", "hard", "--seed", "0",
             "--out", str(archive)])
    index = work / f"sim{args.n}-lsh64"
    if not index.exists():  # built by the reference tree: its INDEX format is the one both trees read
        run([py, "-c", f"import sys; sys.path.insert(0, {str(ref_tree / 'src')!r}); from rsir.cli import main; "
             f"sys.exit(main(['index', {str(archive)!r}, '--method', 'lsh', '--bits', '64', '--out', "
             f"{str(index)!r}, '--no-progress']))"])
    rows: dict[str, list[dict]] = {"reference": [], "new": []}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(CHILD)
        child = f.name
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": str(args.threads),
           "OPENBLAS_NUM_THREADS": str(args.threads)}
    for rep in range(args.repeats):
        for tree in (ref_tree, ROOT):
            res = json.loads(run([py, child, str(tree), str(archive), str(index), str(args.queries)],
                                 env=env).strip().splitlines()[-1])
            rows[res["tree"]].append(res)
            print(f"repeat {rep}: {res['tree']:>9}  search_id {res['search_id_ms']:.3f} ms  service "
                  f"{res['service_search_id_ms']:.3f} ms  eval {res['eval_rsim_s']:.2f} s", flush=True)
    os.unlink(child)
    same = rows["reference"][0]["first_ids"] == rows["new"][0]["first_ids"]

    def med(tree: str, key: str) -> float:
        vals = sorted(r[key] for r in rows[tree])
        return vals[len(vals) // 2]

    def best(tree: str, key: str) -> float:
        return min(r[key] for r in rows[tree])

    # median over repeats, and the best repeat (the least disturbed by other load on the machine)
    summary = {k: {"reference": round(med("reference", k), 4), "new": round(med("new", k), 4),
                   "new_over_reference": round(med("new", k) / med("reference", k), 3),
                   "reference_best": round(best("reference", k), 4), "new_best": round(best("new", k), 4),
                   "new_over_reference_best": round(best("new", k) / best("reference", k), 3)}
               for k in ("search_id_ms", "service_search_id_ms", "eval_rsim_s", "eval_rsim_first_s")}
    report = {"benchmark": "refactor_bench", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()},
              "load_average": os.getloadavg(),
              "data": f"SIMULATED hard archive, {args.n} pairs (rsir simulate --n {args.n} --difficulty hard "
                      "--seed 0); LSH 64-bit index built by the reference tree",
              "reference_commit": args.reference, "queries": args.queries, "repeats": args.repeats,
              "threads": args.threads,
              "same_results": same, "summary": summary, "runs": rows}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2), "\nsame results:", same)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
