"""rsir train: learn a model (classifier features or MiLAN hash codes) on an archive."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "train"
HELP = "train a model on an archive: multi-label classifier (float features) or MiLAN hashing"
EXAMPLE = "rsir train archives/reben --method milan --bits 64 --epochs 5 --out models/milan64"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("archive", help="archive directory")
    p.add_argument("--method", "-m", default="milan",
                   choices=["classifier", "milan", "milan-e2e", "ss-cm", "text-itsr", "duch"],
                   help="classifier: multi-label CNN whose pooled features are float embeddings; milan: frozen "
                        "classifier features + MiLAN hash head (as published); milan-e2e: encoder trained too; "
                        "ss-cm: self-supervised Sentinel-1 <-> Sentinel-2 (SS-CM-RSIR), no labels, on the "
                        "archive's co-registered pairs; text-itsr: text <-> bitemporal pair retrieval (Hoxha et al. "
                        "2025), no labels, on the archive's before/after pairs and change captions; duch: text <-> "
                        "image hashing (DUCH) from the items' captions, no labels, on frozen image features of "
                        "--features and frozen MiniLM sentence vectors")
    p.add_argument("--bits", type=int, default=64, help="hash code length K (milan, milan-e2e)")
    p.add_argument("--epochs", type=int, default=None, help="default: 100 for duch (as its authors), else 10")
    p.add_argument("--hidden", type=int, default=4096, help="duch: hidden width of the hashing heads")
    p.add_argument("--text-corpus", action="append", default=[], metavar="DIR",
                   help="duch: a caption corpus (any layout rsir ingest --format captions reads) whose captions "
                        "also fit the caption augmentation's word statistics (repeatable)")
    p.add_argument("--image-views", type=int, default=2,
                   help="duch: augmented views per training image (flips/rotations/noise at feature time)")
    p.add_argument("--select-every", type=int, default=5,
                   help="duch: score the held-out training slice every N epochs (model selection)")
    p.add_argument("--out", "-o", required=True, help="model directory to write (config.json + model.safetensors)")
    p.add_argument("--modality", default=None, help="image modality to train on (default: the archive's first)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: 64 for the classifier, 90 (30 triplets, as MiLAN) for milan")
    p.add_argument("--lr", type=float, default=None, help="default: 1e-3 classifier, 1e-4 milan")
    p.add_argument("--sampler", default="random",
                   choices=["random", "batch-hard", "semi-hard", "diverse", "diverse-rf", "milan-pairs"],
                   help="triplet sampling for milan: multi-label random (default; MiLAN's own sampler is random), "
                        "batch-hard, FaceNet semi-hard (every positive pair, the nearest negative beyond the "
                        "positive within the margin), two readings of the Sumbul et al. sampler (diverse: summed ranks; "
                        "diverse-rf: relevance first; the paper body was not available), or the original two-class MiLAN sampler (single-label "
                        "archives only). On the simulator batch-hard and diverse degrade after their first epochs "
                        "(BENCHMARKS.md, samplers re-run; bench/results/samplers_*.json)")
    p.add_argument("--loss", default="bce", choices=["bce", "focal"], help="classifier loss")
    p.add_argument("--features", default=None, metavar="MODEL_DIR",
                   help="classifier model whose features milan freezes (milan-e2e: starts from its encoder); "
                        "without it milan first trains a classifier itself")
    p.add_argument("--width", type=int, default=16, help="encoder base width")
    p.add_argument("--patience", type=int, default=5,
                   help="early stopping: epochs without a better selection mAP (held-out training slice)")
    p.add_argument("--selection-fraction", type=float, default=0.1,
                   help="share of the training split held out for model selection (best epoch, early stopping); "
                        "never validation or test items, which are the evaluation queries; 0: keep the last epoch")
    p.add_argument("--selection-seed", type=int, default=0, help="seed of the selection slice (kept in config.json)")
    p.add_argument("--schedule", default="constant", choices=["constant", "cosine"],
                   help="learning rate: constant, or cosine-annealed to 0 over --epochs")
    p.add_argument("--no-augment", action="store_true", help="no flips / 90-degree rotations")
    p.add_argument("--preload", choices=["auto", "yes", "no"], default="auto",
                   help="load the splits into memory (auto: when they fit in 2 GiB)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for lazily read data")
    p.add_argument("--split-list", action="append", default=[], metavar="[SPLIT=]FILE",
                   help="patch-name list (CSV, first column the S2 name) replacing the archive's splits, e.g. "
                        "train=train.csv validation=val.csv (the BigEarthNet-MM 'Serbia summer' lists)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None, help="at most N batches per epoch")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    x = p.add_argument_group("ss-cm (cross-modal, self-supervised)")
    x.add_argument("--objectives", default="all", choices=["mim", "mim+de", "all"],
                   help="objective terms: inter-modal InfoNCE only, + angular discrepancy, all three (default)")
    x.add_argument("--tau", type=float, default=0.5, help="InfoNCE temperature (RSiM ports: 0.5)")
    x.add_argument("--w-de", type=float, default=1.0, help="weight of the discrepancy term")
    x.add_argument("--w-intra", type=float, default=1.0, help="weight of the intra-modal term")
    x.add_argument("--w-quant", type=float, default=0.0,
                   help="weight of a quantisation term (rsir's addition, not in the paper; default 0)")
    x.add_argument("--ramp", action="store_true",
                   help="raise the discrepancy and intra-modal weights geometrically from 1e-4x to 1x over the "
                        "epochs, as the public RSiM port (DA4DTE) does")
    x.add_argument("--terms-on", default="projection", choices=["projection", "encoder"],
                   help="where the discrepancy and intra-modal terms act: the projections, like InfoNCE "
                        "(default), or the encoder features before the heads (the public RSiM port, DA4DTE)")
    x.add_argument("--pair", default="s1,s2", help="the two modalities of a pair (default s1,s2)")

    c = p.add_argument_group("text-itsr (text <-> bitemporal pairs, self-supervised)")
    c.add_argument("--fusion", default="gff", choices=["gff", "tff", "later"],
                   help="gff: global features of both dates fused by --operator; tff: a transformer over both "
                        "dates' patch tokens; later: the single-date baseline (the later image only)")
    c.add_argument("--operator", default="concat", choices=["concat", "diff", "absdiff", "sum", "product"],
                   help="GFF operator (default concat)")
    c.add_argument("--temperature", type=float, default=0.07, help="InfoNCE temperature (default 0.07)")
    c.add_argument("--train-split", default="train",
                   help="split whose pairs train the model (default train; 'all' for small real sets)")
    c.add_argument("--quant-weight", type=float, default=0.1,
                   help="weight of rsir's quantisation term (not in the paper; 0 turns it off)")


def run(args: argparse.Namespace) -> int:
    from rsir.errors import RsirError
    from rsir.methods.train_api import MethodOptions, train_model
    from rsir.train.loop import TrainConfig

    if args.method == "duch":
        return _run_duch(args)
    args.epochs = 10 if args.epochs is None else args.epochs
    if args.bits <= 0 or args.epochs < 0 or (args.epochs == 0 and args.method != "ss-cm"):
        raise RsirError("--bits and --epochs must be positive (--epochs 0 only for ss-cm: the untrained pair)")
    if not 0 <= args.selection_fraction < 1:
        raise RsirError(f"--selection-fraction must be in [0, 1), got {args.selection_fraction}")
    out = Path(args.out)
    ckpt = out.with_name(out.name + ".ckpt")
    if args.resume and not (ckpt / "checkpoint.pt").exists():
        raise RsirError(f"--resume: no checkpoint at {ckpt / 'checkpoint.pt'}")
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size or 0, lr=args.lr, device=args.device,
                      seed=args.seed, num_workers=args.workers, patience=args.patience, checkpoint_dir=ckpt,
                      resume=args.resume, progress=not args.quiet, max_steps=args.max_steps,
                      schedule=args.schedule, selection_fraction=args.selection_fraction,
                      selection_seed=args.selection_seed)
    if args.method == "text-itsr":
        return _train_text_itsr(args, cfg)
    preload = {"auto": None, "yes": True, "no": False}[args.preload]
    opts = MethodOptions(bits=args.bits, sampler=args.sampler, cls_loss=args.loss, width=args.width,
                         features=Path(args.features) if args.features else None, preload=preload,
                         augment=not args.no_augment)
    if args.method == "ss-cm":
        opts.sscm = _sscm_options(args, opts)
    archive: object = args.archive
    if args.split_list:
        from rsir.data.archive import open_archive
        from rsir.data.splitlists import apply_split_lists

        archive = open_archive(args.archive)
        rep = apply_split_lists(archive, args.split_list)
        print("split lists: " + ", ".join(f"{s} {n}" for s, n in rep["counts"].items()), flush=True)
    res = train_model(archive, args.method, out, cfg, opts, args.modality)  # type: ignore[arg-type]
    best = res.history.best_map
    what = ("label-free selection score (partner MRR)" if args.method == "ss-cm" else "selection mAP@20(A)")
    print(f"wrote {args.method} model to {res.path}"
          + (f" (best {what} {best:.4f} at epoch {res.history.best_epoch}, on the held-out training slice)"
             if best >= 0 else " (untrained: --epochs 0)" if args.epochs == 0 else
             " (fewer than 10 training pairs, no selection slice: last epoch kept)" if args.method == "ss-cm" else
             " (no selection slice: last epoch kept)"))
    if (res.path / "training.png").exists():
        print(f"loss and selection score per epoch: {res.path / 'training.png'}")
    for n in res.notes:
        print(f"note: {n}")
    return 0


def _run_duch(args: argparse.Namespace) -> int:
    from rsir.errors import RsirError

    if not args.features:
        raise RsirError("--method duch needs --features MODEL_DIR: the image model whose frozen features it hashes "
                        "(e.g. rsir train ARCHIVE --method classifier --out MODEL_DIR)")
    epochs = 100 if args.epochs is None else args.epochs
    if args.bits <= 0 or args.bits % 8 or epochs <= 0:
        raise RsirError("--bits must be a positive multiple of 8 and --epochs positive")
    if not 0 <= args.selection_fraction < 1:
        raise RsirError(f"--selection-fraction must be in [0, 1), got {args.selection_fraction}")
    from rsir.data.captions import collect_records
    from rsir.methods.duch import DuchOptions, train_duch

    corpus: list[str] = []
    for d in args.text_corpus:
        _name, recs = collect_records(Path(d), {})
        corpus += [c for r in recs if r.split != "test" for c in r.captions]
    device = "cpu" if args.device == "auto" else args.device
    if args.device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    opts = DuchOptions(bits=args.bits, epochs=epochs, batch_size=args.batch_size or 256, hidden=args.hidden,
                       lr=args.lr or 1e-4, image_views=args.image_views, select_every=args.select_every,
                       seed=args.seed, device=device, progress=not args.quiet, text_corpus=corpus,
                       select_fraction=args.selection_fraction, select_seed=args.selection_seed)
    path, hist, info = train_duch(args.archive, args.features, args.out, opts, args.modality)
    print(f"wrote duch model to {path} ({info['n_train']} training items, {info['captions']} captions; best "
          f"selection mR {hist.best_score:.4f} at epoch {hist.best_epoch + 1}, on {info['n_selection']} held-out "
          f"training items)")
    return 0


def _sscm_options(args: argparse.Namespace, opts: object) -> object:
    from rsir.errors import RsirError
    from rsir.losses.sscm import SSCMWeights
    from rsir.methods.sscm import SSCMOptions

    pair = [m.strip().lower() for m in args.pair.split(",") if m.strip()]
    if len(pair) != 2 or pair[0] == pair[1]:
        raise RsirError(f"--pair {args.pair!r}: expected two different modalities, e.g. s1,s2")
    if args.tau <= 0:
        raise RsirError(f"--tau {args.tau}: must be positive")
    w = SSCMWeights(tau=args.tau, w_de=args.w_de, w_intra=args.w_intra, w_quant=args.w_quant,
                    terms=args.objectives, ramp=args.ramp, terms_on=args.terms_on)
    preload = {"auto": None, "yes": True, "no": False}[args.preload]
    return SSCMOptions(bits=args.bits, modalities=(pair[0], pair[1]), width=args.width, weights=w,
                       preload=preload, augment=not args.no_augment)


def _train_text_itsr(args: argparse.Namespace, cfg: Any) -> int:
    from rsir.methods.text_itsr import ChangeOptions, train_text_itsr

    opts = ChangeOptions(fusion=args.fusion, operator=args.operator, bits=args.bits, width=args.width,
                         quant_weight=args.quant_weight, temperature=args.temperature, augment=not args.no_augment,
                         train_split=args.train_split)
    res = train_text_itsr(args.archive, args.out, cfg, opts, args.modality)
    h = res.history
    print(f"wrote text-itsr model ({opts.fusion}{'-' + opts.operator if opts.fusion == 'gff' else ''}, "
          f"{opts.bits} bits) to {res.path}"
          + (f" (best mR {h.best_map:.4f} at epoch {h.best_epoch} on the held-out training pairs)"
             if h.best_map >= 0 else ""))
    print(f"loss and selection mR per epoch: {res.path / 'training.png'}")
    return 0
