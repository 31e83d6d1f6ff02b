"""The columns that filters and results need, for archive items and items added at run time, and the filters.

:class:`ItemTable` keeps one numpy column per field (labels as a multi-hot matrix, split, country, date, lon,
lat, bbox), so every filter is a vectorised pass over the archive: O(items) time and memory per condition,
whatever the request lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rsir.data.archive import Archive
from rsir.errors import RsirError


class QueryError(RsirError):
    """A query the engine refuses: unknown label, k or offset out of range, malformed filter."""


class ConflictError(QueryError):
    """A write that clashes with what is stored (an id that exists already)."""


@dataclass
class Filters:
    """Result filters; all given conditions must hold."""

    labels: list[str] = field(default_factory=list)  # class names
    labels_mode: Literal["any", "all"] = "any"
    split: str | None = None
    country: str | None = None
    date_from: str | None = None  # ISO date, inclusive
    date_to: str | None = None  # ISO date, inclusive
    bbox: list[float] | None = None  # [min_lon, min_lat, max_lon, max_lat]

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Filters:
        """Filters from a dict of the same field names (unknown names are refused)."""
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise QueryError(f"unknown filter {sorted(unknown)[0]!r} (known: {', '.join(cls.__dataclass_fields__)})")
        return cls(**data)


def finite_or_nan(v: Any) -> float:
    """A finite float, or NaN for anything missing or unparsable (0 stays 0)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


class ItemTable:
    """Columns the filters and results need, for archive items and items added at run time."""

    def __init__(self, archive: Archive) -> None:
        cat = archive.catalog
        n = len(cat)
        self.ids: list[str] = list(archive.ids)
        self.pos: dict[str, int] = {i: p for p, i in enumerate(self.ids)}
        self.labels = archive.labels.copy()
        self.split = cat["split"].fillna("").astype(str).to_numpy(dtype=object)
        self.country = cat["country"].fillna("").astype(str).to_numpy(dtype=object)
        self.date = cat["date"].fillna("").astype(str).str.slice(0, 10).to_numpy(dtype=object)
        self.lon = cat["lon"].astype(float).to_numpy()
        self.lat = cat["lat"].astype(float).to_numpy()
        self.bbox = np.full((n, 4), np.nan)
        for p, b in enumerate(cat["bbox"]):
            if b is not None and len(b) == 4:
                self.bbox[p] = np.asarray(b, dtype=float)
        self.modalities: list[list[str]] = [[str(m) for m in mods] for mods in cat["modalities"]]
        self.captions = cat["captions"]
        # GeoJSON text of each item's footprint when the source had one (STAC), else ""
        self.geometry: list[str] = ([str(g) if isinstance(g, str) else "" for g in cat["geometry"]]
                                    if "geometry" in cat.columns else [""] * n)
        self.n_archive = n
        self.added: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, item_id: str, labels_vec: np.ndarray, modality: str, meta: dict[str, Any]) -> None:
        """Add one run-time item (new arrays are built, then swapped in)."""
        self.labels = np.concatenate([self.labels, labels_vec[None].astype(np.uint8)])
        self.split = np.append(self.split, str(meta.get("split", "")))
        self.country = np.append(self.country, str(meta.get("country", "")))
        self.date = np.append(self.date, str(meta.get("date", ""))[:10])
        self.lon = np.append(self.lon, finite_or_nan(meta.get("lon")))
        self.lat = np.append(self.lat, finite_or_nan(meta.get("lat")))
        self.bbox = np.concatenate([self.bbox, np.full((1, 4), np.nan)])
        self.modalities.append([modality])
        self.geometry.append("")
        self.pos[item_id] = len(self.ids)
        self.ids.append(item_id)
        self.added[item_id] = meta

    def filter_mask(self, f: Filters, classes: list[str], nomenclature: str = "") -> np.ndarray | None:
        """Boolean mask over the table, or None when no filter is set."""
        mask = np.ones(len(self), dtype=bool)
        used = False
        if f.labels:
            idx = []
            for lab in dict.fromkeys(f.labels):
                if lab not in classes:
                    raise QueryError(f"unknown label {lab!r} (not in the {nomenclature} nomenclature)")
                idx.append(classes.index(lab))
            sub = self.labels[:, idx].astype(bool)
            mask &= sub.all(1) if f.labels_mode == "all" else sub.any(1)
            used = True
        if f.split:
            mask &= self.split == f.split
            used = True
        if f.country:
            mask &= np.char.lower(self.country.astype(str)) == f.country.lower()
            used = True
        if f.date_from or f.date_to:
            d = self.date.astype(str)
            known = d != ""
            if f.date_from:
                known &= d >= f.date_from[:10]
            if f.date_to:
                known &= d <= f.date_to[:10]
            mask &= known
            used = True
        if f.bbox is not None:
            if len(f.bbox) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in f.bbox):
                raise QueryError("bbox must be 4 finite numbers [min_lon, min_lat, max_lon, max_lat]")
            x0, y0, x1, y1 = f.bbox
            b = self.bbox
            has_box = np.isfinite(b).all(1)
            inter = has_box & (b[:, 0] <= x1) & (b[:, 2] >= x0) & (b[:, 1] <= y1) & (b[:, 3] >= y0)
            centre = ~has_box & (self.lon >= x0) & (self.lon <= x1) & (self.lat >= y0) & (self.lat <= y1)
            mask &= inter | centre
            used = True
        return mask if used else None
