"""Train DUCH on an archive whose items carry captions: what ``rsir train --method duch`` runs.

Unsupervised: the only signal is which captions belong to which image; labels are never read here (they score
the model in ``rsir eval`` and the benchmark only).

1. Inputs, computed once (the authors precompute them too): the frozen image features of every training item
   (pooled features of an rsir image model, ``--features``, L2-normalised), ``image_views`` augmented views of
   each image at feature time (a random one of the 8 flips/90-degree rotations plus Gaussian noise of standard
   deviation ``noise`` on the normalised bands, then the same frozen network), the MiniLM vector of every
   caption (:mod:`rsir.text.sentences`) and of one augmented view of it (:mod:`rsir.text.augment`, fitted on the
   training captions plus any ``text_corpus``).
2. Each epoch pairs every training image with one of its captions, drawn at random, and one of its augmented
   views; per batch the discriminator takes one step, then the two heads take one step on the DUCH objective
   (:mod:`rsir.losses.duch`). The shared code B (one row per training item, initialised as sign(randn)) is
   recomputed once per epoch from the four continuous outputs stored during the epoch. The generator's learning
   rate is multiplied by 0.8 after every epoch e with e % 50 == 0 (epoch 0 included), as the authors' code.
3. Model selection: a seeded slice of the *training* split (the rule of :mod:`rsir.train.selection`: BLAKE2b keys
   of the ids, 10 % by default) is held out of training. Every ``select_every`` epochs its images and captions
   are ranked against the codes of the whole training split: image -> text R@1/5/10 (a hit when one of the
   image's own captions is in the top K) and text -> image R@1/5/10; their mean (mR) chooses the epoch whose
   heads are kept. This uses no labels, and never the validation or test items that evaluation queries with.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rsir.data.archive import Archive, open_archive
from rsir.errors import RsirError
from rsir.losses.duch import ALPHA, BETA, GAMMA, TAU, WEIGHTS, DuchLoss, discriminator_loss, shared_code
from rsir.models.duch import DuchConfig, DuchNet, save_duch
from rsir.models.io import load_model
from rsir.models.net import RetrievalNet

SELECTION_RULE = ("blake2b(seed:id) keys, the round(fraction*n) smallest held out of training; score: mean of "
                  "image->text and text->image R@1/5/10 of the slice against the whole training split")


def selection_slice(ids: Sequence[Any], fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Mask of the training items held out for model selection (the rule of ``rsir.train.selection``)."""
    try:
        from rsir.train.selection import selection_slice as shared  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        return np.asarray(shared(ids, fraction, seed))
    n = len(ids)
    mask = np.zeros(n, dtype=bool)
    if fraction <= 0.0 or n < 2:
        return mask
    m = min(max(1, round(fraction * n)), n - 1)
    keys = sorted((int.from_bytes(hashlib.blake2b(f"{seed}\x00{s}".encode(), digest_size=8).digest(), "big"),
                   str(s), j) for j, s in enumerate(ids))
    mask[[j for _, _, j in keys[:m]]] = True
    return mask


@dataclass
class DuchOptions:
    """DUCH's settings; the defaults are the authors' (loss weights, optimisers, batch, hidden width)."""

    bits: int = 64
    epochs: int = 100
    batch_size: int = 256
    hidden: int = 4096
    lr: float = 1e-4
    alpha: float = ALPHA
    beta: float = BETA
    gamma: float = GAMMA
    weights: tuple[float, float, float] = WEIGHTS
    tau: float = TAU
    image_views: int = 2
    noise: float = 0.05
    select_fraction: float = 0.1
    select_seed: int = 0
    select_every: int = 5
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    text_corpus: list[str] = field(default_factory=list)
    cache_dir: str | None = None
    max_items: int | None = None


@dataclass
class DuchData:
    """Precomputed training inputs: features of images, their augmented views, captions and caption views."""

    ids: list[str]
    img: torch.Tensor            # (N, d) L2-normalised
    img_aug: torch.Tensor        # (V, N, d)
    txt: torch.Tensor            # (M, 384) all captions of the N items
    txt_aug: torch.Tensor        # (M, 384) one augmented view of each caption
    cap_item: np.ndarray         # (M,) item row of each caption
    cap_start: np.ndarray        # (N,) first caption row of each item
    cap_count: np.ndarray        # (N,) captions per item
    captions: list[str]
    augmenter: dict[str, Any]


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 flips / 90-degree rotations of an N x C x H x W batch."""
    if k >= 4:
        x = torch.flip(x, dims=(3,))
    return torch.rot90(x, k % 4, dims=(2, 3))


@torch.inference_mode()
def image_features(net: RetrievalNet, archive: Archive, modality: str, positions: Sequence[int], views: int,
                   noise: float, seed: int, device: torch.device, progress: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised frozen features of the images at ``positions`` and of ``views`` augmented views of each."""
    fast = net.eval().to(device).for_inference()
    g = torch.Generator().manual_seed(seed)
    plain: list[torch.Tensor] = []
    aug: list[list[torch.Tensor]] = [[] for _ in range(views)]
    for _ids, x in archive.batches(64, modality=modality, positions=list(positions), progress=progress):
        xt = torch.from_numpy(x)
        plain.append(fast(xt.to(device))["features"].float().cpu())
        for v in range(views):
            ks = torch.randint(0, 8, (len(xt),), generator=g)
            xa = torch.stack([_dihedral(xt[j:j + 1], int(ks[j]))[0] for j in range(len(xt))])
            xa = xa + noise * torch.randn(xa.shape, generator=g)
            aug[v].append(fast(xa.to(device))["features"].float().cpu())
    d = net.feature_dim
    img = F.normalize(torch.cat(plain), dim=1) if plain else torch.zeros((0, d))
    img_aug = torch.stack([F.normalize(torch.cat(a), dim=1) for a in aug]) if plain and views else \
        torch.zeros((views, len(img), d))
    return img, img_aug


def item_captions(archive: Archive, positions: Sequence[int]) -> list[list[str]]:
    """Captions of the items at ``positions`` (blank ones dropped)."""
    col = archive.catalog["captions"]
    out = []
    for p in positions:
        caps = col.iat[int(p)]
        out.append([str(c).strip() for c in (caps if caps is not None else []) if str(c).strip()])
    return out


def prepare(archive: Archive, features: RetrievalNet, modality: str, positions: Sequence[int], opts: DuchOptions,
            device: torch.device, augment: bool = True) -> DuchData:
    """Everything the training loop reads, for the items at ``positions`` (those with captions); without
    ``augment`` (evaluation data) no image views are made and the caption views are the captions."""
    from rsir.text.augment import TextAugmenter
    from rsir.text.sentences import shared_encoder

    caps = item_captions(archive, positions)
    keep = [j for j, c in enumerate(caps) if c]
    positions = [int(positions[j]) for j in keep]
    caps = [caps[j] for j in keep]
    if len(positions) < 2:
        raise RsirError(f"{archive.path}: DUCH needs training items with captions; found {len(positions)}")
    ids = [archive.ids[p] for p in positions]
    if opts.progress:
        print(f"image features of {len(ids)} training items and {opts.image_views} augmented views", flush=True)
    img, img_aug = image_features(features, archive, modality, positions, opts.image_views if augment else 0,
                                  opts.noise, opts.seed, device, opts.progress)
    flat = [c for cs in caps for c in cs]
    aug = TextAugmenter().fit(flat + list(opts.text_corpus))
    flat_aug = aug.augment_all(flat, seed=opts.seed)
    enc = shared_encoder()
    if opts.progress:
        print(f"sentence vectors of {len(flat)} captions and their augmented views", flush=True)
    txt = torch.from_numpy(enc.encode(flat, progress=opts.progress, cache_dir=opts.cache_dir))
    txt_aug = torch.from_numpy(enc.encode(flat_aug, progress=opts.progress, cache_dir=opts.cache_dir)) if augment \
        else txt
    count = np.array([len(c) for c in caps], np.int64)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    return DuchData(ids, img, img_aug, txt, txt_aug, np.repeat(np.arange(len(caps)), count), start, count, flat,
                    aug.to_json())


def _signs(h: torch.Tensor) -> torch.Tensor:
    s = torch.sign(h)
    return torch.where(s == 0, torch.ones_like(s), s)


def hamming_from_signs(q: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
    """Hamming distances between +-1 codes: (K - q . db) / 2."""
    return (q.shape[1] - q @ db.T) / 2


def _ranks_of(dist: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of column ``targets[i]`` in row i (ties: lower column first, the project's rule)."""
    d_t = dist.gather(1, targets[:, None])
    cols = torch.arange(dist.shape[1])[None, :]
    return ((dist < d_t) | ((dist == d_t) & (cols < targets[:, None]))).sum(1)


def selection_score(net: DuchNet, data: DuchData, sel: np.ndarray, ks: Sequence[int] = (1, 5, 10)
                    ) -> dict[str, float]:
    """Label-free image <-> text recall of the held-out slice against the whole training split (see module)."""
    net.eval()
    with torch.inference_mode():
        bi = _signs(net.image_head(data.img))
        bt = _signs(net.text_head(data.txt))
    net.train()
    rows = np.flatnonzero(sel)
    out: dict[str, float] = {}
    # image -> text: best rank among the image's own captions
    d = hamming_from_signs(bi[rows], bt)
    best = torch.full((len(rows),), 1 << 30, dtype=torch.long)
    for j, r in enumerate(rows):
        own = torch.arange(int(data.cap_start[r]), int(data.cap_start[r] + data.cap_count[r]))
        best[j] = _ranks_of(d[j:j + 1].expand(len(own), -1), own).min()
    for k in ks:
        out[f"i2t_R@{k}"] = float((best < k).float().mean())
    # text -> image: every caption of the slice, its own image's rank
    cap_rows = np.flatnonzero(np.isin(data.cap_item, rows))
    dt = hamming_from_signs(bt[cap_rows], bi)
    r_t = _ranks_of(dt, torch.as_tensor(data.cap_item[cap_rows], dtype=torch.long))
    for k in ks:
        out[f"t2i_R@{k}"] = float((r_t < k).float().mean())
    out["mR"] = float(np.mean(list(out.values())))
    return out


@dataclass
class DuchHistory:
    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -1.0


def fit_duch(data: DuchData, opts: DuchOptions, fit_mask: np.ndarray | None = None,
             sel_mask: np.ndarray | None = None) -> tuple[DuchNet, DuchHistory]:
    """The DUCH training loop on precomputed inputs; returns the heads of the best selection epoch."""
    device = torch.device(opts.device)
    torch.manual_seed(opts.seed)
    n = len(data.ids)
    fit_rows = np.flatnonzero(fit_mask) if fit_mask is not None else np.arange(n)
    cfg = DuchConfig(int(data.img.shape[1]), int(data.txt.shape[1]), opts.bits, opts.hidden)
    net = DuchNet(cfg).to(device).train()
    loss_fn = DuchLoss(opts.alpha, opts.beta, opts.gamma, tuple(opts.weights), opts.tau)  # type: ignore[arg-type]
    opt_g = torch.optim.Adam([{"params": net.image_head.parameters()}, {"params": net.text_head.parameters()}],
                             lr=opts.lr, weight_decay=5e-4)
    opt_d = torch.optim.Adam(net.discriminator.parameters(), lr=opts.lr, betas=(0.5, 0.9), weight_decay=1e-4)
    g = torch.Generator().manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    b_code = torch.randn(n, opts.bits, generator=g).sign().to(device)
    hs = {k: torch.zeros(n, opts.bits, device=device) for k in ("i1", "i2", "t1", "t2")}
    img, img_aug = data.img.to(device), data.img_aug.to(device)
    txt, txt_aug = data.txt.to(device), data.txt_aug.to(device)
    hist = DuchHistory()
    best_state = copy.deepcopy(net.state_dict())
    views = max(1, img_aug.shape[0])
    bs = opts.batch_size
    for epoch in range(opts.epochs):
        t0 = time.perf_counter()
        order = fit_rows[rng.permutation(len(fit_rows))]
        cap = data.cap_start + (rng.random(n) * data.cap_count).astype(np.int64)
        view = rng.integers(0, views, n)
        sums: dict[str, float] = {}
        steps = 0
        for s in range(0, len(order), bs):
            idx_np = order[s:s + bs]
            if len(idx_np) < 2:  # batch norm needs two samples
                continue
            idx = torch.as_tensor(idx_np, device=device)
            x_i1 = img[idx]
            x_i2 = img_aug[torch.as_tensor(view[idx_np], device=device), idx] if img_aug.shape[0] else x_i1
            c = torch.as_tensor(cap[idx_np], device=device)
            h_i1, h_i2 = net.image_head(x_i1), net.image_head(x_i2)
            h_t1, h_t2 = net.text_head(txt[c]), net.text_head(txt_aug[c])
            for k, h in (("i1", h_i1), ("i2", h_i2), ("t1", h_t1), ("t2", h_t2)):
                hs[k][idx] = h.detach()
            if opts.alpha:
                opt_d.zero_grad(set_to_none=True)
                ld = discriminator_loss(net.discriminator, h_t1, h_i1, generator=None) + \
                    discriminator_loss(net.discriminator, h_t2, h_i2, generator=None)
                ld.backward()
                opt_d.step()
                sums["discriminator"] = sums.get("discriminator", 0.0) + float(ld.detach())
            terms = loss_fn(h_i1, h_i2, h_t1, h_t2, b_code[idx], net.discriminator if opts.alpha else None)
            total = terms.total
            if not torch.isfinite(total):
                raise RsirError(f"DUCH: non-finite loss at epoch {epoch} ({terms.as_floats()})")
            opt_g.zero_grad(set_to_none=True)
            total.backward()
            opt_g.step()
            for k, v in terms.as_floats().items():
                sums[k] = sums.get(k, 0.0) + v
            sums["total"] = sums.get("total", 0.0) + float(total.detach())
            steps += 1
        fr = torch.as_tensor(fit_rows, device=device)
        b_code[fr] = shared_code(hs["i1"][fr], hs["i2"][fr], hs["t1"][fr], hs["t2"][fr])
        if epoch % 50 == 0:
            for grp in opt_g.param_groups:
                grp["lr"] = max(grp["lr"] * 0.8, 1e-6)
        rec: dict[str, Any] = {"epoch": epoch, "seconds": round(time.perf_counter() - t0, 3),
                               **{k: v / max(steps, 1) for k, v in sums.items()}}
        last = epoch == opts.epochs - 1
        if sel_mask is not None and sel_mask.any() and ((epoch + 1) % max(1, opts.select_every) == 0 or last):
            score = selection_score(net, data, sel_mask)
            rec["selection"] = score
            if score["mR"] > hist.best_score:
                hist.best_score, hist.best_epoch = score["mR"], epoch
                best_state = copy.deepcopy(net.state_dict())
        hist.epochs.append(rec)
        if opts.progress:
            sel = f", selection mR {rec['selection']['mR']:.4f}" if "selection" in rec else ""
            print(f"epoch {epoch + 1}/{opts.epochs}: loss {rec.get('total', 0.0):.2f}{sel} "
                  f"({rec['seconds']:.1f} s)", flush=True)
    if hist.best_epoch >= 0:
        net.load_state_dict(best_state)
    else:
        hist.best_epoch = opts.epochs - 1
    return net.eval(), hist


def train_duch(archive: str | Path | Archive, features: str | Path, out: str | Path, opts: DuchOptions,
               modality: str | None = None) -> tuple[Path, DuchHistory, dict[str, Any]]:
    """Train DUCH on the archive's training split (captions + images) and write the model directory."""
    a = archive if isinstance(archive, Archive) else open_archive(archive)
    if opts.bits <= 0 or opts.bits % 8:
        raise RsirError(f"--bits must be a positive multiple of 8 (got {opts.bits})")
    feat_net, feat_meta = load_model(features)
    mod = modality or feat_meta.modality
    spec = a.spec(mod)
    if list(feat_meta.bands) != list(spec.bands):
        raise RsirError(f"--features {features}: trained on {feat_meta.modality} bands {feat_meta.bands}, the "
                        f"archive's {mod} has {spec.bands}")
    has = set(a.catalog["split"].astype(str))
    split = "train" if "train" in has else None
    pos = a.split_positions(split)
    if opts.max_items is not None:
        pos = pos[: opts.max_items]
    device = torch.device(opts.device)
    data = prepare(a, feat_net, mod, [int(p) for p in pos], opts, device)
    sel = selection_slice(data.ids, opts.select_fraction, opts.select_seed)
    net, hist = fit_duch(data, opts, ~sel, sel)
    cfg = net.config
    from rsir.text.sentences import shared_encoder

    cfg.sentence_model = shared_encoder().key
    info = {"method": "duch", "archive": str(a.path), "split": split or "(all items)", "n_train": int((~sel).sum()),
            "n_selection": int(sel.sum()), "selection_rule": SELECTION_RULE, "best_epoch": hist.best_epoch,
            "selection_mR": hist.best_score, "features": str(features), "options": {
                k: v for k, v in asdict(opts).items() if k not in ("text_corpus", "progress", "cache_dir")},
            "text_corpus_captions": len(opts.text_corpus), "history": hist.epochs,
            "captions": len(data.captions), "image_views": opts.image_views}
    cfg.info = info
    path = save_duch(out, net.cpu(), feat_net, feat_meta, data.augmenter)
    return path, hist, info
