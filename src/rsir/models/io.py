"""Save and load a model directory: config.json + model.safetensors (+ band statistics, band order, modality).

A directory is written with rsir.storage.atomic_dir (a hidden sibling renamed into place), so a crash never leaves a half-written
model that looks complete, and an existing model is only replaced once the new one is finished.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from rsir.errors import RsirError
from rsir.models.net import NetConfig, RetrievalNet
from rsir.storage import atomic_dir, atomic_write_json

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
FORMAT = "rsir-model"
VERSION = 1


@dataclass
class ModelMeta:
    """What a model needs to know about the data it was trained on, to encode new patches the same way."""

    modality: str = "s2"
    bands: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    patch_size: int = 0
    classes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def read_model_config(path: str | Path, key: str, expected: str, what: str) -> dict[str, Any]:
    """The config.json of a model directory whose ``key`` must be ``expected`` (e.g. format rsir-duch); one-line
    errors naming the directory when it is missing, unreadable or of another kind of model."""
    path = Path(path)
    try:
        cfg = json.loads((path / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RsirError(f"{path}: not a {what} model directory ({CONFIG}: {e})") from None
    if not isinstance(cfg, dict) or cfg.get(key) != expected:
        got = cfg.get(key) if isinstance(cfg, dict) else None
        raise RsirError(f"{path}: not a {what} model ({key} {got!r}, expected {expected!r})")
    return cfg


def load_weights(net: torch.nn.Module, path: str | Path, device: str | torch.device = "cpu",
                 name: str = WEIGHTS) -> None:
    """Load the weights file ``name`` of a model directory into ``net``; a clear error when they do not fit."""
    weights = Path(path) / name
    try:
        net.load_state_dict(load_file(str(weights), device=str(device)))
    except Exception as e:
        raise RsirError(f"{weights}: weights do not fit the config ({type(e).__name__}: {e})") from None


def save_model(path: str | Path, net: RetrievalNet, meta: ModelMeta) -> Path:
    """Write ``net`` and ``meta`` as a model directory at ``path`` (atomically)."""
    path = Path(path).absolute()
    with atomic_dir(path) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        cfg = {"format": FORMAT, "version": VERSION, "net": net.config.to_json(), "modality": meta.modality,
               "bands": list(meta.bands), "mean": [float(v) for v in meta.mean],
               "std": [float(v) for v in meta.std], "patch_size": int(meta.patch_size),
               "classes": list(meta.classes), "info": meta.info}
        atomic_write_json(tmp / CONFIG, cfg)
    return path


def model_kind(path: str | Path) -> str:
    """``"cross-modal"`` for an SS-CM model directory, ``"single"`` otherwise (also when unreadable: the loader
    that follows names the problem)."""
    try:
        return str(json.loads((Path(path) / CONFIG).read_text()).get("kind", "single"))
    except (OSError, ValueError, AttributeError):
        return "single"


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[RetrievalNet, ModelMeta]:
    """Read a model directory; clear errors when it is missing, partial or of a foreign format."""
    path = Path(path)
    cfg_path = path / CONFIG
    if not path.is_dir() or not cfg_path.exists():
        raise RsirError(f"{path}: not an rsir model directory ({CONFIG} missing)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RsirError(f"{cfg_path}: unreadable model config ({e})") from None
    if cfg.get("format") != FORMAT:
        raise RsirError(f"{path}: foreign model format {cfg.get('format')!r}, expected {FORMAT!r}")
    if not (path / WEIGHTS).exists():
        raise RsirError(f"{path}: {WEIGHTS} missing")
    if cfg.get("kind") == "cross-modal":
        raise RsirError(f"{path}: a cross-modal model (load it with rsir.models.crossmodal.load_crossmodal)")
    net = RetrievalNet(NetConfig.from_json(cfg["net"]))
    try:
        state = load_file(str(path / WEIGHTS), device=str(device))
        net.load_state_dict(state)
    except Exception as e:
        raise RsirError(f"{path / WEIGHTS}: weights do not fit the config ({type(e).__name__}: {e})") from None
    meta = ModelMeta(cfg.get("modality", "s2"), list(cfg.get("bands", [])), list(cfg.get("mean", [])),
                     list(cfg.get("std", [])), int(cfg.get("patch_size", 0)), list(cfg.get("classes", [])),
                     dict(cfg.get("info", {})))
    return net.to(device).eval(), meta
