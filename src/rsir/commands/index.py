"""rsir index: fit a hashing method (or load a model) on an archive, encode every item, write an INDEX dir."""

from __future__ import annotations

import argparse

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
    p.add_argument("--kind", default="flat", choices=HAMMING_KINDS,
                   help="flat = exact faiss scan, ivf = faiss IVF (approximate), mih = multi-index hashing")
    p.add_argument("--fit-sample", type=int, default=None, metavar="N",
                   help="training items to fit a classic method on (default: 20000 for lsh/itq/float, 3000 for "
                        "klsh, 2000 labelled for kslsh; fewer fit faster, KSLSH cost grows with N squared)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from rsir.data.archive import open_archive
    from rsir.encoding import load_encoder, model_encoder_type
    from rsir.pipeline import IndexDir, build_index

    encoder = load_encoder(model_encoder_type(args.model), args.model) if args.model else None
    archive = open_archive(args.archive)
    if encoder is None and args.method is None and args.modality is None:
        entry = archive.compressed()
        if entry is not None:  # a compressed archive indexes with its own codec, from the bitstreams
            encoder = load_encoder("codec", archive.path / str(entry.get("dir", "codec")))
    out = build_index(archive, args.out, method=args.method or "lsh", bits=args.bits, modality=args.modality,
                      kind=args.kind, seed=args.seed, encoder=encoder, progress=not args.no_progress,
                      fit_sample=args.fit_sample)
    m = IndexDir.read_manifest(out)
    print(f"indexed {m['count']} items ({m['modality']}, {m['method']}, {m['dim']} "
          f"{'bits' if m['metric'] == 'hamming' else 'dims'}, {m['kind']}) in {m['build_seconds']:.1f} s "
          f"-> {out}")
    return 0
