"""rsir annotate: ANNEAL active learning over an index (simulated oracle or the page), and export of the answers."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rsir.errors import RsirError

NAME = "annotate"
HELP = ("active learning (ANNEAL): retrain a metric head on pair answers and queue the next informative pairs; "
        "`rsir annotate export` writes the answers as Parquet")
EXAMPLE = ("rsir annotate archives/sim --index indexes/sim-float --rounds 5 --budget 50 --oracle labels\n"
           "  rsir annotate export --index indexes/sim-float --out pairs.parquet")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rsir.feedback.anneal import STRATEGIES

    p.add_argument("archive", help="archive directory, or the word `export` to write the stored answers")
    p.add_argument("--index", required=True, help="INDEX directory built with `rsir index ARCHIVE --method float`")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="where the retrained head is written (default: INDEX.anneal beside the index)")
    p.add_argument("--db", default=os.environ.get("RSIR_ANNOTATION_DB"), metavar="FILE|URL",
                   help="annotation database: an SQLite file (default: INDEX.annotations.sqlite beside the index) "
                        "or a PostgreSQL URL postgresql+psycopg://USER:PASSWORD@HOST:5432/DB shared by a team; "
                        "default $RSIR_ANNOTATION_DB")
    p.add_argument("--rounds", type=int, default=1, help="rounds to run (default 1)")
    p.add_argument("--budget", type=int, default=50, help="pairs asked per round (default 50)")
    p.add_argument("--initial", type=int, default=0,
                   help="random pairs to annotate first when the database holds none (default 0)")
    p.add_argument("--strategy", choices=STRATEGIES, default="anneal-mgue", help="pair selection (default anneal-mgue)")
    p.add_argument("--oracle", choices=("labels", "none"), default="none",
                   help="labels: the archive's labels answer every queued pair (simulation); none: the pairs wait "
                        "for an expert (rsir serve --annotate)")
    p.add_argument("--oracle-mode", choices=("shared", "exact"), default="shared",
                   help="labels oracle: similar when the patches share a label (shared) or have the same label "
                        "set (exact)")
    p.add_argument("--pool-from", choices=("uniform", "knn"), default="uniform",
                   help="candidate pairs: uniform pairs of training patches (default), or each patch with its "
                        "10 nearest in the frozen features (measured no better; see BENCHMARKS.md)")
    p.add_argument("--hidden", type=int, default=0,
                   help="hidden width of the metric head: 0 a linear head (default), N a 2-layer MLP (measured no "
                        "better; see BENCHMARKS.md)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--who", default="cli", help="name recorded with the round")
    p.add_argument("--out", default=None, help="export: the Parquet file to write")


def _export(args: argparse.Namespace) -> int:
    from rsir.feedback.session import default_db
    from rsir.feedback.store import AnnotationStore, is_url

    if not args.out:
        raise RsirError("annotate export needs --out FILE.parquet")
    db = args.db or default_db(args.index)
    if not is_url(db) and not Path(db).is_file():
        raise RsirError(f"{db}: no annotation database here")
    store = AnnotationStore(db)
    out = store.export_parquet(args.out)
    print(f"wrote {store.count()} answered pairs to {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.archive == "export":
        return _export(args)
    from rsir.feedback.anneal import AnnealConfig
    from rsir.feedback.session import AnnotationSession

    if args.rounds < 0 or args.budget < 1 or args.initial < 0 or args.hidden < 0:
        raise RsirError("--rounds must be >= 0, --budget >= 1, --initial >= 0 and --hidden >= 0")
    cfg = AnnealConfig(strategy=args.strategy, budget=args.budget, pool_from=args.pool_from, hidden=args.hidden,
                       seed=args.seed)
    s = AnnotationSession.open(args.index, args.archive, db=args.db, model_dir=args.model, config=cfg)
    oracle = args.oracle == "labels"
    if args.initial and s.store.count() == 0:
        r = s.run_round("random", args.initial, who=args.who)
        answered = s.answer_with_labels(args.oracle_mode) if oracle else 0
        print(f"round {r['round']}: {r['queued']} random pairs to start"
              + (f", answered {answered} from the labels" if oracle else ""), flush=True)
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        r = s.run_round(args.strategy, args.budget, who=args.who)
        answered = s.answer_with_labels(args.oracle_mode) if oracle else 0
        model = s.store.current_model()
        metrics = model["metrics"] if model else {}
        print(f"round {r['round']}: trained on {r['labelled']} pairs -> model version {r['model_version']} "
              f"{' '.join(f'{k} {v}' for k, v in metrics.items())}; queued {r['queued']} pairs"
              + (f", answered {answered} from the labels" if oracle else "")
              + f" ({time.perf_counter() - t0:.1f} s)", flush=True)
    if oracle and args.rounds:
        r = s.run_round(args.strategy, 0, who=args.who)  # train on the last answers, queue nothing
        model = s.store.current_model()
        print(f"final: trained on {r['labelled']} pairs -> model version {r['model_version']} "
              f"{' '.join(f'{k} {v}' for k, v in (model['metrics'] if model else {}).items())}")
    st = s.status()
    print(f"{st['labelled']} answered, {st['pending']} waiting; database {st['db']}; model {st['model_dir']}")
    return 0
