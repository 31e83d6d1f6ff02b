"""Another rsir archive as a source: ``rsir ingest ARCHIVE --format rsir-archive --out RAW``.

Reads every item through :class:`rsir.data.archive.Archive`, so a compressed archive (``rsir compress``) is
decoded on the way: this is how bitstreams go back to raw bands. Items keep their ids and catalog fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsir.data.archive import CATALOG_COLUMNS, open_archive
from rsir.data.formats import Arrays, Source, SourceItem
from rsir.data.options import ReaderOption

OPTIONS: tuple[ReaderOption, ...] = (
    ReaderOption("modalities", "list", "modalities to copy (default: all of the archive's)"),
)
_DERIVED = {"label_vec", "modalities"}  # recomputed by the writer


def read_rsir_archive(root: Path, options: dict[str, Any]) -> Source:
    arch = open_archive(root)
    keep = list(options.get("modalities") or arch.modalities)
    for m in keep:
        arch.spec(m)  # clear error naming the archive's modalities

    def item(pos: int) -> SourceItem:
        row = arch.item(pos)
        meta = {k: v for k, v in row.items() if k not in _DERIVED and k != "id"}

        def load() -> Arrays:
            return {m: arch.get(pos, m) for m in (row.get("modalities") or []) if m in keep}

        return SourceItem(str(row["id"]), meta, load)

    notes = []
    comp = arch.manifest.get("compressed", {})
    if comp:
        notes.append(f"{', '.join(sorted(comp))} stored as bitstreams in {root}: decoded to raw bands "
                     f"(at the grid size)")
    return Source("rsir-archive", [arch.modalities[m] for m in keep], arch.nomenclature,
                  (item(p) for p in range(len(arch))), len(arch),
                  info={"source_archive": str(root), "source_columns": sorted(set(arch.catalog.columns)
                                                                              - set(CATALOG_COLUMNS))},
                  notes=notes)
