"""INDEX directories: build one from an archive (fit or load an encoder, encode every item, index the codes) and
open one again.

An INDEX directory holds ``manifest.json`` (format ``rsir-index-dir``, version, archive path and its manifest's
``created`` stamp, modality, method, encoder type, metric, dim, kind, counts, build time), ``encoder/`` (the
encoder's saved state, :mod:`rsir.encoding`) and ``index/`` (an :mod:`rsir.index` Index). It is written with
:func:`rsir.storage.atomic_dir`, so a half-built INDEX directory never looks complete.

An encoder that also encodes sentences (a text-image model, ``encode_text``) adds ``text/``: ``text/index`` holds
the codes of every caption of the archive (ids ``<item id>#<n>``) and ``text/captions.json`` the captions
themselves as ``[caption id, item id, caption]`` rows; the manifest's ``text`` records their count.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.archive import Archive, open_archive
from rsir.encoding import Encoder, load_encoder
from rsir.errors import NotFoundError, RsirError
from rsir.hashing.encoder import FeatureHashEncoder
from rsir.index import Index, make_index, open_index
from rsir.runtime import prefetch, tune_allocator
from rsir.storage import StorageError, atomic_dir, read_manifest, utc_stamp, write_manifest

INDEX_DIR_FORMAT = "rsir-index-dir"
# version 2 dropped the duplicate "bits" (= "dim" for hamming) and renamed "index_kind" to "kind"
INDEX_DIR_VERSION = 2
DEFAULT_BITS = 64


class PipelineError(RsirError):
    """A pipeline step was given something it cannot use (bad method, bits, modality, index directory)."""


@dataclass
class IndexDir:
    """An opened INDEX directory: its manifest, Index and Encoder."""

    path: Path
    manifest: dict[str, Any]
    index: Index
    encoder: Encoder
    _captions: tuple[Index, list[list[str]]] | None = None

    @property
    def has_text(self) -> bool:
        """Whether the index holds caption codes and its encoder encodes sentences."""
        return bool(self.manifest.get("text")) and hasattr(self.encoder, "encode_text_query")

    def caption_index(self) -> tuple[Index, list[list[str]]]:
        """(index of caption codes, rows [caption id, item id, caption]); loaded on first use."""
        if self._captions is None:
            if not self.manifest.get("text"):
                raise PipelineError(f"{self.path} holds no caption codes (it was not built with a text model)")
            rows = json.loads((self.path / "text" / "captions.json").read_text(encoding="utf-8"))
            self._captions = (open_index(self.path / "text" / "index"), rows)
        return self._captions

    @staticmethod
    def read_manifest(path: str | Path) -> dict[str, Any]:
        """The manifest of an INDEX directory (format and version checked), without loading anything else."""
        try:
            return read_manifest(path, INDEX_DIR_FORMAT, INDEX_DIR_VERSION, PipelineError,
                                 what="index directory", verify=False)
        except StorageError as e:
            raise PipelineError(str(e)) from None

    @classmethod
    def open(cls, path: str | Path, model: str | Path | None = None) -> IndexDir:
        """Open an INDEX directory; ``model`` (a model directory) replaces the saved encoder and must produce the
        vectors the index holds."""
        path = Path(path)
        manifest = cls.read_manifest(path)
        index = open_index(path / "index")
        encoder = load_encoder(str(manifest.get("encoder_type", "classic")), path / "encoder")
        if model is not None:
            from rsir.encoding import model_encoder_type

            encoder = load_encoder(model_encoder_type(model), model)
            if (encoder.metric, encoder.dim) != (index.metric, index.dim):
                raise PipelineError(f"model {model} makes {encoder.dim}-dim {encoder.metric} vectors, the index "
                                    f"holds {index.dim}-dim {index.metric} vectors")
        return cls(path, manifest, index, encoder)

    @property
    def modality(self) -> str:
        """The modality whose codes the index holds."""
        return str(self.manifest.get("modality") or self.encoder.modality)

    @property
    def method(self) -> str:
        """What made the vectors (hasher name, ``float`` or the model's method)."""
        return str(self.manifest.get("method") or getattr(self.encoder, "method", "index"))

    @property
    def kind(self) -> str:
        """The index's search structure (flat, ivf, mih)."""
        return str(self.manifest.get("kind", self.manifest.get("index_kind", "flat")))

    @property
    def modalities(self) -> list[str]:
        """Modalities whose codes the index holds (a cross-modal index keys them ``<modality>/<id>``)."""
        mods = self.manifest.get("modalities")
        return [str(m).lower() for m in mods] if mods else [self.modality.lower()]

    def vectors(self, ids: list[str], modality: str | None = None) -> np.ndarray:
        """Stored codes / vectors of archive items, in the order given, for one of the indexed modalities
        (default: the index's own modality, the model's home one in a cross-modal index)."""
        mods = self.modalities
        own = str(self.manifest.get("modality") or mods[0]).lower()
        modality = (modality or (own if own in mods else mods[0])).lower()
        if modality not in mods:
            raise PipelineError(f"{self.path} holds codes of {', '.join(mods)}, not {modality}")
        keys = [f"{modality}/{i}" for i in ids] if len(mods) > 1 else [str(i) for i in ids]
        try:
            return np.asarray(self.index.get(np.array(keys, dtype=object)))
        except NotFoundError as e:
            raise PipelineError(f"{self.path} lacks an archive item ({e}); was it built from this archive?"
                                ) from None

    def archive(self, override: Archive | str | Path | None = None) -> Archive | None:
        """The archive it was built from (``override`` if given), or None when that path is gone."""
        if isinstance(override, Archive):
            return override
        if override is not None:
            return open_archive(override)
        recorded = self.manifest.get("archive")
        return open_archive(recorded) if recorded and Path(recorded).is_dir() else None


def encode_locally(arch: Archive, encoder: Encoder, modality: str, batch_size: int, progress: bool
                   ) -> Iterator[tuple[list[str], np.ndarray]]:
    """(ids, vectors) of every archive item in archive order, in batches, encoded in this process."""
    # reading the next batch (LMDB, decoding, resampling) overlaps with encoding this one
    for ids, x in prefetch(arch.batches(batch_size, modality=modality, progress=progress), depth=2):
        yield ids, np.asarray(encoder.encode(x))


def index_attributes(labels: np.ndarray, split: Sequence[Any], country: Sequence[Any], date: Sequence[Any],
                     lon: Sequence[Any], lat: Sequence[Any], bbox: Sequence[Any]) -> dict[str, list[Any]]:
    """The scalar fields a filtering backend stores per row, with the query engine's filter semantics: label
    indices, split, country (lower case), date (first 10 characters) as hex of their UTF-8 bytes, centre and
    footprint with has_* flags."""
    out: dict[str, list[Any]] = {k: [] for k in ("labels", "split", "country", "date", "lon", "lat", "has_loc",
                                                 "min_lon", "min_lat", "max_lon", "max_lat", "has_bbox")}
    for i in range(len(split)):
        x, y = _finite(lon[i]), _finite(lat[i])
        b = bbox[i]
        box = [float(v) for v in b] if b is not None and len(b) == 4 else [np.nan] * 4
        has_box = bool(np.isfinite(box).all())
        out["labels"].append(np.flatnonzero(np.asarray(labels[i])).tolist())
        # text as the hex of its UTF-8 bytes (rsir.query.items.hex_text): filter literals need no escaping
        out["split"].append(("" if split[i] is None else str(split[i])).encode().hex())
        out["country"].append(("" if country[i] is None else str(country[i])).lower().encode().hex())
        out["date"].append(("" if date[i] is None else str(date[i]))[:10].encode().hex())
        out["has_loc"].append(bool(np.isfinite(x) and np.isfinite(y)))
        out["lon"].append(x if np.isfinite(x) else 0.0)
        out["lat"].append(y if np.isfinite(y) else 0.0)
        out["has_bbox"].append(has_box)
        for k, v in zip(("min_lon", "min_lat", "max_lon", "max_lat"), box, strict=True):
            out[k].append(v if has_box else 0.0)
    return out


def _finite(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f if np.isfinite(f) else float("nan")


def archive_attributes(arch: Archive, ids: list[str]) -> dict[str, list[Any]]:
    """:func:`index_attributes` of archive items (by id) from the catalog."""
    pos = [arch.position(i) for i in ids]
    cat = arch.catalog.iloc[pos]
    return index_attributes(arch.labels[pos], cat["split"].tolist(), cat["country"].tolist(), cat["date"].tolist(),
                            cat["lon"].tolist(), cat["lat"].tolist(), cat["bbox"].tolist())


#: how the items are encoded: (archive, encoder, modality, batch_size, progress) -> (ids, vectors) in archive order
EncodeBatches = Callable[[Archive, Encoder, str, int, bool], Iterable[tuple[list[str], np.ndarray]]]


def build_index(archive: Archive | str | Path, out: str | Path, method: str = "lsh", bits: int | None = None,
                modality: str | None = None, kind: str = "flat", seed: int = 0, encoder: Encoder | None = None,
                progress: bool = True, batch_size: int = 64, fit_sample: int | None = None,
                encode_batches: EncodeBatches | None = None, backend_options: dict[str, Any] | None = None
                ) -> Path:
    """Fit a classic encoder (unless ``encoder`` is given), encode every archive item, index the codes and write
    an INDEX directory at ``out``.

    ``bits`` is the code length of a classic hasher (default 64); with a given encoder it may only repeat the
    encoder's own length. ``fit_sample`` caps the training items a classic method is fitted on.
    ``encode_batches`` replaces the local encoding loop (``rsir.scale`` encodes on a Dask cluster); the vectors
    arrive in archive order and are indexed together when the last one is in. ``backend_options`` go to ``make_index`` (e.g. the
    Milvus URI).
    """
    t0 = time.perf_counter()
    arch = archive if isinstance(archive, Archive) else open_archive(archive)
    if encoder is None:
        encoder = FeatureHashEncoder.fit(arch, method, bits or DEFAULT_BITS, modality or arch.primary_modality,
                                         seed=seed, sample=fit_sample, progress=progress)
    elif bits is not None and encoder.metric == "hamming" and bits != encoder.dim:
        raise PipelineError(f"--bits {bits} does not match the model, which makes {encoder.dim}-bit codes "
                            "(leave --bits out with --model)")
    # a cross-modal encoder (ss-cm) writes the codes of every modality it encodes into one index, keyed
    # "<modality>/<id>"; items without a modality's data are left out of that modality
    mods = [m for m in getattr(encoder, "modalities", [encoder.modality])]
    cross = len(mods) > 1
    if modality is not None and cross:
        raise PipelineError(f"--modality {modality}: a cross-modal model indexes all of its modalities "
                            f"({', '.join(mods)}) into one index; leave --modality out and pick the direction "
                            "when searching (--from / --target)")
    if modality is not None and modality != encoder.modality:
        raise PipelineError(f"--modality {modality} does not match the encoder, which encodes {encoder.modality}")
    mod = encoder.modality
    arch.spec(mod)  # clear error when the archive lacks the encoder's modality
    for m in mods:
        if m not in arch.modalities:
            raise PipelineError(f"the model encodes {', '.join(mods)}, but archive {arch.path} has no {m} data "
                                f"(it has {', '.join(arch.modalities)})")
    if cross and encode_batches is not None:
        raise PipelineError("a cross-modal model is encoded in this process (--dask handles single-modality models)")
    index = make_index(encoder.metric, encoder.dim, kind, seed=seed, **(backend_options or {}))
    all_ids: list[str] = []
    chunks: list[np.ndarray] = []
    counts: dict[str, int] = {}
    tune_allocator()
    reads_stored = getattr(encoder, "reads_stored", None)
    from_stream = bool(reads_stored is not None and not cross and reads_stored(arch, mod))
    for m in mods:
        enc = encoder.view(m) if cross else encoder  # type: ignore[attr-defined]
        n0 = len(all_ids)
        if cross:
            pos = np.flatnonzero(arch.has_modality(m)).tolist()
            # the model's view reads the archive itself: native-size band groups through its stem, batches on
            # two threads or more (rsir.models.crossmodal.encode_archive)
            for ids, codes in enc.encode_archive(arch, pos, batch_size, progress):  # type: ignore[union-attr]
                all_ids += [f"{m}/{i}" for i in ids]
                chunks.append(codes)
        elif from_stream:
            # a compressed archive of this codec: codes from the bitstreams, no pixels are reconstructed
            for ids, streams in prefetch(arch.stored_batches(batch_size, modality=m), depth=2):
                all_ids += ids
                chunks.append(encoder.encode_stored(ids, streams))  # type: ignore[attr-defined]
        else:
            for ids, vecs in (encode_batches or encode_locally)(arch, enc, m, batch_size, progress):
                all_ids += ids
                chunks.append(vecs)
        counts[m] = len(all_ids) - n0
    # one add at the end: IVF trains on its first add, and each add checks the new ids against all stored ones
    if chunks:
        ids_arr, vecs = np.array(all_ids, dtype=object), np.concatenate(chunks)
        if hasattr(index, "add_with_attributes") and not cross:  # a backend that filters inside its search
            index.add_with_attributes(ids_arr, vecs, archive_attributes(arch, all_ids))
        else:
            index.add(ids_arr, vecs)
    text = caption_codes(arch, encoder, kind, seed, progress) if hasattr(encoder, "encode_text") else None
    with atomic_dir(out) as tmp:
        encoder.save(tmp / "encoder")
        index.save(tmp / "index")  # an auto index chooses its structure here
        if text is not None:
            text[0].save(tmp / "text" / "index")
            (tmp / "text" / "captions.json").write_text(json.dumps(text[1]), encoding="utf-8")
        write_manifest(tmp, {
            "format": INDEX_DIR_FORMAT, "version": INDEX_DIR_VERSION,
            "archive": str(arch.path.resolve()), "archive_created": arch.manifest.get("created"),
            "modality": mod, **({"modalities": mods, "modality_counts": counts} if cross else {}),
            "method": encoder.method, "encoder_type": encoder.encoder_type,
            "metric": encoder.metric, "dim": encoder.dim, "kind": kind, "count": len(index),
            "backend": index.backend,
            "structure": index.describe() if hasattr(index, "describe") else kind,
            "archive_items": len(arch), "from_stream": from_stream, "seed": seed, "fit_items": getattr(encoder, "fit_items", None),
            "build_seconds": round(time.perf_counter() - t0, 3), "created": utc_stamp(),
            "text": {"captions": len(text[1]), "items_with_captions": len({r[1] for r in text[1]})}
            if text is not None else None,
        })
    if hasattr(index, "close"):  # a Milvus Lite file can be opened by one process at a time: let go of it
        index.close()
    return Path(out)


def caption_codes(arch: Archive, encoder: Any, kind: str = "flat", seed: int = 0, progress: bool = True
                  ) -> tuple[Index, list[list[str]]]:
    """Index of the codes of every caption of the archive, and its rows [caption id, item id, caption]."""
    rows: list[list[str]] = []
    col = arch.catalog["captions"] if "captions" in arch.catalog.columns else None
    if col is not None:
        for item_id, caps in zip(arch.ids, col, strict=True):
            for j, c in enumerate(caps if caps is not None else []):
                if str(c).strip():
                    rows.append([f"{item_id}#{j}", str(item_id), str(c).strip()])
    index = make_index(encoder.metric, encoder.dim, kind, seed=seed)
    if rows:
        codes = encoder.encode_text([r[2] for r in rows], progress=progress)
        index.add(np.array([r[0] for r in rows], dtype=object), codes)
    return index, rows


def is_change_index(manifest: dict[str, Any]) -> bool:
    """Whether an INDEX directory holds bitemporal pairs and their sentences (a text-ITSR index)."""
    return manifest.get("content") == "pairs"


def build_change_index(archive: Archive | str | Path, out: str | Path, model: str | Path, kind: str = "flat",
                       progress: bool = True, batch_size: int = 32) -> Path:
    """Encode every bitemporal pair of the archive (both images present) and every change caption with a text-ITSR
    model; write an INDEX directory whose ``index/`` holds the pairs' codes (ids = pair ids) and ``text/`` the
    captions' codes (ids ``<pair id>#<n>``, n = the caption's place in the pair's list)."""
    from rsir.data.pairs import bitemporal_pairs, check_pair_images

    t0 = time.perf_counter()
    arch = archive if isinstance(archive, Archive) else open_archive(archive)
    encoder = load_encoder("text-itsr", model)
    mod = encoder.modality
    arch.spec(mod)
    pairs = [p for p in bitemporal_pairs(arch, None, mod) if p.has_images]
    if not pairs:
        raise PipelineError(f"{arch.path} holds no bitemporal pairs with {mod} images to index")
    pair_index = make_index("hamming", encoder.dim, kind)
    text_index = make_index("hamming", encoder.dim, kind)
    tune_allocator()
    steps: Any = range(0, len(pairs), batch_size)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="encoding pairs", unit="batch")
    for s in steps:
        chunk = pairs[s:s + batch_size]
        xs = []
        for p in chunk:
            a, b = arch.image(p.before_pos, mod), arch.image(p.after_pos, mod)
            check_pair_images(p.pair_id, a, b)
            xs.append(np.concatenate([a, b]))
        pair_index.add(np.array([p.pair_id for p in chunk], dtype=object), encoder.encode(np.stack(xs)))
    cap_ids = [f"{p.pair_id}#{j}" for p in pairs for j in range(len(p.captions))]
    caps = [c for p in pairs for c in p.captions]
    if caps:
        text_index.add(np.array(cap_ids, dtype=object), encoder.encode_text(caps))  # type: ignore[attr-defined]
    with atomic_dir(out) as tmp:
        encoder.save(tmp / "encoder")
        pair_index.save(tmp / "index")
        text_index.save(tmp / "text")
        write_manifest(tmp, {
            "format": INDEX_DIR_FORMAT, "version": INDEX_DIR_VERSION, "content": "pairs",
            "archive": str(arch.path.resolve()), "archive_created": arch.manifest.get("created"),
            "modality": mod, "modalities": ["pair", "text"], "method": encoder.method,
            "encoder_type": encoder.encoder_type, "metric": "hamming", "dim": encoder.dim, "kind": kind,
            "count": len(pair_index), "captions": len(text_index), "archive_items": len(arch),
            "build_seconds": round(time.perf_counter() - t0, 3), "created": utc_stamp(),
        })
    return Path(out)
