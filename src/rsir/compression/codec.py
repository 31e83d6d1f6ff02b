"""The joint compression and hashing network (SCI-CBIR, METHODS.md section 8) and its saved form.

Network (:class:`JointNet`):

- analysis transform g_a: three 5x5 stride-2 convolutions with GDN between them (Ballé et al. 2017/2018), from
  the C bands of a patch (normalised with the training statistics) to an M-channel latent y at 1/8 of the grid;
- quantisation: y + U(-1/2, 1/2) in training, rounding at coding time (values kept in the int16 range);
- entropy model: :class:`rsir.compression.entropy.FactorizedDensity`, the rate term and the coding tables;
- synthesis transform g_s: three 5x5 stride-2 transposed convolutions with inverse GDN back to C bands;
- hashing head on the quantised latent y_hat (never on the reconstruction), ``CodecConfig.head``:
  ``conv`` (the first codecs): 3x3 convolution, ReLU, global average pooling, linear to K bits, tanh;
  ``resnet``: stages of rsir's residual blocks (:func:`rsir.models.resnet.residual_stages`, ``head_blocks``
  blocks per stage from ``head_width`` channels, at the latent's resolution), global average pooling, linear to
  K bits, tanh: the part of rsir's ResNet that the analysis transform does not replace (g_a downsamples 8x like
  the ResNet's stem and second stage; what remains is its last stage). Code bit k = h_k > 0. A linear
  classifier on h serves the classification loss.

A codec directory holds ``config.json`` (format ``rsir-codec``: sizes, bits, modality, bands, dtype, grid,
per-band mean/std, classes, training record) and ``model.safetensors`` (weights and the coding tables).
:class:`Codec` is the numpy-facing wrapper used by the compressed archive and the encoder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from rsir.bits import pack_bits
from rsir.compression.entropy import INT16, BitstreamError, FactorizedDensity, LatentCoder
from rsir.errors import RsirError
from rsir.models.resnet import init_residual, residual_stages
from rsir.storage import atomic_dir, atomic_write_json

FORMAT = "rsir-codec"
VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
DOWNSCALE = 8


class CodecError(RsirError):
    """A codec directory that cannot be used (missing, foreign, or not matching an archive)."""


class GDN(torch.nn.Module):
    """Generalised divisive normalisation: y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2) (inverse: times)."""

    def __init__(self, ch: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = torch.nn.Parameter(torch.ones(ch))
        self.gamma = torch.nn.Parameter(0.1 * torch.eye(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta.abs() + 1e-6
        gamma = self.gamma.abs()
        norm = F.conv2d(x * x, gamma[:, :, None, None], beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


@dataclass
class CodecConfig:
    in_channels: int
    n_filters: int = 64
    latent: int = 32
    bits: int = 64
    n_classes: int = 19
    head_width: int = 128
    #: "conv" (one 3x3 convolution) or "resnet" (residual stages, see the module docstring)
    head: str = "conv"
    head_blocks: list[int] = field(default_factory=lambda: [2])


HEADS = ("conv", "resnet")


def hash_head(cfg: CodecConfig) -> torch.nn.Sequential:
    """The hashing head from the latent (M channels) to the K pre-tanh outputs (see the module docstring)."""
    m = cfg.latent
    if cfg.head == "conv":  # flat, so that the weight names of the first saved codecs stay valid
        trunk: list[torch.nn.Module] = [torch.nn.Conv2d(m, cfg.head_width, 3, 1, 1), torch.nn.ReLU()]
        width = cfg.head_width
    elif cfg.head == "resnet":
        stages = residual_stages(m, cfg.head_width, list(cfg.head_blocks))
        init_residual(stages)
        trunk, width = [stages], cfg.head_width * 2 ** (len(cfg.head_blocks) - 1)
    else:
        raise CodecError(f"unknown hashing head {cfg.head!r}: one of {', '.join(HEADS)}")
    return torch.nn.Sequential(*trunk, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(width, cfg.bits))


class JointNet(torch.nn.Module):
    """g_a, g_s, the factorised entropy model, the hashing head on y_hat and the classifier on the codes."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, n, m = cfg.in_channels, cfg.n_filters, cfg.latent
        self.g_a = torch.nn.Sequential(
            torch.nn.Conv2d(c, n, 5, 2, 2), GDN(n),
            torch.nn.Conv2d(n, n, 5, 2, 2), GDN(n),
            torch.nn.Conv2d(n, m, 5, 2, 2))
        self.g_s = torch.nn.Sequential(
            torch.nn.ConvTranspose2d(m, n, 5, 2, 2, output_padding=1), GDN(n, inverse=True),
            torch.nn.ConvTranspose2d(n, n, 5, 2, 2, output_padding=1), GDN(n, inverse=True),
            torch.nn.ConvTranspose2d(n, c, 5, 2, 2, output_padding=1))
        self.entropy = FactorizedDensity(m)
        self.head = hash_head(cfg)
        self.classifier = torch.nn.Linear(cfg.bits, cfg.n_classes)

    @staticmethod
    def quantise(y: torch.Tensor) -> torch.Tensor:
        """Rounding to the integers kept in the int16 range (coding time)."""
        return torch.round(y).clamp(INT16[0], INT16[1])

    def hash(self, y_hat: torch.Tensor) -> torch.Tensor:
        """tanh hash outputs in [-1, 1] from a (noisy or rounded) latent."""
        return torch.tanh(self.head(y_hat))

    def forward(self, x: torch.Tensor, noise: bool = True) -> dict[str, torch.Tensor]:
        y = self.g_a(x)
        y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5) if noise else self.quantise(y)
        h = self.hash(y_hat)
        return {"y_hat": y_hat, "x_hat": self.g_s(y_hat), "likelihoods": self.entropy.likelihood(y_hat),
                "h": h, "logits": self.classifier(h)}


@dataclass
class CodecMeta:
    """What the codec knows of the data it was trained on (to normalise, check and denormalise)."""

    modality: str = "s2"
    bands: list[str] = field(default_factory=list)
    dtype: str = "uint16"
    grid: tuple[int, int] = (120, 120)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    method: str = "sci-cbir"
    info: dict[str, Any] = field(default_factory=dict)


def save_codec(path: str | Path, net: JointNet, meta: CodecMeta) -> Path:
    """Write a codec directory atomically (the coding tables must exist: update_tables() after training)."""
    if not net.entropy.has_tables:
        net.entropy.update_tables()
    path = Path(path).absolute()
    with atomic_dir(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp / WEIGHTS))
        cfg = {"format": FORMAT, "version": VERSION, "net": asdict(net.cfg), **asdict(meta)}
        cfg["grid"] = list(meta.grid)
        atomic_write_json(tmp / CONFIG, cfg)
    return path


def read_codec_config(path: str | Path) -> dict[str, Any]:
    """The config.json of a codec directory (clear errors when missing or foreign)."""
    path = Path(path)
    cfg_path = path / CONFIG
    if not path.is_dir() or not cfg_path.exists():
        raise CodecError(f"{path}: not an rsir codec directory ({CONFIG} missing)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CodecError(f"{cfg_path}: unreadable codec config ({e})") from None
    if cfg.get("format") != FORMAT:
        raise CodecError(f"{path}: foreign format {cfg.get('format')!r}, expected {FORMAT!r}")
    if int(cfg.get("version", -1)) > VERSION:
        raise CodecError(f"{path}: codec version {cfg['version']} is newer than this rsir understands ({VERSION})")
    return cfg


def load_codec(path: str | Path) -> Codec:
    """Load a codec directory as a :class:`Codec`."""
    path = Path(path)
    cfg = read_codec_config(path)
    net = JointNet(CodecConfig(**cfg["net"]))
    try:
        state = load_file(str(path / WEIGHTS))
        # the coding tables' widths depend on the training: size the buffers before loading
        net.entropy.table = torch.zeros_like(state["entropy.table"])
        net.load_state_dict(state)
    except Exception as e:
        raise CodecError(f"{path}: cannot load the codec weights ({type(e).__name__}: {e})") from None
    meta = CodecMeta(**{k: cfg[k] for k in CodecMeta.__dataclass_fields__ if k in cfg})
    meta.grid = (int(meta.grid[0]), int(meta.grid[1]))
    return Codec(net.eval(), meta, path)


class Codec:
    """A trained codec: pixels <-> bitstreams, and hash codes straight from bitstreams (no synthesis)."""

    def __init__(self, net: JointNet, meta: CodecMeta, path: Path | None = None, batch_size: int = 64) -> None:
        self.net = net.eval()
        self.meta = meta
        self.path = path
        self.batch_size = batch_size
        self.coder = LatentCoder(net.entropy)
        self.latent_shape = (meta.grid[0] // DOWNSCALE, meta.grid[1] // DOWNSCALE)
        self._mean = np.asarray(meta.mean, np.float32).reshape(-1, 1, 1)
        std = np.asarray(meta.std, np.float32).reshape(-1, 1, 1)
        self._std = np.where(std > 0, std, 1.0).astype(np.float32)

    @property
    def bits(self) -> int:
        return int(self.net.cfg.bits)

    def check_spec(self, bands: list[str], grid: tuple[int, int], dtype: str, what: str) -> None:
        """Refuse data whose bands, grid or dtype differ from the codec's (CodecError naming the difference)."""
        if list(bands) != list(self.meta.bands):
            raise CodecError(f"codec {self.path} was trained on bands {self.meta.bands}, {what} has {list(bands)}")
        if tuple(grid) != tuple(self.meta.grid):
            raise CodecError(f"codec {self.path} codes {self.meta.grid[0]}x{self.meta.grid[1]} patches, {what} "
                             f"has a {grid[0]}x{grid[1]} grid")
        if dtype != self.meta.dtype:
            raise CodecError(f"codec {self.path} codes {self.meta.dtype} bands, {what} stores {dtype}")

    # -- pixels -> latents -> bitstreams --------------------------------------------------------------------
    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Raw N x C x H x W band values (on the grid) normalised with the codec's statistics."""
        return ((np.asarray(raw, np.float32) - self._mean) / self._std).astype(np.float32)

    @torch.inference_mode()
    def analyse(self, x: np.ndarray) -> np.ndarray:
        """Integer latents N x M x h x w (int32) of normalised N x C x H x W images."""
        outs = []
        for s in range(0, len(x), self.batch_size):
            xb = torch.as_tensor(np.asarray(x[s:s + self.batch_size], np.float32))
            outs.append(self.net.quantise(self.net.g_a(xb)).to(torch.int32).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.net.cfg.latent, *self.latent_shape), np.int32)

    def compress(self, x: np.ndarray) -> list[bytes]:
        """One bitstream per normalised image."""
        return [self.coder.encode(s) for s in self.analyse(x)]

    def latents(self, streams: list[bytes]) -> np.ndarray:
        """Entropy-decode bitstreams to their integer latents (BitstreamError for a bad one)."""
        return np.stack([self.coder.decode(b, self.latent_shape) for b in streams])

    # -- latents -> codes (no synthesis) --------------------------------------------------------------------
    @torch.inference_mode()
    def hash_latents(self, sym: np.ndarray) -> np.ndarray:
        """Packed uint8 codes (bit k = h_k > 0) of integer latents."""
        outs = []
        for s in range(0, len(sym), self.batch_size):
            h = self.net.hash(torch.as_tensor(np.asarray(sym[s:s + self.batch_size], np.float32)))
            outs.append(pack_bits(h.numpy() > 0))
        return np.concatenate(outs) if outs else np.zeros((0, self.bits // 8), np.uint8)

    def hash_images(self, x: np.ndarray) -> np.ndarray:
        """Codes of normalised images: analysis, rounding, head (the same latent a bitstream holds)."""
        return self.hash_latents(self.analyse(x))

    def hash_streams(self, streams: list[bytes]) -> np.ndarray:
        """Codes straight from bitstreams: entropy decoding and the head, never the synthesis transform."""
        return self.hash_latents(self.latents(streams))

    # -- latents -> pixels ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def synthesise(self, sym: np.ndarray) -> np.ndarray:
        """Normalised reconstructions N x C x H x W of integer latents."""
        outs = []
        for s in range(0, len(sym), self.batch_size):
            outs.append(self.net.g_s(torch.as_tensor(np.asarray(sym[s:s + self.batch_size], np.float32))).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, len(self.meta.bands), *self.meta.grid), np.float32)

    def denormalise(self, x: np.ndarray) -> np.ndarray:
        """Normalised images back to band values in the codec's dtype (rounded, clipped to its range)."""
        raw = np.asarray(x, np.float32) * self._std + self._mean
        dt = np.dtype(self.meta.dtype)
        if dt.kind in "ui":
            info = np.iinfo(dt)
            return np.clip(np.rint(raw), info.min, info.max).astype(dt)
        return raw.astype(dt)

    def decode_latents(self, sym: np.ndarray) -> list[dict[str, np.ndarray]]:
        """{band: array} on the grid, in the codec's dtype, of each integer latent (synthesis in batches)."""
        imgs = self.denormalise(self.synthesise(sym))
        return [{b: img[k] for k, b in enumerate(self.meta.bands)} for img in imgs]

    def decode(self, stream: bytes) -> dict[str, np.ndarray]:
        """{band: array} on the grid, in the codec's dtype, of one bitstream."""
        return self.decode_latents(self.latents([stream]))[0]


__all__ = ["BitstreamError", "Codec", "CodecConfig", "CodecError", "CodecMeta", "JointNet", "load_codec",
           "read_codec_config", "save_codec"]
