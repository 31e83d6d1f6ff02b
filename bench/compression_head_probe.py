"""Where is the gap between codes from the compressed latent and codes from pixels? (issue 19, probe)

Same training items (the codec's 2,000 training patches of the SIMULATED archive), same losses (SCI-CBIR's soft
pairwise + bit balance + classification, summed), same optimiser, batch and epochs; scored after every epoch on
the held-out slice of the training split the codec never trains on (compression_bench.held_out_slice: even
positions queries, odd ones database, mAP@20 (A), Hamming ranking). Arms:

- ``pixels``: rsir's ResNet (MiLAN's classifier trunk: width 16, blocks 1-1-1, stem stride 4) on the normalised
  pixels, linear to K, tanh: the pixel reference trained exactly like the latent arms;
- ``latent-conv``: the stage-1 codec's analysis transform frozen, its latent (uniform noise in training, rounded
  when scored, as the joint stage) into the first codecs' head (one 3x3 convolution);
- ``latent-resnet``: the same frozen latent into the residual head (``CodecConfig.head = "resnet"``);
- ``latent-resnet-ga``: the residual head with the analysis transform trained too (hashing losses only, no rate
  or distortion term): what the latent's architecture allows when retrieval alone shapes it.

``--train-set milan`` trains every arm on what MiLAN's classifier trains on instead (the training split minus the
10 % selection slice of rsir.train.selection, seed 0) and scores the epochs on that slice (queries) against the
rest of the training split; ``--augment`` adds the classifier's flips and 90-degree rotations of the pixels. The
epoch with the best held-out score is then scored once on the RSiM protocol (validation queries against the
test items, mAP@20 (A) from rsir.eval.protocols.evaluate, as ``rsir eval``).

Usage: python bench/compression_head_probe.py --sim /tmp/19/sim --codec /tmp/19/codec-s1-l1024-m64 \
    --out bench/results/compression_head_probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from compression_bench import held_out_slice  # noqa: E402
from train_bench import machine  # noqa: E402


def codes_map(h: np.ndarray, labels: np.ndarray, k: int = 20) -> float:
    """mAP@k (A) of codes h > 0 on the slice: even positions queries, odd ones database (as slice_map)."""
    return rsim_map(h[0::2], h[1::2], labels[0::2], labels[1::2], k)


def pack(h: np.ndarray) -> np.ndarray:
    from rsir.bits import pack_bits

    return pack_bits(h > 0)


def rsim_map(hq: np.ndarray, hd: np.ndarray, lq: np.ndarray, ld: np.ndarray, k: int = 20) -> float:
    """mAP@k (A) of query codes against database codes (Hamming ranking)."""
    from rsir.eval.metrics import average_precision_at_k, rank, ranked, relevance_any
    from rsir.eval.protocols import hamming_distances

    order = rank(hamming_distances(pack(hq), pack(hd)))
    return float(average_precision_at_k(ranked(relevance_any(lq, ld), order), k, "A").mean())


def build(arm: str, codec_dir: Path, bits: int, n_classes: int, head_width: int, head_blocks: list[int]) -> Any:
    import torch

    from rsir.compression.codec import CodecConfig, JointNet, load_codec
    from rsir.models.resnet import ResNet, ResNetConfig

    if arm == "pixels":
        class PixelNet(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = ResNet(ResNetConfig(in_channels=12))
                self.fc = torch.nn.Linear(self.encoder.feature_dim, bits)
                self.classifier = torch.nn.Linear(bits, n_classes)

            def forward(self, x: torch.Tensor, noise: bool = True) -> dict[str, torch.Tensor]:
                h = torch.tanh(self.fc(self.encoder(x)))
                return {"h": h, "logits": self.classifier(h)}

        net = PixelNet()
        return net, list(net.parameters())
    base = load_codec(codec_dir).net
    head = "conv" if arm == "latent-conv" else "resnet"
    cfg = CodecConfig(in_channels=base.cfg.in_channels, n_filters=base.cfg.n_filters, latent=base.cfg.latent,
                      bits=bits, n_classes=n_classes, head=head,
                      head_width=128 if head == "conv" else head_width, head_blocks=head_blocks)
    net = JointNet(cfg)
    net.g_a.load_state_dict(base.g_a.state_dict())
    trainable = list(net.head.parameters()) + list(net.classifier.parameters())
    if arm == "latent-resnet-ga":
        trainable += list(net.g_a.parameters())
    else:
        for p in net.g_a.parameters():
            p.requires_grad_(False)
    return net, trainable


def run_arm(arm: str, args: argparse.Namespace, x: np.ndarray, y: np.ndarray, val: dict[str, Any],
            n_classes: int, rsim: dict[str, Any]) -> dict[str, Any]:
    import copy

    import torch

    from rsir.eval.protocols import evaluate
    from rsir.losses.jci import bit_balance_loss, classification_loss, soft_pairwise_loss
    from rsir.train.data import dihedral

    torch.manual_seed(args.seed)
    net, params = build(arm, Path(args.codec), args.bits, n_classes, args.head_width, args.head_blocks)
    opt = torch.optim.Adam(params, lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    hist, t0 = [], time.perf_counter()
    best_state: dict[str, Any] = {}

    def hash_all(xs: np.ndarray) -> np.ndarray:
        xx = torch.from_numpy(xs)
        with torch.inference_mode():
            return torch.cat([net(xx[s:s + 256], noise=False)["h"] for s in range(0, len(xx), 256)]).numpy()

    for ep in range(1, args.epochs + 1):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        tot, nb = 0.0, 0
        for s in range(0, len(perm) - 1, args.batch):
            idx = perm[s:s + args.batch]
            if len(idx) < 2:
                continue
            xb = xt[idx]
            if args.augment:
                ks = torch.randint(0, 8, (len(idx),), generator=gen).tolist()
                xb = torch.stack([dihedral(xb[i], k) for i, k in enumerate(ks)])
            out = net(xb, noise=True)
            loss = (soft_pairwise_loss(out["h"], yt[idx]) + bit_balance_loss(out["h"])
                    + classification_loss(out["logits"], yt[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot, nb = tot + float(loss.detach()), nb + 1
        net.eval()
        h = hash_all(val["x"])
        score = codes_map(h, val["labels"]) if val.get("db_x") is None else rsim_map(h, hash_all(val["db_x"]),
                                                                                    val["labels"], val["db_labels"])
        if not best_state or score > best_state["score"]:
            best_state = {"score": score, "epoch": ep, "state": copy.deepcopy(net.state_dict())}
        rec = {"epoch": ep, "loss": round(tot / max(nb, 1), 4), "held_out_map20": round(score, 4),
               "mean_abs_h": round(float(np.abs(h).mean()), 3), "seconds": round(time.perf_counter() - t0, 1)}
        hist.append(rec)
        print(arm, json.dumps(rec), flush=True)
    net.load_state_dict(best_state["state"])
    net.eval()
    m = evaluate(pack(hash_all(rsim["q_x"])), pack(hash_all(rsim["db_x"])), "hamming", rsim["q_labels"],
                 rsim["db_labels"], ks=(20,))
    best = {"epoch": best_state["epoch"], "held_out_map20": round(best_state["score"], 4),
            "rsim_map20_A": round(m["mAP@20(A)"], 4), "rsim_wap20": round(m["WAP@20"], 4)}
    print(arm, "chosen", json.dumps(best), flush=True)
    return {"history": hist, "best": best,
            "trainable_parameters": int(sum(p.numel() for p in params))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", required=True)
    ap.add_argument("--codec", required=True, help="a stage-1 codec directory (its analysis transform is used)")
    ap.add_argument("--arms", nargs="+", default=["pixels", "latent-conv", "latent-resnet", "latent-resnet-ga"])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-items", type=int, default=2000)
    ap.add_argument("--head-width", type=int, default=64)
    ap.add_argument("--head-blocks", type=int, nargs="+", default=[2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-set", choices=["codec", "milan"], default="codec",
                    help="codec: the codec's --max-items training items, scored on the rest of the training split; "
                         "milan: the training split minus the 10%% selection slice, scored on the slice")
    ap.add_argument("--augment", action="store_true", help="flips and 90-degree rotations of the training pixels")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "compression_head_probe.json"))
    args = ap.parse_args()
    import os

    import torch

    torch.set_num_threads(1)
    from rsir.compression.train import load_training_data
    from rsir.data.archive import open_archive

    arch = open_archive(args.sim)

    def images(pos: np.ndarray) -> np.ndarray:
        return np.concatenate([b for _, b in arch.batches(256, modality="s2", positions=pos.tolist())])

    if args.train_set == "codec":
        x, y = load_training_data(arch, "s2", args.max_items, 0)
        val = held_out_slice(arch, args.max_items)
    else:
        from rsir.train.selection import selection_slice

        train = arch.split_positions("train")
        mask = selection_slice([arch.ids[int(p)] for p in train])
        fit, sel = train[~mask], train[mask]
        x, y = images(fit), arch.labels[fit]
        val = {"positions": sel, "x": images(sel), "labels": arch.labels[sel], "db_x": x, "db_labels": y}
    q, d = arch.split_positions("validation"), arch.split_positions("test")
    rsim = {"q_x": images(q), "q_labels": arch.labels[q], "db_x": images(d), "db_labels": arch.labels[d]}
    res: dict[str, Any] = {"what": __doc__.split("\n\n")[0], "dataset": "SIMULATED hard archive (rsir simulate --n 6000 "
                           "--size 24 --difficulty hard --seed 0 --bitemporal 0)", "machine": machine(),
                           "loadavg_before": list(os.getloadavg()), "args": vars(args), "train_items": int(len(x)),
                           "held_out_items": int(len(val["x"])), "arms": {}}
    out = Path(args.out)
    if out.exists():
        old = json.loads(out.read_text())
        same = {k: v for k, v in old.get("args", {}).items() if k != "arms"} == {
            k: v for k, v in vars(args).items() if k != "arms"}
        if same:  # another run of other arms with the same settings: keep the arms already measured
            res["arms"] = old.get("arms", {})
    for arm in args.arms:
        res["arms"][arm] = run_arm(arm, args, x, y, val, len(arch.nomenclature), rsim)
        res["loadavg_after"] = list(os.getloadavg())
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
    print(json.dumps({a: r["best"] for a, r in res["arms"].items()}, indent=1))


if __name__ == "__main__":
    main()
