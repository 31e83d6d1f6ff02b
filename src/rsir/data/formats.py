"""Source formats and the ingest driver: a reader turns a source into items, the driver writes an Archive.

A reader is a function ``(root: Path, options: dict) -> Source``. Readers live one per module in rsir.data and
are looked up lazily by name in FORMATS, so that importing rsir does not import rasterio and friends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.archive import ArchiveWriter
from rsir.data.bands import ModalitySpec
from rsir.data.nomenclature import Nomenclature
from rsir.errors import FormatError, ItemError
from rsir.registry import Registry

Arrays = dict[str, dict[str, np.ndarray]]


@dataclass
class SourceItem:
    """One item of a source: its id, catalog fields, and a loader for its pixels (may raise ItemError)."""

    id: str
    meta: dict[str, Any]
    load: Callable[[], Arrays]


@dataclass
class Source:
    """What a reader found: modalities, nomenclature, the items (lazy) and their number when known."""

    format: str
    modalities: list[ModalitySpec]
    nomenclature: Nomenclature
    items: Iterable[SourceItem]
    n_items: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    allow_nonfinite: bool = False


#: format name -> reader function "module:function" (imported when the format is used), with a description
FORMATS: Registry = Registry("format", {
    "reben": "rsir.data.reben:read_reben_lmdb",
    "reben-tiff": "rsir.data.reben:read_reben_tiff",
    "bigearthnet-v1": "rsir.data.bigearthnet_v1:read_bigearthnet_v1",
    "eurosat": "rsir.data.eurosat:read_eurosat",
    "ssl4eo": "rsir.data.ssl4eo:read_ssl4eo",
    "majortom": "rsir.data.majortom:read_majortom",
    "geotiff": "rsir.data.geotiff:read_geotiff_folder",
    "captions": "rsir.data.captions:read_captions",
    "levir-cd": "rsir.data.bitemporal:read_levir_cd",
    "levir-cc": "rsir.data.bitemporal:read_levir_cc",
}, FormatError, descriptions={
    "reben": "reBEN / BigEarthNet v2.0 DL-optimised LMDB + metadata.parquet (S2 + S1 pairs)",
    "reben-tiff": "reBEN raw GeoTIFF layout BigEarthNet-S2/<tile>/<patch>/<patch>_<band>.tif (+ S1, reference maps)",
    "bigearthnet-v1": "BigEarthNet v1 folders: one GeoTIFF per band + <patch>_labels_metadata.json (43 -> 19 classes)",
    "eurosat": "EuroSAT MS: 13-band 64x64 GeoTIFFs in class folders",
    "ssl4eo": "SSL4EO-S12: s1/s2a/s2c/<site>/<timestamp>/<band>.tif + metadata.json",
    "majortom": "Major-TOM grid cells tiled into patches (--patch-size), georeferencing kept",
    "geotiff": "a folder of multi-band GeoTIFFs; band names given with --bands",
    "captions": "caption corpora: RSICD / UCM / Sydney / RSITMD dataset JSON or the precomp text layout",
    "levir-cd": "bitemporal pairs A/ B/ label/ (LEVIR-CD, DSIFN)",
    "levir-cc": "LEVIR-CC change captions (JSON) with image pairs when present",
})


def get_reader(fmt: str) -> Callable[[Path, dict[str, Any]], Source]:
    """The reader function of a format name (clear error for an unknown one)."""
    return FORMATS.get(fmt)  # type: ignore[no-any-return]


def open_source(root: str | Path, fmt: str, options: Mapping[str, Any] | None = None) -> Source:
    """Run a format's reader on a source path."""
    root = Path(root)
    if not root.exists():
        raise FormatError(f"{root}: no such file or directory")
    return get_reader(fmt)(root, dict(options or {}))


@dataclass
class IngestReport:
    path: Path
    n_items: int
    skipped: list[tuple[str, str]]


def ingest(root: str | Path, fmt: str, out: str | Path, options: Mapping[str, Any] | None = None,
           skip_bad: bool = False, overwrite: bool = False, progress: bool = True,
           limit: int | None = None) -> IngestReport:
    """Read a source and write it as an archive; bad items raise, or are skipped and reported with skip_bad."""
    source = open_source(root, fmt, options)
    writer = ArchiveWriter(out, source.modalities, source.nomenclature, source.format, overwrite=overwrite,
                           info={"source": str(root), **source.info})
    items: Iterable[SourceItem] = source.items
    total = source.n_items if limit is None else min(limit, source.n_items or limit)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=total, desc=f"ingest {fmt}", unit="item", dynamic_ncols=True)
    try:
        for k, it in enumerate(items):
            if limit is not None and k >= limit:
                break
            try:
                # load() first: readers may add pixel-derived fields (cloud or change fraction) to it.meta
                arrays = it.load()
                writer.add(it.id, it.meta, arrays, allow_nonfinite=source.allow_nonfinite)
            except ItemError as e:
                if not skip_bad:
                    raise
                writer.skip(it.id, str(e))
            except (OSError, ValueError, KeyError) as e:
                err = ItemError(it.id, f"{type(e).__name__}: {e}", str(it.meta.get("source", "")) or None)
                if not skip_bad:
                    raise err from None
                writer.skip(it.id, str(err))
        path = writer.close()
    except BaseException:
        writer.abort()
        raise
    return IngestReport(path, len(writer.rows), [(s.item, s.problem) for s in writer.skipped])


def describe_formats() -> Sequence[tuple[str, str]]:
    """(name, description) of every format, for --help."""
    return [(k, FORMATS.describe(k)) for k in FORMATS]
