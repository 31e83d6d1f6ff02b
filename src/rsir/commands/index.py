"""rsir index: fit a hashing method (or load a model) on an archive, encode every item, write an INDEX dir."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rsir.errors import RsirError

NAME = "index"
HELP = "encode an archive with a classic hashing method or a trained model and build a search index"
EXAMPLE = "rsir index archives/reben --method itq --bits 64 --out indexes/reben-itq64"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rsir.hashing.encoder import classic_methods
    from rsir.index.factory import HAMMING_KINDS

    p.add_argument("archive", help="archive directory (from rsir ingest)")
    p.add_argument("--method", default=None, choices=classic_methods(),
                   help="classic method on hand-crafted features ('float' = the standardised features; default "
                        "lsh, or for a compressed archive its codec's codes read from the bitstreams)")
    p.add_argument("--model", default=None,
                   help="a trained model or codec directory (its codes instead of --method)")
    p.add_argument("--bits", type=int, default=None,
                   help="code length in bits, a multiple of 8 (default 64; with --model the model's own length)")
    p.add_argument("--out", required=True, help="INDEX directory to write")
    p.add_argument("--modality", default=None, help="modality to index (default: the archive's first)")
    p.add_argument("--kind", default="auto", choices=HAMMING_KINDS,
                   help="auto = the fastest exact structure for these codes, measured at build time (scan, mih or "
                        "exact-ivf, all exact and compiled); flat = exact faiss scan, ivf = faiss IVF "
                        "(approximate)")
    p.add_argument("--fit-sample", type=int, default=None, metavar="N",
                   help="training items to fit a classic method on (default: 20000 for lsh/itq/float, 3000 for "
                        "klsh, 2000 labelled for kslsh; fewer fit faster, KSLSH cost grows with N squared)")
    p.add_argument("--float", action="store_true",
                   help="with a cross-modal (ss-cm) --model: index its float embeddings (cosine) instead of codes")
    p.add_argument("--backend", default="faiss", choices=("faiss", "milvus"),
                   help="where the codes are searched: faiss in this process (default) or a Milvus collection "
                        "(binary vectors, HAMMING; filters run inside Milvus)")
    p.add_argument("--uri", default=None,
                   help="with --backend milvus: a Milvus Lite file (default OUT.milvus.db beside the INDEX "
                        "directory; BIN_FLAT only) or a Milvus server, e.g. http://host:19530 (flat or ivf)")
    p.add_argument("--dask", default=None, metavar="local:N|ADDRESS",
                   help="encode on a Dask cluster: local:N starts N worker processes here (and stops them), an "
                        "address (tcp://host:8786) uses a running scheduler whose workers see the archive at the "
                        "same path; the codes are the same as without --dask")
    p.add_argument("--partition-items", type=int, default=None, metavar="N",
                   help="items per Dask partition (default: about 4 partitions per worker)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from rsir.data.archive import open_archive
    from rsir.encoding import load_encoder, model_encoder_type
    from rsir.pipeline import IndexDir, build_index

    if args.model and args.method:
        raise RsirError(f"--method {args.method} and --model: a model indexes its own codes or features (--method "
                        "is for the classic methods; --float gives a cross-modal model's embeddings)")
    enc_type = model_encoder_type(args.model) if args.model else None
    if enc_type == "text-itsr":
        return _change_index(args)
    encoder = load_encoder(enc_type, args.model) if args.model and enc_type else None
    archive = open_archive(args.archive)
    if encoder is None and args.method is None and args.modality is None:
        entry = archive.compressed()
        if entry is not None:  # a compressed archive indexes with its own codec, from the bitstreams
            encoder = load_encoder("codec", archive.path / str(entry.get("dir", "codec")))
    if args.float:
        if encoder is None or not hasattr(encoder, "with_output"):
            raise RsirError("--float needs a cross-modal (ss-cm) --model; classic methods have --method float")
        encoder = encoder.with_output("float")
    kwargs: dict[str, Any] = dict(method=args.method or "lsh", bits=args.bits, modality=args.modality, kind=args.kind,
                                  seed=args.seed, encoder=encoder, progress=not args.no_progress,
                                  fit_sample=args.fit_sample)
    if args.backend == "milvus":
        uri = args.uri or str(Path(args.out).resolve()) + ".milvus.db"
        kwargs["backend_options"] = {"backend": "milvus", "uri": uri}
    elif args.uri:
        raise RsirError("--uri is for --backend milvus")
    if args.dask:
        from rsir.scale import open_client
        from rsir.scale.encode import dask_encoder

        with open_client(args.dask) as client:
            out = build_index(archive, args.out, encode_batches=dask_encoder(client, args.partition_items),
                              **kwargs)
    else:
        out = build_index(archive, args.out, **kwargs)
    m = IndexDir.read_manifest(out)
    mods = ", ".join(f"{k} {v}" for k, v in m.get("modality_counts", {}).items()) or m["modality"]
    print(f"indexed {m['count']} items ({mods}, {m['method']}, {m['dim']} "
          f"{'bits' if m['metric'] == 'hamming' else 'dims'}, {m.get('structure', m['kind'])}) in "
          f"{m['build_seconds']:.1f} s "
          f"-> {out}")
    if m.get("text"):
        print(f"caption codes: {m['text']['captions']} captions of {m['text']['items_with_captions']} items")
    return 0


def _change_index(args: argparse.Namespace) -> int:
    """A text-ITSR model: index the archive's bitemporal pairs and their change captions."""
    from rsir.pipeline import IndexDir, build_change_index

    out = build_change_index(args.archive, args.out, args.model, kind="flat", progress=not args.no_progress)
    m = IndexDir.read_manifest(out)
    print(f"indexed {m['count']} bitemporal pairs and {m['captions']} change captions ({m['method']}, {m['dim']} "
          f"bits) in {m['build_seconds']:.1f} s -> {out}")
    return 0
