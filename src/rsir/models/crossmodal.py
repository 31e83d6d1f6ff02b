"""Cross-modal network (SS-CM-RSIR): one plain-torch ResNet per modality (not shared), a projection head per
modality into one shared K-dim space, tanh outputs h in (-1, 1)^K.

From the same model: float embeddings (L2-normalised h, compared by cosine) and K-bit binary codes (sign(h),
packed; bit k = h_k > 0). A model directory is the usual ``config.json`` + ``model.safetensors`` with
``"kind": "cross-modal"`` and the bands and statistics of every modality; ``rsir.models.encoder.load_model_encoder``
loads it as a :class:`CrossModalEncoder`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from rsir.bits import pack_bits
from rsir.data.bands import BandGroup, assemble, group_tensors
from rsir.errors import RsirError
from rsir.models.native_input import NativeStem
from rsir.models.resnet import ResNet, ResNetConfig, fuse_for_inference
from rsir.runtime import ordered_map

if TYPE_CHECKING:
    from rsir.data.archive import Archive
from rsir.storage import atomic_dir, atomic_write_json

KIND = "cross-modal"
OUTPUTS = ("codes", "float")


@dataclass
class CrossModalConfig:
    """Encoders per modality (in pair order: the first is z1 of the objective), head width, code length."""

    encoders: dict[str, ResNetConfig] = field(default_factory=dict)
    bits: int = 64
    hidden: int = 256
    method: str = "ss-cm"

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def to_json(self) -> dict[str, Any]:
        return {"encoders": {m: c.to_json() for m, c in self.encoders.items()}, "bits": self.bits,
                "hidden": self.hidden, "method": self.method}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CrossModalConfig:
        return cls({str(m): ResNetConfig.from_json(c) for m, c in d["encoders"].items()}, int(d["bits"]),
                   int(d.get("hidden", 256)), str(d.get("method", "ss-cm")))


class ProjectionHead(nn.Module):
    """g: Linear - ReLU - Linear(K) - tanh (the RSiM ports end their projections with tanh)."""

    def __init__(self, in_dim: int, bits: int, hidden: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, bits)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc2(F.relu(self.fc1(f))))


class CrossModalNet(nn.Module):
    """Per-modality encoder + projection head; ``forward(x, modality)`` returns the tanh outputs h."""

    def __init__(self, config: CrossModalConfig) -> None:
        super().__init__()
        if len(config.encoders) < 2:
            raise RsirError(f"a cross-modal network needs two modalities, got {config.modalities}")
        self.config = config
        self.encoders = nn.ModuleDict({m: ResNet(c) for m, c in config.encoders.items()})
        self.heads = nn.ModuleDict({m: ProjectionHead(c.feature_dim, config.bits, config.hidden)
                                    for m, c in config.encoders.items()})

    @property
    def modalities(self) -> list[str]:
        return self.config.modalities

    def forward(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        return self.heads[modality](self.encoders[modality](x))  # type: ignore[no-any-return]

    def for_inference(self) -> CrossModalNet:
        """An eval-mode copy with the batch norms folded into the convolutions; shares the heads."""
        fast = CrossModalNet.__new__(CrossModalNet)
        nn.Module.__init__(fast)
        fast.config = self.config
        fast.encoders = nn.ModuleDict({m: fuse_for_inference(e) for m, e in self.encoders.items()})  # type: ignore[arg-type]
        fast.heads = self.heads
        return fast.eval()


@dataclass
class ModalityMeta:
    """What encoding a modality's patches needs: band order and the training statistics."""

    bands: list[str]
    mean: list[float]
    std: list[float]
    patch_size: int


@dataclass
class CrossModalMeta:
    modalities: dict[str, ModalityMeta]
    home: str                       # the modality an index built from this model is "of" by default
    classes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def save_crossmodal(path: str | Path, net: CrossModalNet, meta: CrossModalMeta, output: str = "codes") -> Path:
    """Write a cross-modal model directory (atomically)."""
    from rsir.models.io import CONFIG, FORMAT, VERSION, WEIGHTS

    path = Path(path).absolute()
    with atomic_dir(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp / WEIGHTS))
        atomic_write_json(tmp / CONFIG, {
            "format": FORMAT, "version": VERSION, "kind": KIND, "net": net.config.to_json(), "output": output,
            "modality": meta.home, "modalities": {m: vars(mm) for m, mm in meta.modalities.items()},
            "classes": list(meta.classes), "info": meta.info})
    return path


def load_crossmodal(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[CrossModalNet, CrossModalMeta, str]:
    """Read a cross-modal model directory: (network, meta, default output)."""
    from rsir.models.io import load_weights, read_model_config

    cfg = read_model_config(path, "kind", KIND, "cross-modal")
    net = CrossModalNet(CrossModalConfig.from_json(cfg["net"]))
    load_weights(net, path, device)
    mods = {str(m): ModalityMeta([str(b) for b in d["bands"]], [float(v) for v in d["mean"]],
                                 [float(v) for v in d["std"]], int(d.get("patch_size", 0)))
            for m, d in cfg["modalities"].items()}
    meta = CrossModalMeta(mods, str(cfg.get("modality", net.modalities[-1])), list(cfg.get("classes", [])),
                          dict(cfg.get("info", {})))
    return net.to(device).eval(), meta, str(cfg.get("output", "codes"))


class CrossModalEncoder:
    """Encodes patches of any of the model's modalities into the shared space.

    ``output="codes"``: packed K-bit codes, bit k = h_k > 0 (sign of the tanh projection), Hamming distance;
    ``output="float"``: L2-normalised h (float32), inner product = cosine. ``modality`` is the default one
    (``encode(images)``); ``encode(images, modality)`` or :meth:`view` encode the others.
    """

    encoder_type = "model"

    def __init__(self, net: CrossModalNet, meta: CrossModalMeta, output: str = "codes", batch_size: int = 64,
                 device: str | torch.device = "cpu") -> None:
        if output not in OUTPUTS:
            raise RsirError(f"unknown output {output!r} (one of {', '.join(OUTPUTS)})")
        self.net = net.eval().to(device)
        self._fast = self.net.for_inference()
        self.meta = meta
        self.output = output
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.modalities = list(net.modalities)
        self.modality = meta.home
        self.method = net.config.method
        self.metric = "hamming" if output == "codes" else "ip"
        self.dim = net.config.bits
        self._native: dict[Any, NativeStem | None] = {}

    def _check(self, modality: str | None) -> str:
        m = (modality or self.modality).lower()
        if m not in self.modalities:
            raise RsirError(f"this {self.method} model encodes {', '.join(self.modalities)}, not {m}")
        return m

    @torch.inference_mode()
    def raw(self, images: np.ndarray | torch.Tensor, modality: str | None = None) -> np.ndarray:
        """The tanh outputs h (N x K float32) of normalised N x C x H x W images of ``modality``."""
        m = self._check(modality)
        x = torch.as_tensor(np.asarray(images, dtype=np.float32) if not torch.is_tensor(images) else images)
        want = self.net.config.encoders[m].in_channels
        if x.ndim != 4 or x.shape[1] != want:
            raise RsirError(f"{m} images must be N x {want} x H x W, got shape {tuple(x.shape)}")
        outs = [self._fast(x[s:s + self.batch_size].to(self.device, torch.float32), m).float().cpu()
                for s in range(0, len(x), self.batch_size)]
        return torch.cat(outs).numpy() if outs else np.zeros((0, self.dim), np.float32)

    def encode(self, images: np.ndarray | torch.Tensor, modality: str | None = None) -> np.ndarray:
        """Packed codes or normalised float embeddings, per ``output``."""
        return self._output(self.raw(images, modality))

    def native_stem(self, modality: str, layout: Sequence[tuple[tuple[int, int], list[int]]],
                    grid: tuple[int, int]) -> NativeStem | None:
        """The encoder of ``modality`` reading native-size band groups of ``layout`` (rsir.models.native_input),
        None when its stem cannot; built once per modality and layout."""
        key = (modality, tuple((tuple(s), tuple(i)) for s, i in layout), tuple(grid))
        if key not in self._native:
            self._native[key] = NativeStem.build(self._fast.encoders[modality], layout, grid)  # type: ignore[arg-type]
        return self._native[key]

    @torch.inference_mode()
    def encode_groups(self, groups: Sequence[BandGroup], grid: tuple[int, int], mean: Sequence[float] | None,
                      std: Sequence[float] | None, modality: str | None = None) -> np.ndarray:
        """:meth:`encode` of the batch that ``rsir.data.bands.assemble(groups, ...)`` would make, without making
        it when the stem can read the native-size groups itself (equal up to float rounding)."""
        m = self._check(modality)
        stem = self.native_stem(m, [(g.shape, g.idx) for g in groups], grid)
        n = len(groups[0].data) if groups else 0
        if stem is None or n == 0 or self.device.type != "cpu":
            channels = sum(len(g.idx) for g in groups)
            return self.encode(assemble(groups, n, channels, grid, mean=mean, std=std), m)
        h = self._fast.heads[m](stem.features(group_tensors(groups, mean, std)))
        return self._output(h.float().numpy())

    def _output(self, h: np.ndarray) -> np.ndarray:
        if self.output == "codes":
            return pack_bits(h > 0)
        n = np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(h / n, dtype=np.float32)

    def with_output(self, output: str) -> CrossModalEncoder:
        """The same model encoding ``codes`` or ``float`` embeddings."""
        return CrossModalEncoder(self.net, self.meta, output, self.batch_size, self.device)

    def view(self, modality: str) -> ModalityView:
        """An Encoder of one modality of this model (the protocol ``rsir.encoding.Encoder``)."""
        return ModalityView(self, self._check(modality))

    def save(self, path: str | Path) -> Path:
        return save_crossmodal(path, self.net, self.meta, self.output)


class ModalityView:
    """One modality of a :class:`CrossModalEncoder`, as a single-modality Encoder."""

    encoder_type = "model"

    def __init__(self, parent: CrossModalEncoder, modality: str) -> None:
        self.parent = parent
        self.modality = modality
        self.metric, self.dim, self.method = parent.metric, parent.dim, parent.method

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self.parent.encode(images, self.modality)

    def encode_groups(self, groups: Sequence[BandGroup], grid: tuple[int, int], mean: Sequence[float] | None,
                      std: Sequence[float] | None) -> np.ndarray:
        return self.parent.encode_groups(groups, grid, mean, std, self.modality)

    def encode_archive(self, arch: Archive, positions: Sequence[int], batch_size: int = 64,
                       progress: bool = False) -> Iterator[tuple[list[str], np.ndarray]]:
        """:func:`encode_archive` of this modality (what ``rsir index`` calls)."""
        return encode_archive(self, arch, positions, batch_size, progress)

    def save(self, path: str | Path) -> Path:
        return self.parent.save(path)


def load_crossmodal_encoder(path: str | Path, device: str | torch.device = "cpu",
                            output: str | None = None) -> CrossModalEncoder:
    """A cross-modal model directory as an encoder; ``output`` overrides the saved one (codes or float)."""
    net, meta, saved = load_crossmodal(path, device)
    return CrossModalEncoder(net, meta, output or saved, device=device)


def encode_archive(encoder: CrossModalEncoder | ModalityView, arch: Archive, positions: Sequence[int],
                   batch_size: int = 64, progress: bool = False, workers: int | None = None
                   ) -> Iterator[tuple[list[str], np.ndarray]]:
    """(ids, codes or embeddings) of the archive items at ``positions`` for one modality of a cross-modal model,
    in batches, in order: what ``encoder.encode`` gives for ``arch.batches(...)``, up to float rounding.

    Each batch is read as native-size band groups (``Archive.band_groups``) and encoded through the native stem
    (:mod:`rsir.models.native_input`), on ``workers`` threads (default: torch's thread count, at least 2, as
    reading used to run in a thread of its own beside the encoder), each running its torch operations on one
    thread: on two cores, two batches on one thread each beat one batch on two (rsir index's benchmark,
    BENCHMARKS.md).
    """
    view = encoder if isinstance(encoder, ModalityView) else encoder.view(encoder.modality)
    spec = arch.spec(view.modality)
    mean, std = arch.band_stats(spec.name, list(spec.bands))
    pos = [int(p) for p in positions]
    chunks: Iterable[list[int]] = [pos[s:s + batch_size] for s in range(0, len(pos), batch_size)]
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc=f"encoding {spec.name}", unit="batch")

    def job(chunk: list[int]) -> tuple[list[str], np.ndarray]:
        return [arch.ids[p] for p in chunk], view.encode_groups(arch.band_groups(chunk, spec.name), spec.grid,
                                                                mean, std)

    threads = torch.get_num_threads()
    n = workers or max(2, threads)
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield from ordered_map(job, chunks, n)
    finally:
        torch.set_num_threads(threads)
