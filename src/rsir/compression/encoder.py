"""The search-side view of a joint codec: codes from pixels (queries) or straight from bitstreams (indexing).

rsir.encoding loads it through the registry entry "codec". :meth:`CodecEncoder.encode` takes normalised images
(uploads, queries by pixels): analysis transform, rounding, hashing head. :meth:`CodecEncoder.encode_stored`
takes the bitstreams of a compressed archive: entropy decoding to the integer latent and the hashing head; the
synthesis transform is never run. Both see the same integer latent, so an item's code is the same either way.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from rsir.compression.codec import WEIGHTS, Codec, load_codec
from rsir.errors import ItemError


def weights_digest(codec_dir: Path) -> str:
    """sha256 of a codec directory's weights (identifies the codec an archive was compressed with)."""
    return hashlib.sha256((Path(codec_dir) / WEIGHTS).read_bytes()).hexdigest()


class CodecEncoder:
    encoder_type = "codec"
    metric = "hamming"

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.modality = codec.meta.modality
        self.dim = codec.bits
        self.method = codec.meta.method
        self.digest = weights_digest(codec.path) if codec.path is not None else ""

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Packed codes of normalised N x C x H x W images."""
        x = np.asarray(images, np.float32)
        if x.ndim != 4:
            raise ValueError(f"expected N x C x H x W images, got shape {tuple(x.shape)}")
        return self.codec.hash_images(x)

    def reads_stored(self, archive: Any, modality: str) -> bool:
        """Whether the archive's modality holds bitstreams of this very codec (then encode_stored applies)."""
        entry = archive.compressed(modality)
        return bool(entry) and entry.get("sha256") == self.digest

    def encode_stored(self, ids: list[str], streams: list[bytes]) -> np.ndarray:
        """Packed codes straight from bitstreams (no synthesis); a bad stream is an ItemError naming the item."""
        latents = []
        for i, s in zip(ids, streams, strict=True):
            try:
                latents.append(self.codec.coder.decode(s, self.codec.latent_shape))
            except ValueError as e:
                raise ItemError(f"{self.modality}/{i}", f"compressed bitstream cannot be decoded: {e}") from None
        if not latents:
            return np.zeros((0, self.dim // 8), np.uint8)
        return self.codec.hash_latents(np.stack(latents))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if self.codec.path is None:
            raise ValueError("an unsaved codec cannot be stored with an index")
        shutil.copytree(self.codec.path, path)
        return path


def load_codec_encoder(path: str | Path) -> CodecEncoder:
    return CodecEncoder(load_codec(path))
