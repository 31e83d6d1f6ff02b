"""rsir: search Earth-observation image archives by example image, by text and across sensors.

The Python API (:mod:`rsir.api`) is importable from here: ``rsir.open_archive``, ``rsir.build_index``,
``rsir.load_index`` (a :class:`rsir.query.SearchEngine`), ``rsir.Filters``. Its modules are imported on first
use, so ``import rsir`` stays cheap.
"""

from typing import Any

from rsir.errors import RsirError

__version__ = "0.1.0"
_API = ("Archive", "Filters", "Results", "SearchEngine", "build_index", "load_index", "open_annotation",
        "open_archive")
__all__ = ["RsirError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from rsir import api

        return getattr(api, name)
    raise AttributeError(f"module 'rsir' has no attribute {name!r}")
