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

from rsir.data.archive import ArchiveWriter, check_output
from rsir.data.bands import ModalitySpec
from rsir.data.nomenclature import Nomenclature
from rsir.data.options import ReaderOption, describe_options, parse_reader_options
from rsir.errors import FormatError, ItemError, RsirError
from rsir.leftovers import human_size
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
    #: what the reader decided that the user should know (a sibling folder used, split lists found)
    notes: list[str] = field(default_factory=list)
    #: what the user probably did not mean (a modality left out, no split lists): printed, kept in the manifest
    warnings: list[str] = field(default_factory=list)


#: format name -> (reader module, reader function, the module's tuple of declared options, description)
_FORMATS: dict[str, tuple[str, str, str, str]] = {
    "reben": ("rsir.data.reben", "read_reben_lmdb", "LMDB_OPTIONS",
              "reBEN / BigEarthNet v2.0 DL-optimised LMDB + metadata.parquet (S2 + S1 pairs)"),
    "reben-tiff": ("rsir.data.reben", "read_reben_tiff", "TIFF_OPTIONS",
                   "reBEN raw GeoTIFF layout BigEarthNet-S2/<tile>/<patch>/<patch>_<band>.tif (+ S1, reference maps)"),
    "bigearthnet-v1": ("rsir.data.bigearthnet_v1", "read_bigearthnet_v1", "OPTIONS",
                       "BigEarthNet v1 folders: one GeoTIFF per band + <patch>_labels_metadata.json (43 -> 19 classes)"),
    "eurosat": ("rsir.data.eurosat", "read_eurosat", "OPTIONS", "EuroSAT MS: 13-band 64x64 GeoTIFFs in class folders"),
    "ssl4eo": ("rsir.data.ssl4eo", "read_ssl4eo", "OPTIONS",
               "SSL4EO-S12: s1/s2a/s2c/<site>/<timestamp>/<band>.tif + metadata.json"),
    "majortom": ("rsir.data.majortom", "read_majortom", "OPTIONS",
                 "Major-TOM grid cells tiled into patches (--option patch-size=N), georeferencing kept"),
    "geotiff": ("rsir.data.geotiff", "read_geotiff_folder", "OPTIONS",
                "a folder of multi-band GeoTIFFs; band names given with --option bands=..."),
    "stac": ("rsir.data.stac", "read_stac", "OPTIONS",
             "a local STAC catalog / collection / ItemCollection of Sentinel-2 or Sentinel-1 COG / GeoTIFF assets, "
             "tiled into patches (--option patch-size=N, 0 keeps items whole)"),
    "captions": ("rsir.data.captions", "read_captions", "OPTIONS",
                 "caption corpora: RSICD / UCM / Sydney / RSITMD dataset JSON or the precomp text layout"),
    "levir-cd": ("rsir.data.bitemporal", "read_levir_cd", "CD_OPTIONS", "bitemporal pairs A/ B/ label/ (LEVIR-CD, DSIFN)"),
    "levir-cc": ("rsir.data.bitemporal", "read_levir_cc", "CC_OPTIONS",
                 "LEVIR-CC change captions (JSON) with image pairs when present"),
    "rsir-archive": ("rsir.data.rsir_archive", "read_rsir_archive", "OPTIONS",
                     "another rsir archive, a compressed one (rsir compress) decoded back to raw bands"),
}
#: format name -> reader function, imported when the format is used
FORMATS: Registry = Registry("format", {n: f"{m}:{r}" for n, (m, r, _, _) in _FORMATS.items()}, FormatError,
                             descriptions={n: d for n, (_, _, _, d) in _FORMATS.items()})
#: format name -> the options its reader declares
FORMAT_OPTIONS: Registry = Registry("format", {n: f"{m}:{o}" for n, (m, _, o, _) in _FORMATS.items()}, FormatError)


def get_reader(fmt: str) -> Callable[[Path, dict[str, Any]], Source]:
    """The reader function of a format name (clear error for an unknown one)."""
    return FORMATS.get(fmt)  # type: ignore[no-any-return]


def format_options(fmt: str) -> tuple[ReaderOption, ...]:
    """The options the reader of ``fmt`` declares."""
    return tuple(FORMAT_OPTIONS.get(fmt))


def open_source(root: str | Path, fmt: str, options: Mapping[str, Any] | None = None) -> Source:
    """Run a format's reader on a source path, with its options checked and typed (unknown keys are errors)."""
    root = Path(root).expanduser()
    parsed = parse_reader_options(fmt, format_options(fmt), options)
    if not root.exists():
        raise FormatError(f"{root}: no such file or directory")
    return get_reader(fmt)(root, parsed)


@dataclass
class IngestReport:
    """What an ingest wrote, left out, converted, and what the user should hear about."""

    path: Path
    n_items: int
    skipped: list[tuple[str, str]]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conversions: list[dict[str, Any]] = field(default_factory=list)
    #: with a ``compressor`` (rsir ingest --codec): what was coded (an rsir.compression.archive.CompressReport)
    compressed: Any = None


def ingest(root: str | Path, fmt: str, out: str | Path, options: Mapping[str, Any] | None = None,
           skip_bad: bool = False, overwrite: bool = False, progress: bool = True,
           limit: int | None = None, tell: Callable[[str, str], None] | None = None,
           compressor: Callable[[Sequence[ModalitySpec], str], Any] | None = None) -> IngestReport:
    """Read a source and write it as an archive; bad items raise, or are skipped and reported with skip_bad.

    Options and the output path are checked before the source is read. ``tell(kind, text)`` hears each note
    and warning ("note" / "warning") as soon as it is known (the CLI prints them before the progress bar); they
    are also in the report, and the warnings in the manifest's ``info.warnings``.

    ``compressor(modalities, what)``, when given, returns how one modality is stored instead of raw bands (an
    :class:`rsir.compression.archive.CompressedModality`: ``name``, ``code``, ``finish``, ``report``; it raises
    when it does not fit the source's modalities, before anything is written): ``rsir ingest --codec`` through
    :func:`rsir.compression.archive.ingest_with_codec`, so that ``data`` never imports ``compression``.
    """
    check_output(out, overwrite)
    source = open_source(root, fmt, options)
    # checked against the source's modalities before anything is written (a CodecError when they differ)
    cm = compressor(source.modalities, f"the {fmt} source {root}") if compressor is not None else None
    writer = ArchiveWriter(out, source.modalities, source.nomenclature, source.format, overwrite=overwrite,
                           info={"source": str(root), **source.info,
                                 **({"warnings": list(source.warnings)} if source.warnings else {})},
                           coders={cm.name: cm.code} if cm is not None else None)
    notes = list(source.notes)
    notes += [f"removed {lo.path.name} ({human_size(lo.size)}), left by an interrupted write whose process "
              f"{lo.pid} is gone" for lo in writer.removed_leftovers]
    others = writer.other_leftovers
    if others:
        notes.append(f"{len(others)} other leftover(s) of interrupted writes in {writer.path.parent} "
                     f"({human_size(sum(lo.size for lo in others))}, e.g. {others[0].path.name}); "
                     f"`rsir doctor {writer.path.parent} --fix` removes them")
    if tell is not None:
        for n in notes:
            tell("note", n)
        for w in source.warnings:
            tell("warning", w)
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
        if cm is not None and writer.rows:
            cm.finish(writer, writer.running_stats())
        path = writer.close()
    except BaseException:
        writer.abort()
        raise
    return IngestReport(path, len(writer.rows), [(s.item, s.problem) for s in writer.skipped], notes,
                        list(source.warnings), writer.conversions(),
                        cm.report(path, len(writer.rows)) if cm is not None else None)


def describe_formats() -> Sequence[tuple[str, str]]:
    """(name, description) of every format, for --help."""
    return [(k, FORMATS.describe(k)) for k in FORMATS]


def describe_all_options() -> str:
    """Every format's options, for ``rsir ingest --help`` (a format whose module cannot load says so)."""
    blocks = []
    for fmt in FORMATS:
        try:
            blocks.append(describe_options(fmt, format_options(fmt)))
        except RsirError as e:
            blocks.append(f"  {fmt}: {e}")
    return "\n".join(blocks)
