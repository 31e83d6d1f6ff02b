"""The classic encoder: hand-crafted features (standardised with training statistics) + a classic hasher.

``rsir index ARCHIVE --method M`` fits it on (a sample of) the training split; ``M`` is a registered hasher
(:data:`rsir.hashing.HASHERS`) or ``float`` for the standardised features themselves. Saved into an INDEX
directory's ``encoder/`` and loaded back by the ``classic`` entry of :data:`rsir.encoding.ENCODERS`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from rsir.encoding import EncoderError
from rsir.hashing import HASHERS, Hasher, hasher_class
from rsir.hashing.features import FeatureExtractor
from rsir.storage import atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    from rsir.data.archive import Archive

#: the feature vectors themselves, searched by Euclidean distance (the float baseline)
FLOAT = "float"
FLOAT_FIT_SAMPLE = 20000


def classic_methods() -> list[str]:
    """Every ``rsir index --method`` choice: the registered hashers, then ``float``."""
    return [*HASHERS.names(), FLOAT]


def default_fit_sample(method: str) -> int:
    """Training items a classic method is fitted on unless told otherwise."""
    return FLOAT_FIT_SAMPLE if method == FLOAT else hasher_class(method).fit_sample


class FeatureHashEncoder:
    """Hand-crafted features (standardised with training statistics) + a classic hasher, or the features alone."""

    encoder_type: str = "classic"
    fit_items: int | None = None  # training items the features and the hasher were fitted on

    def __init__(self, modality: str, extractor: FeatureExtractor, hasher: Hasher | None) -> None:
        self.modality = modality
        self.extractor = extractor
        self.hasher = hasher
        self.method = hasher.name if hasher is not None else FLOAT
        self.metric = "hamming" if hasher is not None else "l2"
        self.dim = hasher.bits if hasher is not None else extractor.dim

    @classmethod
    def fit(cls, archive: Archive, method: str, bits: int, modality: str, seed: int = 0,
            sample: int | None = None, progress: bool = False) -> FeatureHashEncoder:
        """Fit features + hasher on (a sample of) the training split; KSLSH also reads the training labels."""
        if method not in classic_methods():
            raise EncoderError(f"unknown method {method!r} (choose from {', '.join(classic_methods())})")
        if sample is not None and sample < 2:
            raise EncoderError(f"the fit sample must be at least 2 items, got {sample}")
        spec = archive.spec(modality)
        pos = archive.split_positions("train")
        if pos.size == 0:
            pos = archive.split_positions(None)
        cap = sample or default_fit_sample(method)
        if pos.size > cap:
            pos = np.sort(np.random.default_rng(seed).choice(pos, cap, replace=False))
        mean, std = archive.band_stats(spec.name, spec.bands)
        extractor = FeatureExtractor(spec.bands, mean, std)
        raw = np.concatenate([extractor.raw(x) for _, x in archive.batches(256, modality=spec.name,
                                                                           positions=pos.tolist(),
                                                                           progress=progress)])
        extractor.fit(raw)
        feats = ((raw - extractor.mu) / extractor.sd).astype(np.float32)
        hasher = None
        if method != FLOAT:
            hasher = hasher_class(method)(bits, seed=seed)
            labels = archive.labels[pos] if hasher.supervised else None
            hasher.fit(feats, labels)
        enc = cls(spec.name, extractor, hasher)
        enc.fit_items = int(pos.size)
        return enc

    def features(self, images: np.ndarray) -> np.ndarray:
        """Standardised hand-crafted features (N, F) float32."""
        return self.extractor(images)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Packed codes (hashers) or float32 standardised features ("float")."""
        f = self.features(images)
        return f if self.hasher is None else self.hasher.encode(f)

    def save(self, path: str | Path) -> Path:
        """Write encoder.json, features.safetensors and hasher/ into directory ``path`` (inside an INDEX
        directory that is itself written atomically)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.hasher is not None:
            self.hasher.save(path / "hasher")
        atomic_write_bytes(path / "features.safetensors", st_save(self.extractor.state()))
        atomic_write_json(path / "encoder.json", {"type": self.encoder_type, "modality": self.modality,
                                                  "bands": self.extractor.bands, "method": self.method,
                                                  "metric": self.metric, "dim": self.dim})
        return path


def load_feature_hash_encoder(path: str | Path) -> FeatureHashEncoder:
    """Load a FeatureHashEncoder saved by ``FeatureHashEncoder.save``."""
    path = Path(path)
    try:
        meta = json.loads((path / "encoder.json").read_text())
        arrays = st_load((path / "features.safetensors").read_bytes())
    except (OSError, ValueError) as e:
        raise EncoderError(f"{path}: damaged classic encoder ({e})") from None
    extractor = FeatureExtractor.from_state(meta["bands"], arrays)
    hasher = Hasher.load(path / "hasher") if meta["method"] != FLOAT else None
    return FeatureHashEncoder(meta["modality"], extractor, hasher)
