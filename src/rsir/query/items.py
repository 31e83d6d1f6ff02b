"""The columns that filters and results need, for archive items and items added at run time, and the filters.

:class:`ItemTable` keeps one numpy column per field (labels as a multi-hot matrix, split, country, date, lon,
lat, bbox), so every filter is a vectorised pass over the archive: O(items) time and memory per condition,
whatever the request lists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rsir.data.archive import Archive, arrow_list, list_matrix
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
    bbox: list[float] | None = None  # [min_lon, min_lat, max_lon, max_lat]; min_lon > max_lon crosses 180
    near: list[float] | None = None  # [lon, lat, radius_km]: item centres within radius_km (great circle)
    season: str | None = None  # winter / spring / summer / autumn (meteorological, by hemisphere)
    months: list[int] | None = None  # acquisition months 1-12

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Filters:
        """Filters from a dict of the same field names (unknown names are refused)."""
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise QueryError(f"unknown filter {sorted(unknown)[0]!r} (known: {', '.join(cls.__dataclass_fields__)})")
        return cls(**data)


#: meteorological seasons of the northern hemisphere; south of the equator the months shift by six
SEASONS = {"winter": (12, 1, 2), "spring": (3, 4, 5), "summer": (6, 7, 8), "autumn": (9, 10, 11)}
EARTH_RADIUS_KM = 6371.0088


def haversine_km(lon: np.ndarray, lat: np.ndarray, lon0: float, lat0: float) -> np.ndarray:
    """Great-circle distance in km from (lon0, lat0) to each (lon, lat), mean Earth radius (NaN stays NaN)."""
    la, lo = np.radians(lat), np.radians(lon)
    la0, lo0 = math.radians(lat0), math.radians(lon0)
    h = np.sin((la - la0) / 2) ** 2 + np.cos(la) * math.cos(la0) * np.sin((lo - lo0) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def finite_or_nan(v: Any) -> float:
    """A finite float, or NaN for anything missing or unparsable (0 stays 0)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


class Coded:
    """A column with few distinct values (split, country, date, each item's modalities) as an int32 code per row
    into the list of its distinct values: ``col[p]`` is row p's value, and a condition is evaluated once per
    distinct value, then spread over the rows by the codes (``col.mask(test)``). A Python object per row and
    column cost 60-100 bytes per item: gigabytes at 10^7 items."""

    SEP = "\x1f"  # joins a row's strings into one key (a control character that no name contains)

    def __init__(self, values: list[Any], codes: np.ndarray) -> None:
        self.values = values
        self.codes = codes.astype(np.int32)
        self._index = {v: i for i, v in enumerate(values)}

    @classmethod
    def of_strings(cls, column: pd.Series, width: int | None = None) -> Coded:
        """Strings (missing ones as ""), cut to their first ``width`` characters when given."""
        text = column.fillna("").astype(str)
        codes, uniques = pd.factorize(text.str.slice(0, width) if width else text)
        return cls([str(u) for u in uniques], codes)

    @classmethod
    def of_lists(cls, column: pd.Series) -> Coded:
        """Lists of strings as tuples (a missing list as ()), keyed with Arrow's list join, no loop over rows."""
        arr = arrow_list(column, pa.list_(pa.string()))
        joined = pc.fill_null(pc.binary_join(arr, cls.SEP), "")
        codes, uniques = pd.factorize(pd.Series(joined.to_numpy(zero_copy_only=False), dtype=object))
        return cls([tuple(str(k).split(cls.SEP)) if k else () for k in uniques], codes)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, p: int) -> Any:
        return self.values[self.codes[p]]

    def per_value(self, fn: Callable[[Any], Any], dtype: Any) -> np.ndarray:
        """``fn`` of each row's value as an array over the rows (``fn`` runs once per distinct value)."""
        return np.array([fn(v) for v in self.values], dtype=dtype).reshape(-1)[self.codes]

    def mask(self, test: Callable[[Any], bool]) -> np.ndarray:
        """Rows whose value passes ``test``."""
        return self.per_value(lambda v: bool(test(v)), bool)

    def counts(self) -> dict[Any, int]:
        """Rows per value (values no row holds any more are left out)."""
        n = np.bincount(self.codes, minlength=len(self.values))
        return {v: int(c) for v, c in zip(self.values, n, strict=True) if c}

    def append(self, value: Any) -> None:
        """Add one row (its value joins the distinct values when new)."""
        i = self._index.get(value)
        if i is None:
            i = self._index[value] = len(self.values)
            self.values = [*self.values, value]
        self.codes = np.append(self.codes, np.int32(i))


class ItemTable:
    """Columns the filters and results need, for archive items and items added at run time."""

    def __init__(self, archive: Archive) -> None:
        cat = archive.catalog
        n = len(cat)
        self.ids: list[str] = list(archive.ids)
        self.pos: dict[str, int] = archive.position_map()
        self.labels = archive.labels.copy()
        self.split = Coded.of_strings(cat["split"])
        self.country = Coded.of_strings(cat["country"])
        self.date = Coded.of_strings(cat["date"], width=10)  # the day (filters and results need no more)
        self.lon = cat["lon"].astype(float).to_numpy()
        self.lat = cat["lat"].astype(float).to_numpy()
        self.bbox = list_matrix(cat["bbox"], 4, float, np.nan)
        self.modalities = Coded.of_lists(cat["modalities"])
        self.captions = cat["captions"]
        # GeoJSON text of each item's footprint when the source had one (STAC), else ""
        self.geometry: list[str] = ([str(g) if isinstance(g, str) else "" for g in cat["geometry"]]
                                    if "geometry" in cat.columns else [""] * n)
        self.n_archive = n
        self.added: dict[str, dict[str, Any]] = {}
        self.alive = np.ones(n, dtype=bool)  # False for deleted rows (rows are never reused: positions stay)

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, item_id: str, labels_vec: np.ndarray, modality: str, meta: dict[str, Any]) -> None:
        """Add one run-time item (new arrays are built, then swapped in)."""
        self.labels = np.concatenate([self.labels, labels_vec[None].astype(np.uint8)])
        self.split.append(str(meta.get("split", "")))
        self.country.append(str(meta.get("country", "")))
        self.date.append(str(meta.get("date", ""))[:10])
        self.lon = np.append(self.lon, finite_or_nan(meta.get("lon")))
        self.lat = np.append(self.lat, finite_or_nan(meta.get("lat")))
        self.bbox = np.concatenate([self.bbox, np.full((1, 4), np.nan)])
        self.modalities.append((modality,))
        self.alive = np.append(self.alive, True)
        self.geometry.append("")
        self.pos[item_id] = len(self.ids)
        self.ids.append(item_id)
        self.added[item_id] = meta

    def delete(self, item_id: str) -> None:
        """Mark an item deleted: its id is free again, its row stays (dead) so other rows keep their positions."""
        p = self.pos.pop(item_id, None)
        if p is None:
            return
        alive = self.alive.copy()
        alive[p] = False
        self.alive = alive
        self.added.pop(item_id, None)

    def filter_mask(self, f: Filters, classes: list[str], nomenclature: str = "") -> np.ndarray | None:
        """Boolean mask over the table, or None when no filter is set (deleted rows never pass a filter)."""
        used = not self.alive.all()
        mask = self.alive.copy()
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
            mask &= self.split.mask(lambda v: v == f.split)
            used = True
        if f.country:
            want = f.country.lower()
            mask &= self.country.mask(lambda v: v.lower() == want)
            used = True
        if f.date_from or f.date_to:
            lo, hi = (f.date_from or "")[:10], (f.date_to or "")[:10]
            mask &= self.date.mask(lambda d: d != "" and (not lo or d >= lo) and (not hi or d <= hi))
            used = True
        if f.bbox is not None:
            if len(f.bbox) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in f.bbox):
                raise QueryError("bbox must be 4 finite numbers [min_lon, min_lat, max_lon, max_lat]")
            x0, y0, x1, y1 = f.bbox
            if y0 > y1:
                raise QueryError("bbox: min_lat is larger than max_lat")
            if x0 > x1:  # a box across the antimeridian: two boxes
                mask &= self._in_box(x0, y0, 180.0, y1) | self._in_box(-180.0, y0, x1, y1)
            else:
                mask &= self._in_box(x0, y0, x1, y1)
            used = True
        if f.near is not None:
            if len(f.near) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in f.near):
                raise QueryError("near must be 3 finite numbers [lon, lat, radius_km]")
            lon0, lat0, km = f.near
            if not (-180 <= lon0 <= 180 and -90 <= lat0 <= 90 and km > 0):
                raise QueryError("near: lon within +-180, lat within +-90 and a positive radius in km")
            lon, lat = self.centres()
            d = haversine_km(lon, lat, lon0, lat0)
            mask &= np.isfinite(d) & (d <= km)
            used = True
        if f.season or f.months:
            mask &= self.month_mask(f.season, f.months)
            used = True
        return mask if used else None

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Each item's centre: lon/lat, or the middle of its bbox when only that is known."""
        bx = (self.bbox[:, 0] + self.bbox[:, 2]) / 2
        by = (self.bbox[:, 1] + self.bbox[:, 3]) / 2
        has = np.isfinite(self.lon) & np.isfinite(self.lat)
        return np.where(has, self.lon, bx), np.where(has, self.lat, by)

    def _in_box(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Items whose bbox intersects the box, or (without a bbox) whose centre lies in it."""
        b = self.bbox
        has_box = np.isfinite(b).all(1)
        inter = has_box & (b[:, 0] <= x1) & (b[:, 2] >= x0) & (b[:, 1] <= y1) & (b[:, 3] >= y0)
        centre = ~has_box & (self.lon >= x0) & (self.lon <= x1) & (self.lat >= y0) & (self.lat <= y1)
        return inter | centre

    def month_mask(self, season: str | None, months: list[int] | None) -> np.ndarray:
        """Items acquired in one of ``months`` and in ``season`` (by hemisphere: its months shift by six
        south of the equator); items without a date fail."""
        month = self.date.per_value(month_of, np.int8)  # once per distinct day, then spread over the rows
        ok = month > 0
        if months:
            bad = [m for m in months if not (isinstance(m, int) and 1 <= m <= 12)]
            if bad:
                raise QueryError(f"months must be integers 1-12, got {bad[0]!r}")
            ok &= np.isin(month, months)
        if season:
            s = season.strip().lower()
            if s not in SEASONS:
                raise QueryError(f"unknown season {season!r} (known: {', '.join(SEASONS)})")
            north = np.array(SEASONS[s])
            south = (north + 5) % 12 + 1
            _, lat = self.centres()
            ok &= np.where(lat < 0, np.isin(month, south), np.isin(month, north))
        return ok


def month_of(date: str) -> int:
    """The month (1-12) of an ISO date, 0 when it is missing or malformed."""
    d = str(date)
    return int(d[5:7]) if len(d) >= 7 and d[4] == "-" and d[5:7].isdigit() and 1 <= int(d[5:7]) <= 12 else 0



def hex_text(text: str) -> str:
    """A string as the hex of its UTF-8 bytes: how a filtering backend stores text fields, so that a value from a
    request becomes a literal of [0-9a-f] only (nothing to escape, nothing to inject) and byte order is kept
    (dates compare the same)."""
    return text.encode("utf-8").hex()


def pushdown_filter(f: Filters, classes: list[str], nomenclature: str = "") -> str:
    """The filters as an expression over the scalar fields of a filtering backend (Milvus; fields as
    ``rsir.pipeline.index_attributes`` writes them), with the same semantics as :meth:`ItemTable.filter_mask`.
    Values enter only as numbers or hex literals (:func:`hex_text`), never as request text."""
    parts: list[str] = []
    if f.labels:
        idx = []
        for lab in dict.fromkeys(f.labels):
            if lab not in classes:
                raise QueryError(f"unknown label {lab!r} (not in the {nomenclature} nomenclature)")
            idx.append(int(classes.index(lab)))
        parts.append(f"array_contains_{'all' if f.labels_mode == 'all' else 'any'}(labels, {idx})")
    if f.split:
        parts.append(f'split == "{hex_text(f.split)}"')
    if f.country:
        parts.append(f'country == "{hex_text(f.country.lower())}"')
    if f.date_from or f.date_to:
        parts.append('date != ""')
        if f.date_from:
            parts.append(f'date >= "{hex_text(f.date_from[:10])}"')
        if f.date_to:
            parts.append(f'date <= "{hex_text(f.date_to[:10])}"')
    if f.bbox is not None:
        if len(f.bbox) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in f.bbox):
            raise QueryError("bbox must be 4 finite numbers [min_lon, min_lat, max_lon, max_lat]")
        x0, y0, x1, y1 = (repr(float(v)) for v in f.bbox)
        # bool fields are compared with == (Milvus Lite 2.5 rejects a bare field or 'not' as a predicate)
        parts.append(f"((has_bbox == true and min_lon <= {x1} and max_lon >= {x0} and min_lat <= {y1} and "
                     f"max_lat >= {y0}) or (has_bbox == false and has_loc == true and lon >= {x0} and lon <= {x1} "
                     f"and lat >= {y0} and lat <= {y1}))")
    return " and ".join(parts)
