"""rsir serve: the search API and web page over an archive and its index."""

from __future__ import annotations

import argparse
import os

NAME = "serve"
HELP = "serve search over an archive and its index: a JSON API and a web page (no internet needed)"
EXAMPLE = ("rsir serve archives/reben --index indexes/reben-lsh64 --port 8000 "
           "--also sim=archives/sim,indexes/sim-milan64,models/sim-milan64")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("archive", help="archive directory (from rsir ingest)")
    p.add_argument("--index", required=True, help="index directory (from rsir index)")
    p.add_argument("--model", default=None, help="model directory, when the index was built with a trained model")
    p.add_argument("--also", action="append", default=[], metavar="NAME=ARCHIVE,INDEX[,MODEL]",
                   help="another collection to serve beside the first, at /c/NAME/ (repeatable); the page "
                        "switches between them")
    p.add_argument("--change", default=None, metavar="CHANGE_INDEX",
                   help="a change index over the same archive (rsir index ARCHIVE --model TEXT_ITSR_MODEL): the page "
                        "gets a Change tab, search for before/after pairs by sentence")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token", default=os.environ.get("RSIR_TOKEN"),
                   help="bearer token that allows POST /api/items and DELETE /api/items/ID; default $RSIR_TOKEN; "
                        "without one, writing is disabled. With one, adds and deletes are journaled beside the "
                        "index (fsynced before the answer) and replayed at every start")
    p.add_argument("--annotate", action="store_true",
                   help="annotation mode (ANNEAL rounds, pair answers) and relevance feedback for the first "
                        "collection; its index must be built with --method float; answers go to "
                        "INDEX.annotations.sqlite beside the index (or --annotation-db); writes need --token")
    p.add_argument("--annotation-db", default=os.environ.get("RSIR_ANNOTATION_DB"), metavar="FILE|URL",
                   help="with --annotate: the annotation database, an SQLite file or a PostgreSQL URL "
                        "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB; default $RSIR_ANNOTATION_DB")


def run(args: argparse.Namespace) -> int:
    from rsir.service.app import CollectionSpec, serve

    also = [CollectionSpec.parse(a) for a in args.also]
    serve(args.archive, args.index, host=args.host, port=args.port, model=args.model, token=args.token, also=also,
          change=args.change, annotate=args.annotate,
          annotation_db=args.annotation_db)
    return 0
