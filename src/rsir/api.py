"""The Python API for notebooks and scripts: open an archive, build or load an index, search, get a DataFrame.

    import rsir

    archive = rsir.open_archive("archives/reben")
    rsir.build_index(archive, "indexes/reben-lsh64", method="lsh", bits=64)
    index = rsir.load_index("indexes/reben-lsh64")
    hits = index.search(archive.ids[0], k=10)       # by archive id (the item itself is left out)
    hits.to_dataframe()                               # rank, id, distance, labels, shares_label, ...
    index.search(file="query.tif", k=10)              # by an image file (GeoTIFF, .npz, PNG/JPEG)
    index.search(image={"B02": b02, ...}, k=10)       # by raw band arrays
    index.search(archive.ids[0], filters={"labels": ["Arable land"]})

Everything here is the code the CLI and the web service run (:class:`rsir.query.SearchEngine`), so the same
query gives the same results everywhere.
"""

from __future__ import annotations

from pathlib import Path

from rsir.data.archive import Archive, open_archive
from rsir.pipeline import build_index
from rsir.query import Filters, Results, SearchEngine


def load_index(index_dir: str | Path, archive: Archive | str | Path | None = None,
               model: str | Path | None = None) -> SearchEngine:
    """Open an INDEX directory (from ``rsir index`` or :func:`build_index`) for searching; the archive defaults
    to the one recorded in the index, ``model`` replaces its encoder."""
    return SearchEngine.open(index_dir, archive=archive, model=model)


__all__ = ["Archive", "Filters", "Results", "SearchEngine", "build_index", "load_index", "open_archive"]
