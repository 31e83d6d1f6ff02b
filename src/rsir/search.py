"""The search pipeline: encoders (image -> code / vector), INDEX directories, and the Searcher.

An INDEX directory holds ``manifest.json`` (format ``rsir-index-dir``, version, archive path and its manifest's
``created`` stamp, modality, method, bits, metric, counts, build time, encoder type), ``encoder/`` (the
encoder's saved state) and ``index/`` (an ``rsir.index`` Index). It is written into a temporary sibling and
renamed into place. The web service and ``rsir eval`` use ``Searcher``; ``rsir index`` uses ``build_index``.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from rsir.data.archive import Archive, open_archive
from rsir.data.bands import to_grid
from rsir.errors import NotFoundError, RsirError
from rsir.hashing import Hasher, hasher_class
from rsir.hashing.features import FeatureExtractor
from rsir.index import FloatIndex, HammingIndex, Index, open_index
from rsir.index.base import replace_dir
from rsir.runtime import prefetch, tune_allocator

INDEX_DIR_FORMAT = "rsir-index-dir"
INDEX_DIR_VERSION = 1
METHODS = ("lsh", "itq", "klsh", "kslsh", "float")

#: encoder type -> "module:function(path) -> Encoder", imported lazily.
ENCODERS: dict[str, str] = {
    "classic": "rsir.search:load_feature_hash_encoder",
    "model": "rsir.models.encoder:load_model_encoder",
}

#: training items read to fit each classic method (kernel methods: m = 300 anchors, l = 2000 labelled).
FIT_SAMPLE = {"lsh": 20000, "itq": 20000, "klsh": 3000, "kslsh": 2000, "float": 20000}


class PipelineError(RsirError):
    """A search pipeline step was given something it cannot use (bad method, file, modality, index dir)."""


class Encoder(Protocol):
    """Maps N x C x H x W normalised images (as ``Archive.image`` returns) to codes or float vectors."""

    modality: str
    metric: str  # "hamming" (packed uint8 codes) | "ip" | "l2" (float32)
    dim: int  # bits for hamming, dimensions for float
    kind: str  # the ENCODERS key that loads it back

    def encode(self, images: np.ndarray) -> np.ndarray: ...

    def save(self, path: str | Path) -> Path: ...


class FeatureHashEncoder:
    """Hand-crafted features (standardised with training statistics) + a classic hasher, or the features alone."""

    kind: str = "classic"
    fit_items: int | None = None  # training items the features and the hasher were fitted on

    def __init__(self, modality: str, extractor: FeatureExtractor, hasher: Hasher | None) -> None:
        self.modality = modality
        self.extractor = extractor
        self.hasher = hasher
        self.method = hasher.name if hasher is not None else "float"
        self.metric = "hamming" if hasher is not None else "l2"
        self.dim = hasher.bits if hasher is not None else extractor.dim

    @classmethod
    def fit(cls, archive: Archive, method: str, bits: int, modality: str, seed: int = 0,
            sample: int | None = None, progress: bool = False) -> FeatureHashEncoder:
        """Fit features + hasher on (a sample of) the training split; KSLSH also reads the training labels."""
        if method not in METHODS:
            raise PipelineError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
        spec = archive.spec(modality)
        pos = archive.split_positions("train")
        if pos.size == 0:
            pos = archive.split_positions(None)
        cap = sample or FIT_SAMPLE[method]
        if pos.size > cap:
            pos = np.sort(np.random.default_rng(seed).choice(pos, cap, replace=False))
        mean, std = archive.band_stats(spec.name, spec.bands)
        extractor = FeatureExtractor(spec.bands, mean, std)
        raw = np.concatenate([extractor.raw(x) for _, x in archive.batches(256, modality=spec.name,
                                                                           positions=pos.tolist(),
                                                                           progress=progress)])
        extractor.fit(raw)
        feats = ((raw - extractor.mu) / extractor.sd).astype(np.float32)
        hasher = None
        if method != "float":
            hasher = hasher_class(method)(bits, seed=seed)
            labels = archive.labels[pos] if hasher.supervised else None
            hasher.fit(feats, labels)
        enc = cls(spec.name, extractor, hasher)
        enc.fit_items = int(pos.size)
        return enc

    def features(self, images: np.ndarray) -> np.ndarray:
        """Standardised hand-crafted features (N, F) float32."""
        return self.extractor(images)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Packed codes (hashers) or float32 standardised features ("float")."""
        f = self.features(images)
        return f if self.hasher is None else self.hasher.encode(f)

    def save(self, path: str | Path) -> Path:
        """Write encoder.json, features.safetensors and hasher/ into directory ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.hasher is not None:
            self.hasher.save(path / "hasher")
        (path / "features.safetensors").write_bytes(st_save(self.extractor.state()))
        meta = {"type": self.kind, "modality": self.modality, "bands": self.extractor.bands, "method": self.method,
                "metric": self.metric, "dim": self.dim}
        (path / "encoder.json").write_text(json.dumps(meta, indent=2))
        return path


def load_feature_hash_encoder(path: str | Path) -> FeatureHashEncoder:
    """Load a FeatureHashEncoder saved by ``FeatureHashEncoder.save``."""
    path = Path(path)
    try:
        meta = json.loads((path / "encoder.json").read_text())
        arrays = st_load((path / "features.safetensors").read_bytes())
    except (OSError, ValueError) as e:
        raise PipelineError(f"{path}: damaged classic encoder ({e})") from None
    extractor = FeatureExtractor.from_state(meta["bands"], arrays)
    hasher = Hasher.load(path / "hasher") if meta["method"] != "float" else None
    return FeatureHashEncoder(meta["modality"], extractor, hasher)


def load_encoder(encoder_type: str, path: str | Path) -> Encoder:
    """Load a saved encoder through the ENCODERS registry (lazy import, clear error when unavailable)."""
    if encoder_type not in ENCODERS:
        raise PipelineError(f"unknown encoder type {encoder_type!r} (known: {', '.join(sorted(ENCODERS))})")
    module, _, fn = ENCODERS[encoder_type].partition(":")
    try:
        loader = getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError) as e:
        raise PipelineError(f"encoder type {encoder_type!r} is not available in this installation "
                            f"({ENCODERS[encoder_type]}: {e})") from None
    return loader(path)  # type: ignore[no-any-return]


def make_index(metric: str, dim: int, kind: str = "flat", n: int = 0, seed: int = 0) -> Index:
    """An empty index for an encoder's metric: HammingIndex (flat / ivf / mih) or FloatIndex."""
    if metric == "hamming":
        if dim % 8:
            raise PipelineError(f"--bits must be a multiple of 8 for a Hamming index, got {dim}")
        nlist = max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39)) if kind == "ivf" else None
        return HammingIndex(dim, mode=kind, nlist=nlist, seed=seed)
    if kind != "flat":
        raise PipelineError(f"index kind {kind!r} is only for binary codes; float indexes are flat")
    return FloatIndex(dim, metric)


def build_index(archive: Archive | str | Path, out: str | Path, method: str = "lsh", bits: int = 64,
                modality: str | None = None, index_kind: str = "flat", seed: int = 0, encoder: Encoder | None = None,
                progress: bool = True, batch_size: int = 64, fit_sample: int | None = None) -> Path:
    """Fit (unless ``encoder`` is given), encode every archive item, index the codes, write an INDEX dir.

    ``fit_sample`` caps the training items a classic method is fitted on (default :data:`FIT_SAMPLE`).
    """
    t0 = time.perf_counter()
    arch = archive if isinstance(archive, Archive) else open_archive(archive)
    if encoder is None:
        if bits % 8 and method != "float":
            raise PipelineError(f"--bits must be a multiple of 8, got {bits}")
        mod = modality or arch.primary_modality
        if fit_sample is not None and fit_sample < 2:
            raise PipelineError(f"--fit-sample must be at least 2, got {fit_sample}")
        encoder = FeatureHashEncoder.fit(arch, method, bits, mod, seed=seed, sample=fit_sample, progress=progress)
    mod = encoder.modality
    arch.spec(mod)  # clear error when the archive lacks the encoder's modality
    index = make_index(encoder.metric, encoder.dim, index_kind, n=len(arch), seed=seed)
    all_ids: list[str] = []
    chunks: list[np.ndarray] = []
    tune_allocator()
    # reading the next batch (LMDB, decoding, resampling) overlaps with encoding this one
    for ids, x in prefetch(arch.batches(batch_size, modality=mod, progress=progress), depth=2):
        all_ids += ids
        chunks.append(encoder.encode(x))
    if chunks:
        index.add(np.array(all_ids, dtype=object), np.concatenate(chunks))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}-{time.monotonic_ns()}")
    try:
        tmp.mkdir()
        encoder.save(tmp / "encoder")
        index.save(tmp / "index")
        manifest = {
            "format": INDEX_DIR_FORMAT, "version": INDEX_DIR_VERSION,
            "archive": str(arch.path.resolve()), "archive_created": arch.manifest.get("created"),
            "modality": mod, "method": getattr(encoder, "method", method), "encoder_type": encoder.kind,
            "bits": encoder.dim if encoder.metric == "hamming" else None, "dim": encoder.dim,
            "metric": encoder.metric, "index_kind": index_kind, "count": len(index), "archive_items": len(arch),
            "seed": seed, "fit_items": getattr(encoder, "fit_items", None),
            "build_seconds": round(time.perf_counter() - t0, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass
class Searcher:
    """An opened INDEX directory: search by archive id, by image, by uploaded file, or by code / vector."""

    index: Index
    encoder: Encoder
    manifest: dict[str, Any]
    archive: Archive | None
    path: Path

    @classmethod
    def open(cls, index_dir: str | Path, archive: Archive | str | Path | None = None) -> Searcher:
        """Open an INDEX dir; the archive comes from the manifest's path unless given (None if it is gone)."""
        path = Path(index_dir)
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except FileNotFoundError:
            raise PipelineError(f"{path}: not an rsir index directory (no manifest.json)") from None
        except (OSError, ValueError) as e:
            raise PipelineError(f"{path}/manifest.json: damaged ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != INDEX_DIR_FORMAT:
            raise PipelineError(f"{path}: not an rsir index directory (format "
                                f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
        if int(manifest.get("version", -1)) > INDEX_DIR_VERSION:
            raise PipelineError(f"{path}: index directory version {manifest['version']} is newer than this rsir")
        index = open_index(path / "index")
        encoder = load_encoder(str(manifest.get("encoder_type", "classic")), path / "encoder")
        arch: Archive | None
        if isinstance(archive, Archive):
            arch = archive
        elif archive is not None:
            arch = open_archive(archive)
        else:
            arch = open_archive(manifest["archive"]) if Path(manifest.get("archive", "")).is_dir() else None
        return cls(index, encoder, manifest, arch, path)

    # -- results --
    def _labels(self, item: Any) -> list[str] | None:
        if self.archive is None:
            return None
        try:
            return list(self.archive.item(str(item)).get("labels") or [])
        except NotFoundError:
            return None

    def _results(self, dist: np.ndarray, ids: np.ndarray, query_labels: list[str] | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        qset = set(query_labels) if query_labels else None
        for d, i in zip(dist, ids, strict=True):
            if i is None or (not isinstance(i, str) and int(i) < 0):
                continue
            labels = self._labels(i)
            dv = float(d)
            out.append({"rank": len(out) + 1, "id": str(i),
                        "distance": int(dv) if self.index.metric == "hamming" else dv, "labels": labels,
                        "shares_label": None if qset is None or labels is None else bool(qset & set(labels))})
        return out

    # -- searching --
    def search_vectors(self, vectors: np.ndarray, k: int = 10, query_labels: list[str] | None = None
                       ) -> list[list[dict[str, Any]]]:
        """Search with codes (packed uint8) or float vectors as the encoder produces them; one list per query."""
        dist, ids = self.index.search(vectors, k)
        return [self._results(dist[i], ids[i], query_labels) for i in range(dist.shape[0])]

    def search_id(self, item: str, k: int = 10, exclude_self: bool = True) -> list[dict[str, Any]]:
        """Results for an indexed archive item (its stored code is the query); the item itself is left out."""
        code = self.index.get([str(item)])
        qlabels = self._labels(item)
        res = self.search_vectors(code, k + 1 if exclude_self else k, qlabels)[0]
        if exclude_self:
            res = [r for r in res if r["id"] != str(item)][:k]
            for rank, r in enumerate(res, 1):
                r["rank"] = rank
        return res

    def encode_image(self, image: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        """Encode one image: a normalised CxHxW array, or a dict band -> raw array (resampled + normalised)."""
        if isinstance(image, Mapping):
            image = self.prepare_bands(image)
        x = np.asarray(image, dtype=np.float32)
        if x.ndim != 3:
            raise PipelineError(f"expected one C x H x W image, got shape {x.shape}")
        return self.encoder.encode(x[None])

    def search_image(self, image: np.ndarray | Mapping[str, np.ndarray], k: int = 10,
                     query_labels: list[str] | None = None) -> list[dict[str, Any]]:
        """Results for an image that need not be in the archive."""
        return self.search_vectors(self.encode_image(image), k, query_labels)[0]

    def bands(self) -> list[str]:
        """Band names the encoder's modality expects, in order."""
        if self.archive is not None:
            return list(self.archive.spec(self.encoder.modality).bands)
        extractor = getattr(self.encoder, "extractor", None)
        if extractor is None:
            raise PipelineError("the archive of this index is not available, band order unknown")
        return list(extractor.bands)

    def prepare_bands(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Raw band arrays -> normalised CxHxW on the modality's grid, with the archive's training statistics."""
        if self.archive is None:
            raise PipelineError("raw bands need the index's archive (for the grid and band statistics)")
        spec = self.archive.spec(self.encoder.modality)
        missing = [b for b in spec.bands if b not in arrays]
        if missing:
            raise PipelineError(f"modality {spec.name} needs bands {', '.join(spec.bands)}; missing "
                                f"{', '.join(missing)}")
        mean, std = self.archive.band_stats(spec.name, spec.bands)
        return to_grid({b: np.asarray(arrays[b]) for b in spec.bands}, spec.bands, spec.grid, mean=mean, std=std)

    def read_file(self, path: str | Path) -> dict[str, np.ndarray]:
        """Band arrays of an uploaded .npz (one array per band name) or GeoTIFF (bands in modality order)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
            except (OSError, ValueError) as e:
                raise PipelineError(f"{path}: unreadable .npz ({e})") from None
            if len(arrays) == 1 and next(iter(arrays.values())).ndim == 3:
                stack = next(iter(arrays.values()))
                arrays = self._stack_to_bands(path, stack)
            return arrays
        if suffix in (".tif", ".tiff"):
            import rasterio
            from rasterio.errors import RasterioIOError

            try:
                with rasterio.open(path) as src:
                    stack = src.read()
            except RasterioIOError as e:
                raise PipelineError(f"{path}: unreadable GeoTIFF ({e})") from None
            return self._stack_to_bands(path, stack)
        raise PipelineError(f"{path}: unsupported file type {suffix!r} (use .npz or .tif)")

    def _stack_to_bands(self, path: Path, stack: np.ndarray) -> dict[str, np.ndarray]:
        order = self.bands()
        if stack.shape[0] != len(order):
            raise PipelineError(f"{path}: {stack.shape[0]} bands, but modality {self.encoder.modality} needs "
                                f"{len(order)} ({', '.join(order)})")
        return {b: stack[i] for i, b in enumerate(order)}

    def encode_file(self, path: str | Path) -> np.ndarray:
        """Code / vector (1, dim) of an uploaded .npz or GeoTIFF."""
        return self.encode_image(self.read_file(path))

    def search_file(self, path: str | Path, k: int = 10) -> list[dict[str, Any]]:
        """Results for an uploaded .npz or GeoTIFF."""
        return self.search_vectors(self.encode_file(path), k)[0]
