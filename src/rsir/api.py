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
    index.search(text="a lagoon on the coast", k=10)  # by a sentence: hybrid of label matcher and DUCH codes
    index.search(text="...", text_mode="learned")    # (hybrid | learned | matcher; query["answered_by"] says)

    # learning from answers (ANNEAL; the index must hold the standardised features: rsir index --method float)
    session = rsir.open_annotation("indexes/reben-float")
    session.run_round("anneal-mgue", budget=20)      # retrain on the answers so far, queue 20 pairs
    for q in session.store.pending(20):
        session.store.answer(q["id"], similar=True, who="me")

Everything here is the code the CLI and the web service run (:class:`rsir.query.SearchEngine`), so the same
query gives the same results everywhere.
"""

from __future__ import annotations

from pathlib import Path

from rsir.data.archive import Archive, open_archive
from rsir.feedback.session import AnnotationSession
from rsir.pipeline import build_index
from rsir.query import Filters, Results, SearchEngine


def load_index(index_dir: str | Path, archive: Archive | str | Path | None = None,
               model: str | Path | None = None) -> SearchEngine:
    """Open an INDEX directory (from ``rsir index`` or :func:`build_index`) for searching; the archive defaults
    to the one recorded in the index, ``model`` replaces its encoder."""
    return SearchEngine.open(index_dir, archive=archive, model=model)


def open_annotation(index_dir: str | Path, archive: Archive | str | Path | None = None,
                    db: str | Path | None = None, model: str | Path | None = None) -> AnnotationSession:
    """The ANNEAL annotation session of a float INDEX directory: its store (``db``, default beside the index),
    its retrained head (``model``, default beside the index), rounds and answers."""
    return AnnotationSession.open(index_dir, archive, db=db, model_dir=model)


__all__ = ["AnnotationSession", "Archive", "Filters", "Results", "SearchEngine", "build_index", "load_index",
           "open_annotation", "open_archive"]
