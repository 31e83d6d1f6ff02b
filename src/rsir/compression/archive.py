"""Compressed archives: ``rsir compress`` (an archive rewritten) and ``rsir ingest --codec`` (a source ingested
straight into bitstreams) share :class:`CompressedModality`, which checks the codec, codes bands and finishes
the archive's manifest; neither writes a raw archive first.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsir.compression.codec import CodecError, load_codec, read_codec_config
from rsir.compression.encoder import weights_digest
from rsir.data.archive import Archive, ArchiveWriter, check_output, decode_value, encode_value, open_archive
from rsir.data.bands import ModalitySpec, to_grid_batch
from rsir.data.formats import IngestReport, ingest


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


class CompressedModality:
    """One modality of an archive stored as bitstreams of a codec.

    Built from the modality's spec as the source has it: the codec is checked against it (bands in order, grid,
    dtype; CodecError naming the difference) before any caller writes anything. :meth:`code` turns items'
    {band: array} dicts into bitstreams (bands on the grid, bilinear as every reader sees them, normalised with
    the codec's statistics, analysis, rounding, entropy coding); :meth:`finish` makes an
    :class:`ArchiveWriter`'s manifest describe the compressed modality and copies the codec into the archive.
    """

    def __init__(self, codec_dir: str | Path, spec: ModalitySpec, what: str) -> None:
        self.codec = load_codec(codec_dir)
        self.source_spec = spec
        self.codec.check_spec(spec.bands, spec.grid, spec.dtype, what)
        self.name = spec.name
        self.spec = ModalitySpec(spec.name, list(spec.bands), {b: spec.grid for b in spec.bands}, spec.dtype,
                                 spec.unit, spec.grid, spec.description,
                                 {**spec.extra, "compressed": self.codec.meta.method})
        assert self.codec.path is not None
        self.entry = {"method": self.codec.meta.method, "dir": "codec", "sha256": weights_digest(self.codec.path),
                      "bits": self.codec.bits, "latent": [self.codec.net.cfg.latent, *self.codec.latent_shape]}
        self.raw_bytes = 0  # what the coded items would take as safetensors values (as ingested)
        self.coded_bytes = 0
        self.items = 0

    def code(self, items: list[dict[str, np.ndarray]], raw_bytes: list[int] | None = None) -> list[bytes]:
        """Bitstreams of items' {band: array} dicts (native resolution or grid); counts what it coded."""
        x = to_grid_batch(items, self.spec.bands, self.spec.grid)
        streams = self.codec.compress(self.codec.normalise(x))
        self.raw_bytes += sum(raw_bytes) if raw_bytes is not None else sum(len(encode_value(b)) for b in items)
        self.coded_bytes += sum(len(s) for s in streams)
        self.items += len(items)
        return streams

    def stats(self, band_stats: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
        """The modality's manifest statistics: min/max/count of the raw bands, mean/std of the codec (queries are
        normalised the way the codec was trained)."""
        return {b: {**band_stats.get(b, {"min": 0.0, "max": 0.0, "count": 0}), "mean": mu, "std": sd}
                for b, mu, sd in zip(self.codec.meta.bands, self.codec.meta.mean, self.codec.meta.std, strict=True)}

    def finish(self, writer: ArchiveWriter, stats: Mapping[str, Any]) -> None:
        """Before ``writer.close()``: the manifest names the codec, lists the modality at grid size with the
        codec's statistics (``stats``: every modality's as the source has them), and the codec is copied."""
        writer.specs[self.name] = self.spec
        writer.stats_override = {**stats, self.name: self.stats(stats.get(self.name, {}))}
        writer.compressed = {**writer.compressed, self.name: self.entry}
        assert self.codec.path is not None
        shutil.copytree(self.codec.path, writer.tmp / "codec")

    def report(self, path: Path, n_items: int) -> CompressReport:
        g = self.spec.grid
        return CompressReport(path, n_items, self.name, self.raw_bytes, self.coded_bytes, self.items * g[0] * g[1],
                              len(self.spec.bands))


def codec_compressor(codec_dir: str | Path) -> Callable[[Sequence[ModalitySpec], str], CompressedModality]:
    """For :func:`rsir.data.formats.ingest`: the codec's modality among a source's, stored as its bitstreams."""
    def make(modalities: Sequence[ModalitySpec], what: str) -> CompressedModality:
        mod = str(read_codec_config(codec_dir).get("modality"))
        spec = next((m for m in modalities if m.name == mod), None)
        if spec is None:
            raise CodecError(f"codec {codec_dir} codes {mod!r}, {what} has modalities {[m.name for m in modalities]}")
        return CompressedModality(codec_dir, spec, f"{what} ({mod})")
    return make


def ingest_with_codec(root: str | Path, fmt: str, out: str | Path, codec_dir: str | Path,
                      **kwargs: Any) -> IngestReport:
    """``rsir ingest --codec``: a source ingested straight into a compressed archive (the codec's modality as
    bitstreams, coded as :func:`compress_archive` codes them; no raw archive in between). A codec whose bands,
    grid or dtype differ from the source's is refused before anything is written."""
    return ingest(root, fmt, out, compressor=codec_compressor(codec_dir), **kwargs)


def compress_archive(archive: Archive | str | Path, codec_dir: str | Path, out: str | Path,
                     modality: str | None = None, overwrite: bool = False, progress: bool = True,
                     batch_size: int = 64) -> CompressReport:
    """Write ``out``: ``archive`` with ``modality`` (default: the codec's) as bitstreams of the codec."""
    src = archive if isinstance(archive, Archive) else open_archive(archive)
    spec = src.spec(modality or read_codec_config(codec_dir).get("modality"))
    if src.compressed(spec.name) is not None:
        raise CodecError(f"{src.path}: modality {spec.name} is already compressed")
    cm = CompressedModality(codec_dir, spec, f"archive {src.path} ({spec.name})")
    check_output(out, overwrite)
    writer = ArchiveWriter(out, list(src.modalities.values()), src.nomenclature,
                           str(src.manifest.get("source_format", "")), overwrite=overwrite,
                           info={**src.manifest.get("info", {}), "compressed_from": str(src.path)})
    try:
        others = [m for m in src.modalities if m != spec.name]
        rows: Iterable[int] = range(len(src))
        if progress:
            from tqdm import tqdm

            rows = tqdm(rows, desc=f"compress {spec.name}", unit="item", dynamic_ncols=True)
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            if not batch:  # an item without the modality, or the end, right after a full batch
                return
            raw = [src.stored(r["id"], spec.name) for r in batch]
            streams = cm.code([decode_value(v, f"{spec.name}/{r['id']}") for v, r in zip(raw, batch, strict=True)],
                              [len(v) for v in raw])
            for r, s in zip(batch, streams, strict=True):
                writer.add_stored(r, {spec.name: s, **{m: src.stored(r["id"], m) for m in others
                                                       if m in r["modalities"]}})
            batch.clear()

        for p in rows:  # in archive order; items without the compressed modality are copied as they are
            row = src.item(int(p))
            if spec.name in row["modalities"]:
                batch.append(row)
                if len(batch) >= batch_size:
                    flush()
            else:
                flush()
                writer.add_stored(row, {m: src.stored(row["id"], m) for m in others if m in row["modalities"]})
        flush()
        cm.finish(writer, src.stats)
        path = writer.close()
    except BaseException:
        writer.abort()
        raise
    return cm.report(path, len(writer.rows))
