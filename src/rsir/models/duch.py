"""DUCH networks and the search-side encoder of a trained DUCH model (images and sentences -> shared codes).

Hashing heads (one per modality) as in the authors' ``models/DUCH.py``: Linear(d -> hidden) - BatchNorm1d - ReLU -
Linear(hidden -> K) - tanh, hidden = 4096 by default. The discriminator: Linear(K -> 2K) - BatchNorm1d - ReLU -
Linear(2K -> 1), a logit. Inputs are frozen, L2-normalised features: the pooled features of an rsir image
model (``--features``) and the MiniLM sentence vectors of :mod:`rsir.text.sentences` (384-d, masked mean pooling).
Codes: bit k = h_k > 0 (sign of the tanh output), packed as :mod:`rsir.bits` lays them out.

A DUCH model directory: ``config.json`` (format ``rsir-duch``), ``heads.safetensors`` (both heads and the
discriminator), ``features/`` (the frozen image model, an rsir model directory) and ``augment.json`` (the
caption augmenter it was trained with). It is loaded for search through the encoder registry (type ``duch``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from rsir.bits import pack_bits
from rsir.models.io import load_model, load_weights, read_model_config, save_model
from rsir.models.net import RetrievalNet
from rsir.storage import atomic_dir, atomic_write_json

FORMAT = "rsir-duch"
VERSION = 1
CONFIG = "config.json"
WEIGHTS = "heads.safetensors"


class HashHead(nn.Module):
    """Linear - BatchNorm1d - ReLU - Linear - tanh: continuous codes in (-1, 1)^K."""

    def __init__(self, in_dim: int, bits: int, hidden: int = 4096) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, bits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(x))


class Discriminator(nn.Module):
    """Linear(K, 2K) - BatchNorm1d - ReLU - Linear(2K, 1): a logit of "this code comes from a caption"."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(bits, 2 * bits), nn.BatchNorm1d(2 * bits), nn.ReLU(inplace=True),
                                 nn.Linear(2 * bits, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).squeeze(1)


@dataclass
class DuchConfig:
    """Shapes of a DUCH model and what its inputs are."""

    image_dim: int
    text_dim: int = 384
    bits: int = 64
    hidden: int = 4096
    sentence_model: str = ""
    pooling: str = "mean"
    info: dict[str, Any] = field(default_factory=dict)


class DuchNet(nn.Module):
    """Image head, text head and discriminator."""

    def __init__(self, cfg: DuchConfig) -> None:
        super().__init__()
        self.config = cfg
        self.image_head = HashHead(cfg.image_dim, cfg.bits, cfg.hidden)
        self.text_head = HashHead(cfg.text_dim, cfg.bits, cfg.hidden)
        self.discriminator = Discriminator(cfg.bits)


def save_duch(path: str | Path, net: DuchNet, features: RetrievalNet, features_meta: Any,
              augmenter_json: dict[str, Any] | None = None) -> Path:
    """Write a DUCH model directory atomically."""
    path = Path(path).absolute()
    with atomic_dir(path) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        save_model(tmp / "features", features, features_meta)
        if augmenter_json is not None:
            atomic_write_json(tmp / "augment.json", augmenter_json)
        atomic_write_json(tmp / CONFIG, {"format": FORMAT, "version": VERSION, **asdict(net.config)})
    return path


def is_duch_dir(path: str | Path) -> bool:
    """Whether ``path`` is a DUCH model directory (by its config's format)."""
    p = Path(path) / CONFIG
    try:
        return bool(json.loads(p.read_text()).get("format") == FORMAT)
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def load_duch(path: str | Path, device: str | torch.device = "cpu") -> tuple[DuchNet, RetrievalNet, Any]:
    """(heads, frozen image model, its meta) of a DUCH model directory; clear errors when it is not one."""
    path = Path(path)
    cfg = read_model_config(path, "format", FORMAT, "DUCH")
    keys = {f for f in DuchConfig.__dataclass_fields__}
    net = DuchNet(DuchConfig(**{k: v for k, v in cfg.items() if k in keys}))
    load_weights(net, path, device, WEIGHTS)
    features, meta = load_model(path / "features", device)
    return net.to(device).eval(), features, meta


def codes(h: torch.Tensor | np.ndarray) -> np.ndarray:
    """Packed codes of continuous outputs: bit k = h_k > 0."""
    a = h.detach().cpu().numpy() if torch.is_tensor(h) else np.asarray(h)
    return pack_bits(a > 0)


class DuchEncoder:
    """Search side of a DUCH model: ``encode`` (normalised images -> packed codes), ``encode_text`` (sentences
    -> packed codes of the same space) and ``encode_text_query`` (one checked, cached query sentence)."""

    encoder_type = "duch"
    metric = "hamming"
    method = "duch"

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", batch_size: int = 64) -> None:
        self.path = Path(path)
        self.net, features, self.meta = load_duch(path, device)
        self.device = torch.device(device)
        self._fast = features.eval().to(self.device).for_inference()
        self._features = features
        self.modality = self.meta.modality
        self.dim = self.net.config.bits
        self.batch_size = batch_size
        self._sentences: Any = None

    # -- images -------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def image_features(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """L2-normalised frozen features of normalised N x C x H x W images."""
        x = torch.as_tensor(np.asarray(images, dtype=np.float32) if not torch.is_tensor(images) else images)
        if x.ndim != 4:
            raise ValueError(f"expected N x C x H x W images, got shape {tuple(x.shape)}")
        out = [self._fast(x[s:s + self.batch_size].to(self.device, torch.float32))["features"].float()
               for s in range(0, len(x), self.batch_size)]
        if not out:
            return torch.zeros((0, self._features.feature_dim))
        return F.normalize(torch.cat(out), dim=1)

    @torch.inference_mode()
    def image_raw(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.net.image_head(self.image_features(images)).cpu().numpy()

    def encode(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, (self.dim + 7) // 8), np.uint8)
        return codes(self.image_raw(images))

    # -- sentences ----------------------------------------------------------------------------------------------
    @property
    def sentences(self) -> Any:
        if self._sentences is None:
            from rsir.text.sentences import shared_encoder

            self._sentences = shared_encoder()
        return self._sentences

    @torch.inference_mode()
    def text_raw_from_vectors(self, vecs: np.ndarray) -> np.ndarray:
        v = torch.tensor(np.asarray(vecs, np.float32), device=self.device)
        if len(v) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.net.text_head(F.normalize(v, dim=1)).cpu().numpy()

    def encode_text(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Packed codes of sentences (batched through the sentence encoder)."""
        if not texts:
            return np.zeros((0, (self.dim + 7) // 8), np.uint8)
        return codes(self.text_raw_from_vectors(self.sentences.encode(texts, progress=progress)))

    def encode_text_query(self, text: str, max_chars: int = 512) -> np.ndarray:
        """Packed code of one query sentence (TextError when empty or longer than ``max_chars``)."""
        return codes(self.text_raw_from_vectors(self.sentences.encode_query(text, max_chars)[None]))[0]

    def save(self, path: str | Path) -> Path:
        """Copy the model directory (the INDEX directory keeps its own copy)."""
        net, features, meta = self.net, self._features, self.meta
        aug = None
        if (self.path / "augment.json").is_file():
            aug = json.loads((self.path / "augment.json").read_text())
        return save_duch(path, net, features, meta, aug)


def load_duch_encoder(path: str | Path, device: str | torch.device = "cpu") -> DuchEncoder:
    """The ``duch`` entry of the encoder registry."""
    return DuchEncoder(path, device)
