"""INDEX directories: build one from an archive (fit or load an encoder, encode every item, index the codes) and
open one again.

An INDEX directory holds ``manifest.json`` (format ``rsir-index-dir``, version, archive path and its manifest's
``created`` stamp, modality, method, encoder type, metric, dim, kind, counts, build time), ``encoder/`` (the
encoder's saved state, :mod:`rsir.encoding`) and ``index/`` (an :mod:`rsir.index` Index). It is written with
:func:`rsir.storage.atomic_dir`, so a half-built INDEX directory never looks complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.archive import Archive, open_archive
from rsir.encoding import Encoder, load_encoder
from rsir.errors import NotFoundError, RsirError
from rsir.hashing.encoder import FeatureHashEncoder
from rsir.index import Index, make_index, open_index
from rsir.runtime import prefetch, tune_allocator
from rsir.storage import StorageError, atomic_dir, read_manifest, utc_stamp, write_manifest

INDEX_DIR_FORMAT = "rsir-index-dir"
# version 2 dropped the duplicate "bits" (= "dim" for hamming) and renamed "index_kind" to "kind"
INDEX_DIR_VERSION = 2
DEFAULT_BITS = 64


class PipelineError(RsirError):
    """A pipeline step was given something it cannot use (bad method, bits, modality, index directory)."""


@dataclass
class IndexDir:
    """An opened INDEX directory: its manifest, Index and Encoder."""

    path: Path
    manifest: dict[str, Any]
    index: Index
    encoder: Encoder

    @staticmethod
    def read_manifest(path: str | Path) -> dict[str, Any]:
        """The manifest of an INDEX directory (format and version checked), without loading anything else."""
        try:
            return read_manifest(path, INDEX_DIR_FORMAT, INDEX_DIR_VERSION, PipelineError,
                                 what="index directory", verify=False)
        except StorageError as e:
            raise PipelineError(str(e)) from None

    @classmethod
    def open(cls, path: str | Path, model: str | Path | None = None) -> IndexDir:
        """Open an INDEX directory; ``model`` (a model directory) replaces the saved encoder and must produce the
        vectors the index holds."""
        path = Path(path)
        manifest = cls.read_manifest(path)
        index = open_index(path / "index")
        encoder = load_encoder(str(manifest.get("encoder_type", "classic")), path / "encoder")
        if model is not None:
            encoder = load_encoder("model", model)
            if (encoder.metric, encoder.dim) != (index.metric, index.dim):
                raise PipelineError(f"model {model} makes {encoder.dim}-dim {encoder.metric} vectors, the index "
                                    f"holds {index.dim}-dim {index.metric} vectors")
        return cls(path, manifest, index, encoder)

    @property
    def modality(self) -> str:
        """The modality whose codes the index holds."""
        return str(self.manifest.get("modality") or self.encoder.modality)

    @property
    def method(self) -> str:
        """What made the vectors (hasher name, ``float`` or the model's method)."""
        return str(self.manifest.get("method") or getattr(self.encoder, "method", "index"))

    @property
    def kind(self) -> str:
        """The index's search structure (flat, ivf, mih)."""
        return str(self.manifest.get("kind", self.manifest.get("index_kind", "flat")))

    @property
    def modalities(self) -> list[str]:
        """Modalities whose codes the index holds (a cross-modal index keys them ``<modality>/<id>``)."""
        mods = self.manifest.get("modalities")
        return [str(m).lower() for m in mods] if mods else [self.modality.lower()]

    def vectors(self, ids: list[str], modality: str | None = None) -> np.ndarray:
        """Stored codes / vectors of archive items, in the order given, for one of the indexed modalities."""
        mods = self.modalities
        modality = (modality or mods[0]).lower()
        if modality not in mods:
            raise PipelineError(f"{self.path} holds codes of {', '.join(mods)}, not {modality}")
        keys = [f"{modality}/{i}" for i in ids] if len(mods) > 1 else [str(i) for i in ids]
        try:
            return np.asarray(self.index.get(np.array(keys, dtype=object)))
        except NotFoundError as e:
            raise PipelineError(f"{self.path} lacks an archive item ({e}); was it built from this archive?"
                                ) from None

    def archive(self, override: Archive | str | Path | None = None) -> Archive | None:
        """The archive it was built from (``override`` if given), or None when that path is gone."""
        if isinstance(override, Archive):
            return override
        if override is not None:
            return open_archive(override)
        recorded = self.manifest.get("archive")
        return open_archive(recorded) if recorded and Path(recorded).is_dir() else None


def build_index(archive: Archive | str | Path, out: str | Path, method: str = "lsh", bits: int | None = None,
                modality: str | None = None, kind: str = "flat", seed: int = 0, encoder: Encoder | None = None,
                progress: bool = True, batch_size: int = 64, fit_sample: int | None = None) -> Path:
    """Fit a classic encoder (unless ``encoder`` is given), encode every archive item, index the codes and write
    an INDEX directory at ``out``.

    ``bits`` is the code length of a classic hasher (default 64); with a given encoder it may only repeat the
    encoder's own length. ``fit_sample`` caps the training items a classic method is fitted on.
    """
    t0 = time.perf_counter()
    arch = archive if isinstance(archive, Archive) else open_archive(archive)
    if encoder is None:
        encoder = FeatureHashEncoder.fit(arch, method, bits or DEFAULT_BITS, modality or arch.primary_modality,
                                         seed=seed, sample=fit_sample, progress=progress)
    elif bits is not None and encoder.metric == "hamming" and bits != encoder.dim:
        raise PipelineError(f"--bits {bits} does not match the model, which makes {encoder.dim}-bit codes "
                            "(leave --bits out with --model)")
    if modality is not None and modality != encoder.modality:
        raise PipelineError(f"--modality {modality} does not match the encoder, which encodes {encoder.modality}")
    mod = encoder.modality
    arch.spec(mod)  # clear error when the archive lacks the encoder's modality
    index = make_index(encoder.metric, encoder.dim, kind, seed=seed)
    all_ids: list[str] = []
    chunks: list[np.ndarray] = []
    tune_allocator()
    # reading the next batch (LMDB, decoding, resampling) overlaps with encoding this one
    reads_stored = getattr(encoder, "reads_stored", None)
    from_stream = bool(reads_stored is not None and reads_stored(arch, mod))
    if from_stream:
        # a compressed archive of this codec: codes from the bitstreams, no pixels are reconstructed
        for ids, streams in prefetch(arch.stored_batches(batch_size, modality=mod), depth=2):
            all_ids += ids
            chunks.append(encoder.encode_stored(ids, streams))  # type: ignore[attr-defined]
    else:
        for ids, x in prefetch(arch.batches(batch_size, modality=mod, progress=progress), depth=2):
            all_ids += ids
            chunks.append(encoder.encode(x))
    if chunks:
        index.add(np.array(all_ids, dtype=object), np.concatenate(chunks))
    with atomic_dir(out) as tmp:
        encoder.save(tmp / "encoder")
        index.save(tmp / "index")
        write_manifest(tmp, {
            "format": INDEX_DIR_FORMAT, "version": INDEX_DIR_VERSION,
            "archive": str(arch.path.resolve()), "archive_created": arch.manifest.get("created"),
            "modality": mod, "method": encoder.method, "encoder_type": encoder.encoder_type,
            "metric": encoder.metric, "dim": encoder.dim, "kind": kind, "count": len(index),
            "archive_items": len(arch), "from_stream": from_stream, "seed": seed, "fit_items": getattr(encoder, "fit_items", None),
            "build_seconds": round(time.perf_counter() - t0, 3), "created": utc_stamp(),
        })
    return Path(out)
