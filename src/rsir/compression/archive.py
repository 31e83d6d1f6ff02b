"""``rsir compress``: rewrite an archive with one modality stored as bitstreams of a joint codec.

The codec is checked against the archive (bands in order, grid, dtype) before anything is written. Each item's
bands are read on the grid (bilinear, as every reader of the archive sees them), normalised with the codec's
statistics, analysed, rounded and entropy-coded; the bitstream replaces the safetensors value in the store.
Other modalities are copied as stored. The codec directory is copied into the new archive (``codec/``) and the
manifest's ``compressed`` entry names it with the sha256 of its weights; the compressed modality's statistics
are the codec's (queries are normalised the way the codec was trained). All bands of the compressed modality
are at the grid size afterwards (decoding gives the grid).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsir.compression.codec import CodecError, load_codec
from rsir.compression.encoder import weights_digest
from rsir.data.archive import Archive, ArchiveWriter, check_output, open_archive
from rsir.data.bands import ModalitySpec


@dataclass
class CompressReport:
    path: Path
    n_items: int
    modality: str
    raw_bytes: int  # stored values of the modality in the source archive
    compressed_bytes: int  # bitstreams written
    pixels: int  # grid pixels coded (items x H x W)
    bands: int

    @property
    def ratio(self) -> float:
        return self.raw_bytes / max(self.compressed_bytes, 1)

    @property
    def bpppb(self) -> float:
        """Bits per pixel per band of the bitstreams (over the grid)."""
        return 8.0 * self.compressed_bytes / max(self.pixels * self.bands, 1)


def compress_archive(archive: Archive | str | Path, codec_dir: str | Path, out: str | Path,
                     modality: str | None = None, overwrite: bool = False, progress: bool = True,
                     batch_size: int = 64) -> CompressReport:
    """Write ``out``: ``archive`` with ``modality`` (default: the codec's) as bitstreams of the codec."""
    src = archive if isinstance(archive, Archive) else open_archive(archive)
    codec = load_codec(codec_dir)
    spec = src.spec(modality or codec.meta.modality)
    if src.compressed(spec.name) is not None:
        raise CodecError(f"{src.path}: modality {spec.name} is already compressed")
    codec.check_spec(spec.bands, spec.grid, spec.dtype, f"archive {src.path} ({spec.name})")
    check_output(out, overwrite)
    new_spec = ModalitySpec(spec.name, list(spec.bands), {b: spec.grid for b in spec.bands}, spec.dtype, spec.unit,
                            spec.grid, spec.description, {**spec.extra, "compressed": codec.meta.method})
    specs = [new_spec if m == spec.name else s for m, s in src.modalities.items()]
    stats = dict(src.stats)
    src_stats = src.stats.get(spec.name, {})
    stats[spec.name] = {b: {**src_stats.get(b, {"min": 0.0, "max": 0.0, "count": 0}), "mean": mu, "std": sd}
                        for b, mu, sd in zip(codec.meta.bands, codec.meta.mean, codec.meta.std, strict=True)}
    assert codec.path is not None
    entry = {"method": codec.meta.method, "dir": "codec", "sha256": weights_digest(codec.path),
             "bits": codec.bits, "latent": [codec.net.cfg.latent, *codec.latent_shape]}
    writer = ArchiveWriter(out, specs, src.nomenclature, str(src.manifest.get("source_format", "")),
                           overwrite=overwrite, info={**src.manifest.get("info", {}), "compressed_from": str(src.path)},
                           stats=stats, compressed={spec.name: entry})
    raw_bytes = comp_bytes = 0
    try:
        have = np.array([spec.name in (mods if mods is not None else []) for mods in src.catalog["modalities"]])
        positions = np.flatnonzero(have)
        others = [m for m in src.modalities if m != spec.name]
        it = src.batches(batch_size, modality=spec.name, positions=positions.tolist(), normalized=False, progress=progress)
        done = 0
        for ids, x in it:
            streams = codec.compress(codec.normalise(x))
            for i, s in zip(ids, streams, strict=True):
                raw = src.stored(i, spec.name)
                raw_bytes += len(raw)
                comp_bytes += len(s)
                row = src.item(i)
                values = {spec.name: s}
                values.update({m: src.stored(i, m) for m in others if m in row["modalities"]})
                writer.add_stored(row, values)
            done += len(ids)
        for p in np.flatnonzero(~have):  # items without the compressed modality: copied as they are
            row = src.item(int(p))
            writer.add_stored(row, {m: src.stored(row["id"], m) for m in others if m in row["modalities"]})
        shutil.copytree(codec.path, writer.tmp / "codec")
        path = writer.close()
    except BaseException:
        writer.abort()
        raise
    return CompressReport(path, len(writer.rows), spec.name, raw_bytes, comp_bytes,
                          done * spec.grid[0] * spec.grid[1], len(spec.bands))
