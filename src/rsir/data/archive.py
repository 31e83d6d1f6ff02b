"""The Archive: a catalog table (Parquet) + a tensor store (LMDB of safetensors values) + band statistics.

Layout of an archive directory::

    ARCHIVE/
      manifest.json     format, version, modalities and their bands, nomenclature, per-band stats, counts
      catalog.parquet   one row per item (see CATALOG_COLUMNS)
      patches.lmdb/     key "<modality>/<id>", value = safetensors bytes of {band: array} at native resolution

As in reBEN, bands are kept at their native resolution and brought to the common grid when read. The
statistics are the per-band mean and standard deviation over the training split (over all items when the
archive has no training split), computed on the native pixels.

An archive is written by :class:`ArchiveWriter` into a hidden sibling directory and renamed into place only when
complete, so an interrupted ingest never leaves a directory that looks like a finished archive.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import shutil
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import safetensors.numpy as stnp

from rsir.data.bands import BandGroup, ModalitySpec, assemble, group_bands, quicklook, to_grid
from rsir.data.coerce import Conversion, coerce_modality
from rsir.data.nomenclature import Nomenclature
from rsir.errors import ArchiveError, ItemError, NotFoundError
from rsir.leftovers import Leftover, leftovers_in, remove_stale
from rsir.storage import atomic_write_json, partial_sibling, replace_dir, utc_stamp

FORMAT_NAME = "rsir-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CATALOG = "catalog.parquet"
STORE = "patches.lmdb"
SPLITS = ("train", "validation", "test")

# Read-only LMDB environments shared by every Archive of this process that opens the same store file: LMDB allows
# one environment per file and process, so a second Archive on the same path (a second command run in-process,
# the training set and the validation set, ...) must reuse the first one's. Keyed by the file's identity, so an
# archive replaced on disk gets a fresh environment; weak values close an environment with its last Archive.
_SHARED_ENVS: weakref.WeakValueDictionary[tuple[int, int, int], lmdb.Environment] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def _open_shared_store(path: Path) -> lmdb.Environment:
    """The process's read-only environment of the LMDB store at ``path`` (opened on first use)."""
    try:
        st = os.stat(path / "data.mdb")
        key = (os.getpid(), st.st_dev, st.st_ino)
        with _SHARED_LOCK:
            env = _SHARED_ENVS.get(key)
            if env is None:
                env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True,
                                max_readers=512)
                _SHARED_ENVS[key] = env
            return env
    except (OSError, lmdb.Error) as e:
        raise ArchiveError(f"{path}: cannot open tensor store ({e})") from None

# Catalog columns every archive has (others, source-specific, may follow).
CATALOG_COLUMNS: dict[str, pa.DataType] = {
    "id": pa.string(),
    "split": pa.string(),                 # train / validation / test / "" when the source has none
    "labels": pa.list_(pa.string()),      # class names in the archive's nomenclature
    "label_vec": pa.list_(pa.uint8()),    # multi-hot over the nomenclature
    "country": pa.string(),
    "tile": pa.string(),
    "date": pa.string(),                  # ISO 8601 acquisition date (or datetime), "" when unknown
    "lon": pa.float64(),                  # centroid, WGS84
    "lat": pa.float64(),
    "bbox": pa.list_(pa.float64()),       # [min_lon, min_lat, max_lon, max_lat], WGS84
    "crs": pa.string(),                   # native CRS of the patch (e.g. EPSG:32633) when known
    "transform": pa.list_(pa.float64()),  # affine (a, b, c, d, e, f) in the native CRS when known
    "modalities": pa.list_(pa.string()),
    "s1_id": pa.string(),                 # Sentinel-1 partner name (reBEN s1_name)
    "captions": pa.list_(pa.string()),
    "partner_id": pa.string(),            # bitemporal partner item id
    "source": pa.string(),                # the file or key the item came from
}


def catalog_frame(table: pa.Table) -> pd.DataFrame:
    """The catalog table as a DataFrame whose list columns stay in Arrow memory (``pd.ArrowDtype``).

    A Python list object per row and list column took ~1 GB per million items (six list columns); Arrow keeps
    one offsets buffer and one values buffer per column. Iterating such a column yields Python lists, and a
    missing list reads as an empty one: every reader treats the two alike (no bbox, no captions, no labels).
    """
    for i, f in enumerate(table.schema):
        col = table.column(i)
        if pa.types.is_list(f.type) and col.null_count:
            table = table.set_column(i, f, pc.if_else(pc.is_null(col), pa.scalar([], f.type), col))
    frame = table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_list(t) else None)
    pa.default_memory_pool().release_unused()  # Parquet decoding peaks at ~3x the table; hand that back
    return frame


def arrow_list(column: pd.Series, type: pa.DataType | None = None) -> pa.Array:
    """A list column of the catalog as one Arrow list array: the buffers of an Arrow-backed column
    (:func:`catalog_frame`), or the Python lists of an object column converted (to ``type`` when given)."""
    arr = (pa.array(column.array) if isinstance(column.dtype, pd.ArrowDtype)
           else pa.array(column.tolist(), type=type))
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def list_matrix(column: pd.Series, width: int, dtype: Any, fill: float) -> np.ndarray:
    """A list column as an N x ``width`` array: rows whose list has exactly ``width`` values are copied, the
    others (missing, empty, other lengths) are ``fill``. Vectorised over the Arrow buffers."""
    arr = arrow_list(column)
    out = np.full((len(arr), width), fill, dtype=dtype)
    if len(arr) == 0 or width == 0:
        return out
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    starts = arr.offsets.to_numpy()[:-1] - arr.offsets[0].as_py()  # into the flattened values of this slice
    values = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    ok = lengths == width
    out[ok] = values[starts[ok, None] + np.arange(width)]
    return out


def list_contains(column: pd.Series, value: str) -> np.ndarray:
    """Boolean mask: which rows' lists (a list<string> column) hold ``value``. Vectorised over the Arrow
    buffers; a missing list holds nothing."""
    arr = arrow_list(column, pa.list_(pa.string()))
    out = np.zeros(len(arr), dtype=bool)
    if len(arr):
        hit = pc.fill_null(pc.equal(pc.list_flatten(arr), value), False).to_numpy(zero_copy_only=False)
        out[pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)[hit]] = True
    return out


_DEFAULTS: dict[str, Any] = {
    "split": "", "labels": [], "label_vec": None, "country": "", "tile": "", "date": "", "lon": math.nan,
    "lat": math.nan, "bbox": None, "crs": "", "transform": None, "modalities": [], "s1_id": "",
    "captions": [], "partner_id": "", "source": "",
}


def is_archive_dir(path: Path) -> bool:
    """Whether ``path`` is a directory holding an rsir archive manifest."""
    try:
        return json.loads((path / MANIFEST).read_text()).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


def check_output(path: str | Path, overwrite: bool = False) -> Path:
    """The absolute path an archive may be written to, or an ArchiveError saying why not.

    The path must not exist, or (with ``overwrite``) be an rsir archive or an empty folder: replacing anything
    else (a file, a folder of the user's) is refused. Its nearest existing parent must be a writable folder.
    """
    p = Path(path).expanduser().absolute()
    if p.exists() or p.is_symlink():
        if not overwrite:
            raise ArchiveError(f"{p} already exists (pass overwrite=True / --overwrite to replace it)")
        if not (p.is_dir() and not p.is_symlink() and (is_archive_dir(p) or not any(p.iterdir()))):
            raise ArchiveError(f"{p} exists and is not an rsir archive; refusing to replace it (remove it yourself "
                               f"or write elsewhere)")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ArchiveError(f"{p}: cannot write an archive here, {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArchiveError(f"{p}: cannot write an archive here, {parent} is not writable")
    return p


class _RunningStats:
    """Per-band mean/std in float64, merged batch by batch (Chan et al. parallel variance)."""

    def __init__(self) -> None:
        self.n: dict[str, int] = {}
        self.mean: dict[str, float] = {}
        self.m2: dict[str, float] = {}
        self.min: dict[str, float] = {}
        self.max: dict[str, float] = {}

    def update(self, band: str, a: np.ndarray) -> None:
        a = np.asarray(a, dtype=np.float64).ravel()
        a = a[np.isfinite(a)]
        if a.size == 0:
            return
        nb, mb = a.size, float(a.mean())
        m2b = float(((a - mb) ** 2).sum())
        na = self.n.get(band, 0)
        if na == 0:
            self.n[band], self.mean[band], self.m2[band] = nb, mb, m2b
            self.min[band], self.max[band] = float(a.min()), float(a.max())
            return
        ma = self.mean[band]
        n = na + nb
        d = mb - ma
        self.mean[band] = ma + d * nb / n
        self.m2[band] += m2b + d * d * na * nb / n
        self.n[band] = n
        self.min[band] = min(self.min[band], float(a.min()))
        self.max[band] = max(self.max[band], float(a.max()))

    def result(self) -> dict[str, dict[str, float]]:
        return {
            b: {"mean": self.mean[b], "std": math.sqrt(self.m2[b] / self.n[b]) if self.n[b] else 0.0,
                "min": self.min[b], "max": self.max[b], "count": self.n[b]}
            for b in self.n
        }


def encode_value(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Safetensors bytes of a band dict (the reBEN value format)."""
    return stnp.save({b: np.ascontiguousarray(a) for b, a in arrays.items()})


def decode_value(data: bytes, key: str) -> dict[str, np.ndarray]:
    """Band dict from safetensors bytes; a clear error naming the key when the value is damaged."""
    try:
        return dict(stnp.load(bytes(data)))
    except Exception as e:  # safetensors raises several error types for bad headers
        raise ItemError(key, f"stored value is not valid safetensors data ({type(e).__name__}: {e})") from None


# safetensors dtype names -> numpy (little-endian, as the format stores them)
_ST_DTYPES = {"U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "U32": "<u4", "I32": "<i4", "U64": "<u8",
              "I64": "<i8", "F16": "<f2", "F32": "<f4", "F64": "<f8"}


def value_layout(data: memoryview | bytes) -> dict[str, tuple[np.dtype, tuple[int, ...], int]] | None:
    """{band: (dtype, shape, byte offset)} of a safetensors value without copying its tensors; None when the
    header is not one this reader handles (the caller then decodes the value with :func:`decode_value`, which
    names what is wrong)."""
    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(bytes(data[8:8 + n]))
        out = {}
        for band, d in header.items():
            if band == "__metadata__":
                continue
            dt = np.dtype(_ST_DTYPES[d["dtype"]])
            shape = tuple(int(v) for v in d["shape"])
            a, b = (int(v) for v in d["data_offsets"])
            if b - a != dt.itemsize * math.prod(shape) or 8 + n + b > len(data):
                return None
            out[str(band)] = (dt, shape, 8 + n + a)
        return out
    except (KeyError, TypeError, ValueError):
        return None


def validate_bands(item: str, spec: ModalitySpec, arrays: Mapping[str, np.ndarray], source: str = "",
                   allow_nonfinite: bool = False,
                   conversions: list[Conversion] | None = None) -> dict[str, np.ndarray]:
    """Check band names, shapes and values against a modality spec; return the arrays in the spec dtype.

    A band of another dtype is converted by the rules of :mod:`rsir.data.coerce` (exact casts, float
    reflectances scaled into a ``reflectance*K`` integer modality) or refused with an ItemError naming the item
    and band; nothing wraps or clips. The conversions made are appended to ``conversions`` when given.
    """
    have, want = set(arrays), set(spec.bands)
    if have != want:
        missing, extra = sorted(want - have), sorted(have - want)
        raise ItemError(item, f"modality {spec.name}: band set mismatch (missing {missing}, unexpected {extra}); "
                              f"expected {len(spec.bands)} bands {spec.bands}", source or None)
    out: dict[str, np.ndarray] = {}
    for b in spec.bands:
        a = np.asarray(arrays[b])
        if tuple(a.shape) != tuple(spec.shapes[b]):
            raise ItemError(item, f"modality {spec.name} band {b}: shape {tuple(a.shape)}, expected "
                                  f"{tuple(spec.shapes[b])}", source or None)
        if not allow_nonfinite and a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise ItemError(item, f"modality {spec.name} band {b}: {bad} NaN or infinite pixel values",
                            source or None)
        out[b] = a
    out, conv = coerce_modality(item, spec, out, source or None)
    if conversions is not None:
        conversions.extend(conv)
    return out


@dataclass
class SkippedItem:
    item: str
    problem: str


class ArchiveWriter:
    """Writes an archive atomically: items go to a hidden sibling directory renamed into place on close()."""

    def __init__(self, path: str | Path, modalities: Sequence[ModalitySpec], nomenclature: Nomenclature,
                 source_format: str, overwrite: bool = False, commit_every: int = 256,
                 info: Mapping[str, Any] | None = None, stats: Mapping[str, Any] | None = None,
                 compressed: Mapping[str, Any] | None = None,
                 coders: Mapping[str, Callable[[list[dict[str, np.ndarray]]], list[bytes]]] | None = None,
                 code_batch: int = 64) -> None:
        self.path = check_output(path, overwrite)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # an ingest killed with SIGKILL leaves its hidden copy behind: remove those of this target whose
            # process is gone, and tell about the others in the same folder (rsir doctor removes them)
            self.removed_leftovers: list[Leftover] = remove_stale(self.path.parent, self.path.name)
            self.other_leftovers: list[Leftover] = [lo for lo in leftovers_in(self.path.parent) if lo.stale]
            self.tmp = partial_sibling(self.path)
            self.tmp.mkdir()
        except OSError as e:
            raise ArchiveError(f"{self.path}: cannot write an archive here ({e.strerror or e})") from None
        self.specs = {m.name: m for m in modalities}
        self.nomenclature = nomenclature
        self.source_format = source_format
        self.overwrite = overwrite
        self.info = dict(info or {})
        # a compressed archive (rsir compress) carries its source's statistics and names its codec
        self.stats_override = dict(stats) if stats is not None else None
        self.compressed = dict(compressed or {})
        # modalities stored in another form than safetensors (rsir ingest --codec: bitstreams): their checked
        # bands are held back and handed to the coder code_batch items at a time, in order
        self.coders = dict(coders or {})
        self.code_batch = max(int(code_batch), 1)
        self._held: dict[str, list[tuple[str, dict[str, np.ndarray]]]] = {m: [] for m in self.coders}
        self.rows: list[dict[str, Any]] = []
        self.ids: set[str] = set()
        self.skipped: list[SkippedItem] = []
        self._conversions: dict[Conversion, dict[str, Any]] = {}
        self._stats = {m: _RunningStats() for m in self.specs}
        self._stats_all = {m: _RunningStats() for m in self.specs}
        self._env = lmdb.open(str(self.tmp / STORE), map_size=1 << 40, subdir=True, lock=True,
                              writemap=False, map_async=False, meminit=False, max_dbs=0)
        self._txn = self._env.begin(write=True)
        self._pending = 0
        self.commit_every = commit_every
        self._closed = False

    def add(self, item_id: str, meta: Mapping[str, Any], arrays: Mapping[str, Mapping[str, np.ndarray]],
            allow_nonfinite: bool = False) -> None:
        """Add one item: catalog fields in ``meta`` and, per modality, a {band: array} dict."""
        if self._closed:
            raise ArchiveError("writer is closed")
        item_id = str(item_id)
        if item_id in self.ids:
            raise ItemError(item_id, "duplicate id", meta.get("source") or None)
        unknown = set(arrays) - set(self.specs)
        if unknown:
            raise ItemError(item_id, f"unknown modalities {sorted(unknown)} (archive has {sorted(self.specs)})")
        source = str(meta.get("source", ""))
        conv: list[Conversion] = []
        checked = {m: validate_bands(item_id, self.specs[m], a, source, allow_nonfinite, conv)
                   for m, a in arrays.items()}
        labels = list(meta.get("labels", []) or [])
        for lab in labels:
            if lab not in self.nomenclature.classes:
                raise ItemError(item_id, f"label {lab!r} is not in the {self.nomenclature.name} nomenclature",
                                source or None)
        row = {k: meta.get(k, v) for k, v in _DEFAULTS.items()}
        row.update({k: v for k, v in meta.items() if k not in row})
        row["id"] = item_id
        row["labels"] = labels
        row["label_vec"] = self.nomenclature.encode(labels).tolist()
        row["modalities"] = sorted(checked)
        for m, bands in checked.items():
            if m in self.coders:
                self._held[m].append((item_id, bands))
            else:
                self._txn.put(f"{m}/{item_id}".encode(), encode_value(bands))
            stats = self._stats[m] if row.get("split") == "train" else None
            for b, a in bands.items():
                self._stats_all[m].update(b, a)
                if stats is not None:
                    stats.update(b, a)
        self.rows.append(row)
        self.ids.add(item_id)
        for c in conv:
            rec = self._conversions.setdefault(c, {"items": 0, "first_items": []})
            rec["items"] += 1
            if len(rec["first_items"]) < 5:
                rec["first_items"].append(item_id)
        for m, held in self._held.items():
            if len(held) >= self.code_batch:
                self._code_held(m)
        self._pending += 1
        if self._pending >= self.commit_every:
            self._txn.commit()
            self._txn = self._env.begin(write=True)
            self._pending = 0

    def _code_held(self, modality: str) -> None:
        """Store the held-back items of a coded modality as their coder's values."""
        held = self._held[modality]
        if held:
            values = self.coders[modality]([bands for _, bands in held])
            for (item_id, _), v in zip(held, values, strict=True):
                self._txn.put(f"{modality}/{item_id}".encode(), bytes(v))
            held.clear()

    def running_stats(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per-band statistics of the bands added so far (the train split's when it has items), as close()
        writes them unless ``stats_override`` is set."""
        has_train = any(r.get("split") == "train" for r in self.rows)
        src = self._stats if has_train else self._stats_all
        return {m: src[m].result() for m in self.specs}

    def add_stored(self, row: Mapping[str, Any], values: Mapping[str, bytes]) -> None:
        """Add one item as already-encoded store values per modality (``rsir compress``: bitstreams, or another
        archive's values copied as they are) with its complete catalog row; bands are not decoded or checked."""
        if self._closed:
            raise ArchiveError("writer is closed")
        item_id = str(row["id"])
        if item_id in self.ids:
            raise ItemError(item_id, "duplicate id")
        unknown = set(values) - set(self.specs)
        if unknown:
            raise ItemError(item_id, f"unknown modalities {sorted(unknown)} (archive has {sorted(self.specs)})")
        for m, v in values.items():
            self._txn.put(f"{m}/{item_id}".encode(), bytes(v))
        self.rows.append(dict(row))
        self.ids.add(item_id)
        self._pending += 1
        if self._pending >= self.commit_every:
            self._txn.commit()
            self._txn = self._env.begin(write=True)
            self._pending = 0

    def conversions(self) -> list[dict[str, Any]]:
        """Bands stored in another dtype than the source's: modality, band, from, to, rule, items, first_items."""
        return [{"modality": c.modality, "band": c.band, "from": c.source_dtype, "to": c.target_dtype,
                 "rule": c.rule, **rec} for c, rec in self._conversions.items()]

    def skip(self, item: str, problem: str) -> None:
        """Record an item left out (``--skip-bad``); listed in the manifest."""
        self.skipped.append(SkippedItem(item, problem))

    def abort(self) -> None:
        """Drop everything written so far; the target path is left as it was."""
        if self._closed:
            return
        self._closed = True
        try:
            self._txn.abort()
            self._env.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def close(self) -> Path:
        """Write catalog, statistics and manifest, then rename the finished archive into place."""
        if self._closed:
            raise ArchiveError("writer is closed")
        if not self.rows:
            self.abort()
            raise ArchiveError(f"no items were written to {self.path}"
                               + (f" ({len(self.skipped)} skipped)" if self.skipped else ""))
        for m in self._held:
            self._code_held(m)
        self._txn.commit()
        self._env.sync(True)
        self._env.close()
        self._closed = True
        table = _rows_to_table(self.rows)
        pq.write_table(table, self.tmp / CATALOG)
        has_train = any(r.get("split") == "train" for r in self.rows)
        splits = pd.Series([r.get("split", "") for r in self.rows]).value_counts().to_dict()
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "source_format": self.source_format,
            "created": utc_stamp(),
            "n_items": len(self.rows),
            "splits": {str(k): int(v) for k, v in splits.items()},
            "nomenclature": self.nomenclature.to_json(),
            "modalities": {m: s.to_json() for m, s in self.specs.items()},
            "stats_split": "train" if has_train else "all",
            "stats": self.stats_override if self.stats_override is not None else self.running_stats(),
            "resampling": "bilinear",
            "skipped": [{"item": s.item, "problem": s.problem} for s in self.skipped],
            # bands stored in another dtype than the source's, and by which rule (rsir.data.coerce)
            "conversions": self.conversions(),
            "info": self.info,
        }
        if self.compressed:
            manifest["compressed"] = self.compressed
        atomic_write_json(self.tmp / MANIFEST, manifest)
        replace_dir(self.tmp, self.path)
        return self.path

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()


def _rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    cols: dict[str, list[Any]] = {c: [r.get(c) for r in rows] for c in CATALOG_COLUMNS}
    arrays = {c: pa.array(v, type=t) for (c, v), t in zip(cols.items(), CATALOG_COLUMNS.values(), strict=True)}
    extra = sorted({k for r in rows for k in r} - set(CATALOG_COLUMNS))
    for k in extra:
        arrays[k] = pa.array([r.get(k) for r in rows])
    return pa.table(arrays)


class Archive:
    """Read access to an archive: by id or position, and in batches (training datasets: rsir.train.data)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not self.path.is_dir():
            raise ArchiveError(f"{self.path}: no archive here (not a directory)")
        if not mpath.exists():
            partial = leftovers_in(self.path.parent, self.path.name)
            hint = (f" (an interrupted write left {partial[0].path.name} beside it; `rsir doctor "
                    f"{self.path.parent}` lists such copies, --fix removes those whose process is gone)") if partial else ""
            raise ArchiveError(f"{self.path}: not an rsir archive, {MANIFEST} is missing{hint}")
        try:
            self.manifest: dict[str, Any] = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ArchiveError(f"{mpath}: unreadable manifest ({e})") from None
        if self.manifest.get("format") != FORMAT_NAME:
            raise ArchiveError(f"{self.path}: foreign format {self.manifest.get('format')!r}, "
                               f"expected {FORMAT_NAME!r}")
        if int(self.manifest.get("version", -1)) > FORMAT_VERSION:
            raise ArchiveError(f"{self.path}: archive format version {self.manifest['version']} is newer than "
                               f"this rsir understands ({FORMAT_VERSION})")
        try:
            self.catalog: pd.DataFrame = catalog_frame(pq.read_table(self.path / CATALOG))
        except Exception as e:
            raise ArchiveError(f"{self.path / CATALOG}: unreadable catalog ({e})") from None
        if len(self.catalog) != int(self.manifest["n_items"]):
            raise ArchiveError(f"{self.path}: catalog has {len(self.catalog)} rows, manifest says "
                               f"{self.manifest['n_items']}")
        self.nomenclature = Nomenclature.from_json(self.manifest["nomenclature"])
        self.modalities: dict[str, ModalitySpec] = {
            m: ModalitySpec.from_json(s) for m, s in self.manifest["modalities"].items()}
        self.ids: list[str] = self.catalog["id"].astype(str).tolist()
        self._pos: dict[str, int] = {i: p for p, i in enumerate(self.ids)}
        self._env: lmdb.Environment | None = None
        self._env_pid = -1
        self._labels: np.ndarray | None = None
        self._codecs: dict[str, Any] = {}

    # -- basics ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Archive({str(self.path)!r}, n={len(self)}, modalities={list(self.modalities)})"

    @property
    def primary_modality(self) -> str:
        if not self.modalities:
            raise NotFoundError(f"archive {self.path} holds no image modality (text or metadata only)")
        return next(iter(self.modalities))

    @property
    def stats(self) -> dict[str, dict[str, dict[str, float]]]:
        return self.manifest.get("stats", {})

    def band_stats(self, modality: str, bands: Sequence[str] | None = None) -> tuple[list[float], list[float]]:
        """Training-split mean and std per band of a modality, in ``bands`` order."""
        spec = self.spec(modality)
        st = self.stats.get(modality, {})
        order = list(bands or spec.bands)
        try:
            return [st[b]["mean"] for b in order], [st[b]["std"] for b in order]
        except KeyError as e:
            raise ArchiveError(f"{self.path}: no statistics for band {e} of modality {modality}") from None

    def spec(self, modality: str | None = None) -> ModalitySpec:
        m = modality or self.primary_modality
        if m not in self.modalities:
            raise NotFoundError(f"modality {m!r} is not in this archive (it has {sorted(self.modalities)})")
        return self.modalities[m]

    def position(self, item: str | int) -> int:
        """Row position of an id (or a position, checked)."""
        if isinstance(item, (int, np.integer)):
            if not 0 <= int(item) < len(self):
                raise NotFoundError(f"position {item} is out of range (archive has {len(self)} items)")
            return int(item)
        try:
            return self._pos[str(item)]
        except KeyError:
            raise NotFoundError(f"id {item!r} is not in archive {self.path}") from None

    def position_map(self) -> dict[str, int]:
        """A copy of the id -> position map (it shares the key and position objects: only the table is new)."""
        return dict(self._pos)

    def has_modality(self, modality: str) -> np.ndarray:
        """Boolean mask over the rows: which items hold ``modality``'s data (vectorised over the catalog's
        Arrow list column)."""
        return list_contains(self.catalog["modalities"], modality)

    def item(self, item: str | int) -> dict[str, Any]:
        """Catalog row of one item as a plain dict."""
        row = self.catalog.iloc[self.position(item)].to_dict()
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()}

    @property
    def labels(self) -> np.ndarray:
        """N x C uint8 multi-hot label matrix in archive order."""
        if self._labels is None:
            c = len(self.nomenclature)
            self._labels = list_matrix(self.catalog["label_vec"], c, np.uint8, 0)
        return self._labels

    def split_positions(self, split: str | None) -> np.ndarray:
        """Positions of the items of one split (all items for None)."""
        if split is None:
            return np.arange(len(self))
        return np.flatnonzero(self.catalog["split"].to_numpy() == split)

    # -- tensor store ---------------------------------------------------------------------------------------
    def _store(self, position: int = 0) -> lmdb.Environment:
        # a sharded archive (rsir.data.shards) keeps its items in several LMDB files by position range
        shards = self.manifest.get("shards")
        if shards:
            i = bisect.bisect_right(self._shard_starts(), position) - 1
            return _open_shared_store(self.path / str(shards[i]["store"]))
        # LMDB handles must not cross fork(): reopen in each DataLoader worker
        if self._env is None or self._env_pid != os.getpid():
            self._env = _open_shared_store(self.path / STORE)
            self._env_pid = os.getpid()
        return self._env

    def _shard_starts(self) -> list[int]:
        return [int(sh["start"]) for sh in self.manifest["shards"]]

    def stored(self, item: str | int, modality: str | None = None) -> bytes:
        """The stored value of one item and modality as it is (safetensors bytes, or a compressed bitstream)."""
        m = self.spec(modality).name
        pos = self.position(item)
        item_id = self.ids[pos]
        with self._store(pos).begin(buffers=False) as txn:
            data = txn.get(f"{m}/{item_id}".encode())
        if data is None:
            raise NotFoundError(f"item {item_id!r} has no {m} data in {self.path}")
        return bytes(data)

    def compressed(self, modality: str | None = None) -> dict[str, Any] | None:
        """The codec entry of a compressed modality (method, codec dir, checksum), None for raw bands."""
        entry = self.manifest.get("compressed", {}).get(self.spec(modality).name)
        return dict(entry) if entry else None

    def codec(self, modality: str | None = None) -> Any:
        """The codec of a compressed modality, loaded on first use (torch is imported then)."""
        m = self.spec(modality).name
        if m not in self._codecs:
            entry = self.compressed(m)
            if entry is None:
                raise ArchiveError(f"{self.path}: modality {m} is stored as raw bands, not compressed")
            from rsir.data.codecs import load_archive_codec

            self._codecs[m] = load_archive_codec(self.path, entry)
        return self._codecs[m]

    def _decode(self, data: bytes, key: str, modality: str) -> dict[str, np.ndarray]:
        if self.compressed(modality) is None:
            return decode_value(data, key)
        try:
            return self.codec(modality).decode(data)  # type: ignore[no-any-return]
        except ValueError as e:  # BitstreamError
            raise ItemError(key, f"compressed bitstream cannot be decoded: {e}") from None

    def get(self, item: str | int, modality: str | None = None) -> dict[str, np.ndarray]:
        """Native-resolution bands {band: array} of one item and modality (decoded when compressed)."""
        m = self.spec(modality).name
        item_id = self.ids[self.position(item)]
        return self._decode(self.stored(item_id, m), f"{m}/{item_id}", m)

    def _get_many(self, positions: Sequence[int], modality: str) -> list[dict[str, np.ndarray]]:
        """Bands of several items; a compressed modality is entropy-decoded item by item (errors name the item)
        and synthesised as one batch."""
        if self.compressed(modality) is None:
            return [self.get(p, modality) for p in positions]
        codec = self.codec(modality)
        latents = []
        for p in positions:
            key = f"{modality}/{self.ids[p]}"
            try:
                latents.append(codec.latents([self.stored(p, modality)])[0])
            except ValueError as e:  # BitstreamError
                raise ItemError(key, f"compressed bitstream cannot be decoded: {e}") from None
        return codec.decode_latents(np.stack(latents)) if latents else []  # type: ignore[no-any-return]

    def band_groups(self, positions: Sequence[int], modality: str | None = None) -> list[BandGroup]:
        """The bands of several items stacked by native size, in the modality's band order (what
        :func:`rsir.data.bands.group_bands` makes of :meth:`get`'s dicts, read straight from the store: each band
        is copied once, from LMDB's memory map into the batch, instead of into bytes, a dict of arrays and a
        stack). A compressed modality, or a value this reader does not handle, goes through :meth:`get`."""
        spec = self.spec(modality)
        m, order = spec.name, list(spec.bands)
        pos = [int(p) for p in positions]
        if not pos or self.compressed(m) is not None:
            return self._grouped_by_get(pos, m, order)
        groups: list[BandGroup] | None = None
        where: list[tuple[int, int, str]] = []  # per band of ``order``: (group, slot in group, band name)
        layouts: dict[bytes, dict[str, tuple[np.dtype, tuple[int, ...], int]] | None] = {}
        first: dict[str, tuple[np.dtype, tuple[int, ...], int]] | None = None
        txns: dict[int, Any] = {}
        try:
            for j, p in enumerate(pos):
                env = self._store(p)
                txn = txns.get(id(env))
                if txn is None:
                    txn = txns[id(env)] = env.begin(buffers=True)
                data = txn.get(f"{m}/{self.ids[p]}".encode())
                if data is None:
                    raise NotFoundError(f"item {self.ids[p]!r} has no {m} data in {self.path}")
                head = bytes(data[:8 + min(int.from_bytes(data[:8], "little"), 1 << 20)])
                if head not in layouts:
                    layouts[head] = value_layout(data)
                lay = layouts[head]
                if lay is None or set(lay) != set(order):
                    return self._grouped_by_get(pos, m, order)
                if first is None:
                    first = lay
                    made = self._empty_groups(lay, order, len(pos))
                    if made is None:
                        return self._grouped_by_get(pos, m, order)
                    groups, where = made
                elif lay is not first and any(lay[b][:2] != first[b][:2] for b in order):
                    return self._grouped_by_get(pos, m, order)  # another dtype or size: group_bands decides
                assert groups is not None
                for (g, k, band) in where:
                    dt, shape, off = lay[band]
                    groups[g].data[j, k] = np.frombuffer(data, dt, shape[0] * shape[1], off).reshape(shape)
        finally:
            for txn in txns.values():
                txn.abort()
        assert groups is not None
        return groups

    def _grouped_by_get(self, pos: list[int], m: str, order: list[str]) -> list[BandGroup]:
        return group_bands(self._get_many(pos, m), order)

    @staticmethod
    def _empty_groups(layout: Mapping[str, tuple[np.dtype, tuple[int, ...], int]], order: Sequence[str], n: int
                      ) -> tuple[list[BandGroup], list[tuple[int, int, str]]] | None:
        """Empty band groups for ``n`` items of the first item's layout and where each band goes (None when a
        band is not 2-D: group_bands says so)."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, b in enumerate(order):
            by_shape.setdefault(layout[b][1], []).append(i)
        groups, where = [], []
        for g, (shape, idx) in enumerate(by_shape.items()):
            if len(shape) != 2:
                return None
            # np.stack's dtype for the group, in native byte order
            dtype = np.result_type(*[layout[order[i]][0] for i in idx]).newbyteorder("=")
            groups.append(BandGroup((int(shape[0]), int(shape[1])), idx, np.empty((n, len(idx), *shape), dtype)))
            where += [(g, k, order[i]) for k, i in enumerate(idx)]
        return groups, where

    def stored_batches(self, batch_size: int = 256, modality: str | None = None,
                       positions: Sequence[int] | None = None) -> Iterator[tuple[list[str], list[bytes]]]:
        """Yield (ids, stored values) batches in archive order, without decoding anything."""
        pos = np.asarray(positions) if positions is not None else np.arange(len(self))
        m = self.spec(modality).name
        for s in range(0, len(pos), batch_size):
            chunk = [int(p) for p in pos[s:s + batch_size]]
            yield [self.ids[p] for p in chunk], [self.stored(p, m) for p in chunk]

    def image(self, item: str | int, modality: str | None = None, bands: Sequence[str] | None = None,
              normalized: bool = True) -> np.ndarray:
        """Float32 CxHxW array on the modality's common grid, normalised with the training statistics."""
        spec = self.spec(modality)
        order = list(bands or spec.bands)
        mean, std = self.band_stats(spec.name, order) if normalized else (None, None)
        return to_grid(self.get(item, spec.name), order, spec.grid, mean=mean, std=std)

    def quicklook(self, item: str | int, modality: str | None = None) -> np.ndarray:
        """HxWx3 uint8 quicklook of one item (true colour or SAR false colour)."""
        return quicklook(self.get(item, modality))

    def batches(self, batch_size: int = 256, split: str | None = None, modality: str | None = None,
                positions: Sequence[int] | None = None, normalized: bool = True,
                progress: bool = False) -> Iterator[tuple[list[str], np.ndarray]]:
        """Yield (ids, N x C x H x W float32) batches in archive order."""
        pos = np.asarray(positions) if positions is not None else self.split_positions(split)
        it: Iterable[int] = range(0, len(pos), batch_size)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=math.ceil(len(pos) / batch_size), desc="reading", unit="batch")
        spec = self.spec(modality)
        order = list(spec.bands)
        mean, std = self.band_stats(spec.name, order) if normalized else (None, None)
        for s in it:
            chunk = pos[s:s + batch_size]
            x = assemble(self.band_groups(chunk.tolist(), spec.name), len(chunk), len(order), spec.grid, mean=mean,
                         std=std)
            yield [self.ids[p] for p in chunk], x

    # -- summaries ------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts per split, label and modality, band shapes and statistics, as a JSON-able dict."""
        cat = self.catalog
        label_counts = dict(zip(self.nomenclature.classes, self.labels.sum(0).tolist(), strict=True))
        mod_counts: dict[str, int] = {}
        for mods in cat["modalities"]:
            for m in mods:
                mod_counts[m] = mod_counts.get(m, 0) + 1
        paired = int(sum(1 for mods in cat["modalities"] if len(mods) > 1))
        return {
            "path": str(self.path),
            "source_format": self.manifest.get("source_format"),
            "n_items": len(self),
            "splits": {str(k): int(v) for k, v in cat["split"].value_counts().items()},
            "multi_modal_items": paired,
            "modalities": {m: {"items": mod_counts.get(m, 0), "bands": s.bands,
                               "shapes": {b: list(sh) for b, sh in s.shapes.items()}, "dtype": s.dtype,
                               "unit": s.unit, "grid": list(s.grid)} for m, s in self.modalities.items()},
            "nomenclature": self.nomenclature.name,
            "n_classes": len(self.nomenclature),
            "label_counts": {k: int(v) for k, v in label_counts.items() if v},
            "items_with_labels": int((self.labels.sum(1) > 0).sum()),
            "items_with_captions": int(sum(1 for c in cat["captions"] if c is not None and len(c))),
            "items_with_partner": int((cat["partner_id"].fillna("") != "").sum()),
            "stats_split": self.manifest.get("stats_split"),
            "stats": self.stats,
            "skipped": self.manifest.get("skipped", []),
            "conversions": self.manifest.get("conversions", []),
            "compressed": self.manifest.get("compressed", {}),
        }


def open_archive(path: str | Path) -> Archive:
    """Open an archive directory (clear error when it is missing, partial or foreign)."""
    return Archive(path)
