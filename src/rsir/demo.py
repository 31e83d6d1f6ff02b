"""The main job behind `make demo`: real data in, trained hash codes, an evaluation table, a search page out.

Each step prints the `rsir` command it runs, so the demo doubles as a walk-through of the CLI. The small real
archive comes first so that the search page answers within the first minute, while the larger simulated archive
is still being built:

1. obtain the real reBEN sample (24 Sentinel-2/Sentinel-1 pairs) from its PyPI distribution, ingest it;
2. on the reBEN sample: LSH codes, a classifier and MiLAN on its features, evaluated (24 pairs is tiny, reported as
   it is); then (unless --no-serve) the search page starts serving the reBEN sample on http://127.0.0.1:8000 and
   says that the simulated archive is being built;
3. simulate a hard labelled archive of Sentinel-2/Sentinel-1 pairs;
4. index the simulated archive with the classic baselines (LSH and KSLSH on hand-crafted features, and the
   float features themselves);
5. train a multi-label classifier (float features) and MiLAN (64-bit hash codes on its frozen features), index the
   archive through them;
6. evaluate every index with the RSiM protocol (validation queries, test archive) and print one table;
7. serve the search page over both archives on http://127.0.0.1:8000 (the early server is replaced; unless
   --no-serve).

Everything is written under --out; a second run redoes every step (archives and models are replaced).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from rsir.errors import RsirError

#: The columns of the summary table: (eval.json metric key, column title).
SUMMARY = [("mAP@20(A)", "mAP@20 (A)"), ("mAP@20(C)", "mAP@20 (C)"), ("mAP@20(C,tie-aware)", "(C) tie-aware"),
           ("mAP@20(C)[jac>=0.5]", "(C) Jaccard>=0.5"), ("WAP@20", "WAP@20"), ("NDCG@20(exp)", "NDCG@20"),
           ("rsim_F1@20", "RSiM F1@20")]


class DemoError(RsirError):
    """A demo step failed; the message names the step."""


#: (step number, title, start time) of the steps run so far, for the timing table at the end.
STEPS: list[tuple[int, str, float]] = []


def step(n: int, text: str) -> None:
    STEPS.append((n, text, time.perf_counter()))
    print(f"\n=== [{n}] {text}", flush=True)


def step_times(end: float) -> str:
    """A markdown table of how long each step took."""
    rows = ["| step | seconds |", "|---|---:|"]
    for i, (n, text, t) in enumerate(STEPS):
        nxt = STEPS[i + 1][2] if i + 1 < len(STEPS) else end
        rows.append(f"| [{n}] {text} | {nxt - t:.0f} |")
    return "\n".join(rows)


def rsir(*argv: Any) -> None:
    """Run one `rsir` command in this process, echoing it as a user would type it."""
    from rsir.cli import main

    args = [str(a) for a in argv]
    print("$ rsir " + " ".join(shlex.quote(a) for a in args), flush=True)
    rc = main(args)
    if rc != 0:
        raise DemoError(f"`rsir {' '.join(args)}` failed (exit {rc})")


def evaluate(archive: Path, index: Path, out: Path, name: str, runs: dict[str, dict[str, Any]]) -> None:
    """`rsir eval` with the RSiM protocol; keeps its result under ``name`` for the summary."""
    from rsir.eval.report import read_json

    rsir("eval", archive, index, "--protocol", "rsim", "--k", "10,20", "--out", out)
    doc = read_json(out / "eval.json")
    runs[name] = next(iter(doc["results"].values()))


def summary_table(runs: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per method, the headline metrics as columns."""
    head = "| method | " + " | ".join(t for _, t in SUMMARY) + " |"
    lines = [head, "|---|" + "---:|" * len(SUMMARY)]
    for name, r in runs.items():
        m = r["metrics"]
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.4f}" if k in m else "-" for k, _ in SUMMARY) + " |")
    return "\n".join(lines)


def write_summary(out: Path, title: str, runs: dict[str, dict[str, Any]]) -> str:
    """The table printed and written to <out>/summary.md, plus the combined report (curves of all methods)."""
    from rsir.eval.report import write_report

    table = summary_table(runs)
    write_report(out, runs, {"title": title, "protocol": "rsim"})
    md = out / "summary.md"
    md.write_text(f"# {title}\n\nRSiM protocol: validation split as queries, test split as archive; "
                  f"relevance = any shared label unless named (Jaccard >= 0.5 of the label sets); tie-aware: "
                  f"averaged over the orders of equal Hamming distances (float rows have none).\n\n{table}\n")
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rsir.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="demo-out", help="working directory for archives, models and indexes")
    ap.add_argument("--n-sim", type=int, default=3000, help="patch pairs in the simulated archive (default 3000)")
    ap.add_argument("--epochs", type=int, default=25, help="classifier epochs on the simulated archive (default 25)")
    ap.add_argument("--bits", type=int, default=64, help="hash code length (default 64)")
    ap.add_argument("--reben", default=None, metavar="DIR",
                    help="a reBEN sample directory (LMDB + parquet) to use instead of fetching it from PyPI")
    ap.add_argument("--no-serve", action="store_true", help="stop after the evaluation instead of serving the page")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    early: EarlyServer | None = None
    try:
        tables = [run_reben(out, args)]
        if not args.no_serve:
            early = EarlyServer.start(out, args)
            print(f"\n>>> the search page answers now on http://{args.host}:{args.port}/ (the reBEN sample, "
                  f"{time.perf_counter() - t0:.0f} s after the start); the simulated archive is being built and "
                  "joins the page when the demo finishes (the server restarts then)\n", flush=True)
        tables.append(run_sim(out, args))
    except RsirError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        if early is not None:
            early.stop()
        return 2
    t_end = time.perf_counter()
    for title, table in tables:
        print(f"\n{title}\n{table}")
    print("\nThe demo trains briefly (a few minutes on 2 cores), so these numbers are those of short runs on small "
          "archives; BENCHMARKS.md has longer runs of the same commands, with variants A and C, tie-aware and "
          "strict-relevance values.")
    print(f"\nTime per step ({os.cpu_count()} CPU cores)\n{step_times(t_end)}")
    if early is not None:
        print(f"the search page first answered {early.ready_at - t0:.0f} s after the start (the reBEN sample)")
    print(f"\ndemo pipeline finished in {t_end - t0:.0f} s")
    if args.no_serve:
        return 0
    if early is not None:
        early.stop()
    step(7, "serve the search page over the reBEN sample and the simulated archive (Ctrl-C stops it)")
    from rsir.service.app import CollectionSpec, serve

    bits = args.bits
    print(f"$ rsir serve {out}/reben --index {out}/indexes/reben-milan{bits} --model {out}/models/reben-milan{bits} "
          f"--also sim={out}/sim,{out}/indexes/sim-milan{bits},{out}/models/sim-milan{bits}")
    try:
        serve(out / "reben", out / "indexes" / f"reben-milan{bits}", host=args.host, port=args.port,
              model=out / "models" / f"reben-milan{bits}",
              also=[CollectionSpec("sim", out / "sim", out / "indexes" / f"sim-milan{bits}",
                                   out / "models" / f"sim-milan{bits}")])
    except RsirError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


class EarlyServer:
    """The search page over the reBEN sample alone, in a thread, while the simulated archive is built."""

    def __init__(self, server: Any, thread: Any, ready_at: float) -> None:
        self.server, self.thread, self.ready_at = server, thread, ready_at

    @classmethod
    def start(cls, out: Path, args: argparse.Namespace) -> EarlyServer:
        import threading

        import uvicorn

        from rsir.service.app import CollectionSpec, ServiceLimits, create_multi_app

        bits = args.bits
        print(f"$ rsir serve {out}/reben --index {out}/indexes/reben-milan{bits} --model "
              f"{out}/models/reben-milan{bits}  (in the background)", flush=True)
        app = create_multi_app([CollectionSpec("reben", out / "reben", out / "indexes" / f"reben-milan{bits}",
                                               out / "models" / f"reben-milan{bits}")])
        server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                               limit_concurrency=ServiceLimits().max_connections))
        thread = threading.Thread(target=server.run, daemon=True, name="rsir-demo-early-server")
        thread.start()
        deadline = time.perf_counter() + 30
        while not server.started:
            if not thread.is_alive() or time.perf_counter() > deadline:
                raise DemoError(f"the search page could not start on {args.host}:{args.port} (port in use?)")
            time.sleep(0.05)
        return cls(server, thread, time.perf_counter())

    def stop(self) -> None:
        """Shut the early server down (the full one takes its port)."""
        self.server.should_exit = True
        self.thread.join(timeout=30)


def run_reben(out: Path, args: argparse.Namespace) -> tuple[str, str]:
    """Steps 1-2: the real reBEN sample, ingested, indexed, trained on and evaluated (seconds, not minutes)."""
    from rsir.data.fetch import get_dataset

    bits = args.bits
    idx, models, ev = out / "indexes", out / "models", out / "eval"
    reben = out / "reben"

    step(1, "obtain the real reBEN sample (24 Sentinel-2/Sentinel-1 pairs) from its PyPI distribution, ingest it")
    if args.reben:
        src = Path(args.reben)
    else:
        rsir("data", "get", "reben-sample")
        src = get_dataset("reben-sample")
    rsir("ingest", src, "--format", "reben", "--out", reben, "--overwrite")
    rsir("info", reben)

    step(2, "on the reBEN sample: LSH codes, a classifier and MiLAN on its features, evaluated (24 pairs: tiny, "
            "reported as it is)")
    rsir("index", reben, "--method", "lsh", "--bits", bits, "--out", idx / f"reben-lsh{bits}")
    rsir("train", reben, "--method", "classifier", "--epochs", 10, "--batch-size", 8,
         "--out", models / "reben-classifier")
    rsir("train", reben, "--method", "milan", "--bits", bits, "--epochs", 30, "--batch-size", 9,
         "--features", models / "reben-classifier", "--out", models / f"reben-milan{bits}")
    rsir("index", reben, "--model", models / f"reben-milan{bits}", "--out", idx / f"reben-milan{bits}")
    reben_runs: dict[str, dict[str, Any]] = {}
    evaluate(reben, idx / f"reben-lsh{bits}", ev / f"reben-lsh{bits}", f"LSH {bits} bit (hand-crafted)", reben_runs)
    evaluate(reben, idx / f"reben-milan{bits}", ev / f"reben-milan{bits}", f"MiLAN {bits} bit", reben_runs)
    return ("Real reBEN sample (24 pairs)", write_summary(ev / "reben", "rsir demo: reBEN sample", reben_runs))


def run_sim(out: Path, args: argparse.Namespace) -> tuple[str, str]:
    """Steps 3-6: the simulated archive, its baselines, the trained models and the evaluation table."""
    bits = args.bits
    idx, models, ev = out / "indexes", out / "models", out / "eval"
    sim = out / "sim"

    step(3, f"simulate a hard archive of {args.n_sim} labelled Sentinel-2/Sentinel-1 pairs")
    rsir("simulate", "--n", args.n_sim, "--out", sim, "--difficulty", "hard", "--seed", 0, "--overwrite")
    rsir("info", sim)

    step(4, "classic baselines on hand-crafted features: LSH and KSLSH codes, and the float features")
    sim_runs: dict[str, dict[str, Any]] = {}
    for method in ("lsh", "kslsh", "float"):
        name = f"sim-{method}{'' if method == 'float' else bits}"
        extra = [] if method == "float" else ["--bits", bits]
        if method == "kslsh":  # 1,000 labelled items instead of 2,000: a quarter of the fit time
            extra += ["--fit-sample", 1000]
        rsir("index", sim, "--method", method, *extra, "--out", idx / name)

    step(5, "train a multi-label classifier (float features) and MiLAN hash codes on its frozen features")
    rsir("train", sim, "--method", "classifier", "--epochs", args.epochs, "--schedule", "cosine",
         "--out", models / "sim-classifier")
    rsir("train", sim, "--method", "milan", "--bits", bits, "--epochs", 30,
         "--features", models / "sim-classifier", "--out", models / f"sim-milan{bits}")
    for m in ("sim-classifier", f"sim-milan{bits}"):
        rsir("index", sim, "--model", models / m, "--out", idx / m)

    step(6, "evaluate every index on the simulated archive (RSiM protocol)")
    labels = {f"sim-lsh{bits}": f"LSH {bits} bit (hand-crafted)", f"sim-kslsh{bits}": f"KSLSH {bits} bit "
              "(hand-crafted)", "sim-float": "hand-crafted float", "sim-classifier": "classifier float features",
              f"sim-milan{bits}": f"MiLAN {bits} bit"}
    for name, title in labels.items():
        evaluate(sim, idx / name, ev / name, title, sim_runs)
    return (f"Simulated archive ({args.n_sim} hard pairs, simulated data)",
            write_summary(ev / "sim", "rsir demo: simulated archive", sim_runs))


if __name__ == "__main__":
    sys.exit(main())
