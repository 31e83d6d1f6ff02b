"""ANNEAL's deep metric model end to end: a CNN encoder and its projection, every layer trained on the labelled
pairs with the contrastive loss each round (the alternative to :class:`rsir.feedback.anneal.FrozenHead`, a head
on frozen features).

The network starts from a pretrained branch of a cross-modal model (:func:`from_crossmodal`: the label-free
SS-CM encoder of one modality plus its projection head), so the labelled pairs adapt a metric space instead of
building one from nothing; the embedding is the L2-normalised projection output. Each round's training starts
from those pretrained weights (or, with ``AnnealConfig.fine_tune``, from the last round's), like the head's
retraining. rsir's choices (the papers' set-up could not be read, see :mod:`rsir.feedback.anneal`): Adam on all
parameters, ``cfg.batch`` pairs per step, a random dihedral symmetry per image and step (the augmentation rsir's
trainers use: spectra stay untouched), batch-norm statistics kept at their pretrained values (the affine
parameters still learn), since a few hundred pairs make small, label-skewed batches.

Memory: every item's normalised image is held as one tensor (6,000 patches of 12 x 60 x 60: 1 GiB float32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from rsir.feedback import FeedbackError
from rsir.train.data import dihedral_batch

if TYPE_CHECKING:
    from rsir.data.archive import Archive
    from rsir.feedback.anneal import AnnealConfig


class EmbeddingNet(nn.Module):
    """encoder -> projection -> L2 normalisation."""

    def __init__(self, encoder: nn.Module, projection: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.projection(self.encoder(x)), dim=1)


@dataclass
class EncoderState:
    """One round's trained weights (a state dict) and its loss per step."""

    weights: dict[str, torch.Tensor]
    losses: list[float] = field(default_factory=list)


def _freeze_batch_norm_stats(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class EncoderMetric:
    """The end-to-end metric model of the ANNEAL loop over a fixed set of items (``images``: N x C x H x W,
    normalised). ``fit`` trains from ``init`` (default: the pretrained weights) and returns the state,
    ``embed`` gives every item's embedding (N x dim float32) under a state."""

    def __init__(self, net: EmbeddingNet, images: torch.Tensor, augment: bool = True, embed_batch: int = 256) -> None:
        if images.ndim != 4:
            raise FeedbackError(f"images must be N x C x H x W, got shape {tuple(images.shape)}")
        self.net = net
        self.images = images
        self.augment = augment
        self.embed_batch = embed_batch
        self.pretrained = EncoderState({k: v.detach().clone() for k, v in net.state_dict().items()})

    def fit(self, i: np.ndarray, j: np.ndarray, y: np.ndarray, cfg: AnnealConfig, seed: int,
            init: EncoderState | None = None) -> EncoderState:
        from rsir.losses.contrastive import ContrastiveLoss

        torch.manual_seed(seed)
        start = init if (init is not None and cfg.fine_tune) else self.pretrained
        self.net.load_state_dict(start.weights)
        losses: list[float] = []
        if len(i):
            it = torch.as_tensor(np.asarray(i, np.int64))
            jt = torch.as_tensor(np.asarray(j, np.int64))
            yt = torch.as_tensor(np.asarray(y, np.float32))
            loss_fn = ContrastiveLoss(cfg.margin)
            opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            gen = torch.Generator().manual_seed(seed)
            self.net.train()
            _freeze_batch_norm_stats(self.net)
            for _ in range(cfg.steps):
                sel = torch.randint(0, len(it), (min(cfg.batch, len(it)),), generator=gen)
                used, inv = torch.unique(torch.cat([it[sel], jt[sel]]), return_inverse=True)
                x = self.images[used].float()
                if self.augment:
                    x = dihedral_batch(x, torch.randint(0, 8, (len(used),), generator=gen))
                emb = self.net(x)
                loss = loss_fn(emb, inv[: len(sel)], inv[len(sel):], yt[sel])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        self.net.eval()
        return EncoderState({k: v.detach().clone() for k, v in self.net.state_dict().items()}, losses)

    @torch.inference_mode()
    def embed(self, state: EncoderState) -> np.ndarray:
        self.net.load_state_dict(state.weights)
        self.net.eval()
        out = [self.net(self.images[s:s + self.embed_batch].float()) for s in range(0, len(self.images),
                                                                                    self.embed_batch)]
        return torch.cat(out).numpy().astype(np.float32)


def from_crossmodal(path: str | Path, archive: Archive, modality: str = "s2", positions: Any = None,
                    augment: bool = True, pretrained: bool = True, seed: int = 0) -> EncoderMetric:
    """The ``modality`` branch (encoder + projection head) of a cross-modal model directory as the starting point,
    over the archive's items (``positions``, default all, in that order), normalised with the model's own
    statistics of that modality. ``pretrained=False``: the same network freshly initialised (seeded), to train
    from scratch."""
    from rsir.models.crossmodal import CrossModalNet, load_crossmodal

    net, meta, _ = load_crossmodal(path)
    if not pretrained:
        torch.manual_seed(seed)
        net = CrossModalNet(net.config).eval()
    if modality not in net.modalities:
        raise FeedbackError(f"{path}: the model encodes {', '.join(net.modalities)}, not {modality}")
    mm = meta.modalities[modality]
    pos = np.arange(len(archive)) if positions is None else np.asarray(positions)
    mean = torch.tensor(mm.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(mm.std, dtype=torch.float32)[:, None, None]
    images = torch.stack([(torch.from_numpy(archive.image(int(p), modality, bands=mm.bands, normalized=False))
                           - mean) / std for p in pos])
    return EncoderMetric(EmbeddingNet(net.encoders[modality], net.heads[modality]), images, augment=augment)
