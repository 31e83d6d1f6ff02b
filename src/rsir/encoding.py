"""What turns an image into a vector for an index: the Encoder protocol and the registry of encoder types.

An INDEX directory stores its encoder in ``encoder/`` and names its type in the manifest (``encoder_type``);
:func:`load_encoder` loads it back through :data:`ENCODERS`, importing the implementation only then (torch only
for trained models). Two types exist: ``classic`` (hand-crafted features + a classic hasher,
:mod:`rsir.hashing.encoder`) and ``model`` (a trained network, :mod:`rsir.models.encoder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from rsir.errors import RsirError
from rsir.registry import Registry


class EncoderError(RsirError):
    """An encoder cannot be loaded or was given images it cannot encode."""


class Encoder(Protocol):
    """Maps N x C x H x W normalised images (as ``Archive.image`` returns) to codes or float vectors."""

    modality: str
    metric: str  # "hamming" (packed uint8 codes) | "ip" | "l2" (float32)
    dim: int  # bits for hamming, dimensions for float
    method: str  # what made the vectors, recorded in the index manifest and eval tables
    encoder_type: str  # the ENCODERS name that loads it back

    def encode(self, images: np.ndarray) -> np.ndarray: ...

    def save(self, path: str | Path) -> Path: ...


#: encoder type -> "module:function(path) -> Encoder"
ENCODERS: Registry = Registry("encoder type", {
    "classic": "rsir.hashing.encoder:load_feature_hash_encoder",
    "model": "rsir.models.encoder:load_model_encoder",
    "duch": "rsir.models.duch:load_duch_encoder",
    "text-itsr": "rsir.methods.text_itsr:load_change_encoder",
    "codec": "rsir.compression.encoder:load_codec_encoder",
}, EncoderError)


def load_encoder(encoder_type: str, path: str | Path) -> Encoder:
    """Load a saved encoder of a registered type."""
    return ENCODERS.get(encoder_type)(path)  # type: ignore[no-any-return]


#: a model directory's config.json "format" -> the encoder type that loads it (others load as "model")
MODEL_FORMATS = {"rsir-change-model": "text-itsr", "rsir-duch": "duch", "rsir-codec": "codec"}


def model_encoder_type(path: str | Path) -> str:
    """The encoder type of a model directory, from the "format" of its config.json."""
    import json

    try:
        fmt = json.loads((Path(path) / "config.json").read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return "model"  # the "model" loader explains what is wrong with the directory
    return MODEL_FORMATS.get(str(fmt), "model")
