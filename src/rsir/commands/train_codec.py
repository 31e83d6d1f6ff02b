"""rsir train-codec: train a joint compression and hashing codec (SCI-CBIR) on an archive."""

from __future__ import annotations

import argparse

NAME = "train-codec"
HELP = "train a learned codec whose latent is also hashed (SCI-CBIR: codec stage, then joint stage)"
EXAMPLE = "rsir train-codec archives/sim --bits 64 --out models/codec64"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("archive", help="archive directory (its training split is used)")
    p.add_argument("--out", required=True, help="codec directory to write")
    p.add_argument("--bits", type=int, default=64, help="hash code length (multiple of 8)")
    p.add_argument("--lambda", dest="lmbda", type=float, default=64.0,
                   help="rate-distortion trade-off: loss = bits per pixel + lambda * MSE of normalised bands")
    p.add_argument("--codec-epochs", type=int, default=10, help="epochs of stage 1 (rate-distortion only)")
    p.add_argument("--joint-epochs", type=int, default=10,
                   help="epochs of stage 2 (codec + hashing, objectives combined by --weighting)")
    p.add_argument("--weighting", choices=["uncertainty", "pcgrad", "mgda"], default="uncertainty",
                   help="joint stage: learned uncertainty weights (Kendall et al.), PCGrad gradient surgery, or "
                        "MGDA-UB min-norm weights (docs/compression.md)")
    p.add_argument("--quantisation", type=float, default=0.0, metavar="BETA",
                   help="rsir's addition, not in the papers: add BETA * mean (|h| - 1)^2 as an objective of the "
                        "joint stage (against hash outputs collapsing to 0)")
    p.add_argument("--head", choices=["conv", "resnet"], default="conv",
                   help="hashing head on the latent: one 3x3 convolution (conv), or stages of rsir's residual "
                        "blocks (resnet: --head-blocks blocks per stage, --head-width channels)")
    p.add_argument("--head-width", type=int, default=None, help="head channels (default: 128 conv, 64 resnet)")
    p.add_argument("--head-blocks", type=int, nargs="+", default=[2], metavar="N",
                   help="resnet head: residual blocks per stage (each stage after the first halves the resolution)")
    p.add_argument("--selection-fraction", type=float, default=0.0,
                   help="leave out rsir train's model-selection slice of the train split (e.g. 0.1, as MiLAN and "
                        "the classifier): the joint stage is scored on it after every epoch (mAP@20 (A), as rsir "
                        "train) and the best epoch is kept")
    p.add_argument("--patience", type=int, default=5,
                   help="with --selection-fraction: stop the joint stage after N epochs without a better score")
    p.add_argument("--augment", action="store_true", help="random flips and 90-degree rotations of training patches")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--filters", type=int, default=64, help="channels of the transforms")
    p.add_argument("--latent", type=int, default=32, help="latent channels")
    p.add_argument("--max-items", type=int, default=None, help="train on at most N training items")
    p.add_argument("--modality", default=None)
    p.add_argument("--init", default=None, metavar="CODEC",
                   help="start from this codec's transforms and entropy model (reuse its stage 1: e.g. "
                        "--codec-epochs 0 for another code length)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from rsir.compression.train import CodecTrainConfig, train_codec

    cfg = CodecTrainConfig(bits=args.bits, lmbda=args.lmbda, codec_epochs=args.codec_epochs,
                           joint_epochs=args.joint_epochs, batch_size=args.batch_size, lr=args.lr,
                           n_filters=args.filters, latent=args.latent, seed=args.seed, max_items=args.max_items,
                           modality=args.modality, init=args.init, weighting=args.weighting,
                           quantisation=args.quantisation, head=args.head,
                           head_width=args.head_width or (128 if args.head == "conv" else 64),
                           head_blocks=tuple(args.head_blocks), selection_fraction=args.selection_fraction,
                           augment=args.augment, patience=args.patience)
    out = train_codec(args.archive, args.out, cfg, log=print)
    print(f"codec -> {out}")
    return 0
