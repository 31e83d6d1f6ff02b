"""Search for change: a text-ITSR INDEX directory (pairs + change captions, :func:`rsir.pipeline.build_change_index`)
queried by a sentence (-> pairs), by a pair (-> sentences, or -> similar pairs).

Results use the engine's :class:`~rsir.query.engine.Results` / :class:`~rsir.query.engine.Hit` shapes; a pair hit's
record carries ``pair_id``, ``before`` and ``after`` (item ids), both dates, the split, the after item's place
(lon, lat, bbox, country) and the pair's captions; a sentence hit's record carries ``text`` and its ``pair_id``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.archive import Archive
from rsir.data.pairs import Pair, bitemporal_pairs
from rsir.errors import NotFoundError, RsirError
from rsir.index import Index, open_index
from rsir.pipeline import IndexDir, is_change_index
from rsir.query.engine import Hit, QueryLimits, Results
from rsir.query.items import QueryError

TARGETS = ("text", "pairs")


class ChangeEngine:
    """Text <-> bitemporal pair search over a text-ITSR index."""

    def __init__(self, index_dir: IndexDir, archive: Archive, limits: QueryLimits | None = None) -> None:
        self.index_dir = index_dir
        self.encoder: Any = index_dir.encoder
        self.pairs_index: Index = index_dir.index
        self.text_index: Index = open_index(index_dir.path / "text")
        self.archive = archive
        self.limits = limits or QueryLimits()
        self.method = index_dir.method
        pairs = [p for p in bitemporal_pairs(archive, None, self.encoder.modality) if p.has_images]
        self.pairs: dict[str, Pair] = {p.pair_id: p for p in pairs}
        # an item id (before or after) finds its pair too
        self.by_item: dict[str, str] = {i: p.pair_id for p in pairs for i in (p.before, p.after)}

    @classmethod
    def open(cls, index_path: str | Path, archive: Archive | str | Path | None = None,
             limits: QueryLimits | None = None) -> ChangeEngine:
        idx = IndexDir.open(index_path)
        if not is_change_index(idx.manifest):
            raise RsirError(f"{index_path} is not a change index (build one with rsir index ARCHIVE --model "
                            "TEXT_ITSR_MODEL)")
        arch = idx.archive(archive)
        if arch is None:
            raise RsirError(f"{index_path}: its archive {idx.manifest.get('archive')} is gone; pass the archive")
        return cls(idx, arch, limits)

    # -- records --------------------------------------------------------------------------------------------------
    def pair(self, pair_or_item: str) -> Pair:
        """A pair by its id or by the id of either of its images (NotFoundError names it otherwise)."""
        key = str(pair_or_item)
        p = self.pairs.get(key) or self.pairs.get(self.by_item.get(key, ""))
        if p is None:
            raise NotFoundError(f"pair {key!r} is not in this change index")
        return p

    def pair_record(self, p: Pair) -> dict[str, Any]:
        after = self.archive.item(p.after_pos)
        bbox = after.get("bbox")
        return {"id": p.pair_id, "pair_id": p.pair_id, "before": p.before, "after": p.after,
                "before_date": p.info.get("before_date", ""), "after_date": p.info.get("after_date", ""),
                "split": p.split, "captions": list(p.captions), "country": after.get("country") or "",
                "lon": _num(after.get("lon")), "lat": _num(after.get("lat")),
                "bbox": [float(x) for x in bbox] if bbox is not None and len(bbox) == 4 else None, "labels": []}

    def caption_record(self, cap_id: str) -> dict[str, Any]:
        pid, _, j = cap_id.rpartition("#")
        p = self.pairs[pid]
        return {"id": cap_id, "text": p.captions[int(j)], "pair_id": pid, "split": p.split, "labels": []}

    # -- ranking --------------------------------------------------------------------------------------------------
    def _check(self, k: int, offset: int) -> None:
        if not 1 <= k <= self.limits.max_k:
            raise QueryError(f"k must be between 1 and {self.limits.max_k}, got {k}")
        if not 0 <= offset <= self.limits.max_offset:
            raise QueryError(f"offset must be between 0 and {self.limits.max_offset}, got {offset}")

    def _ranked(self, index: Index, code: np.ndarray, need: int, keep: Any) -> list[tuple[str, int]]:
        n = len(index)
        kk = min(n, max(need, 1))
        while True:
            dist, ids = index.search(code[None], kk)
            out = [(str(i), int(d)) for d, i in zip(dist[0].tolist(), ids[0].tolist(), strict=True)
                   if i is not None and keep(str(i))]
            if len(out) >= need or kk >= n:
                return out[:need]
            kk = min(n, kk * 4)

    def _results(self, mode: str, ranked: list[tuple[str, int]], k: int, offset: int, record: Any,
                 matching: int, t0: float, query: dict[str, Any]) -> Results:
        hits = [Hit(r, -1, i, d, [], None, record(i))
                for r, (i, d) in enumerate(ranked[offset:offset + k], start=offset + 1)]
        return Results(mode, hits, k, offset, "hamming", matching, (time.perf_counter() - t0) * 1000, query)

    def _split_keep(self, split: str | None, pair_of: Any) -> Any:
        if split is None:
            return lambda i: True
        return lambda i: self.pairs[pair_of(i)].split == split

    def search_text(self, text: str, k: int = 10, offset: int = 0, split: str | None = None) -> Results:
        """Pairs whose change the sentence describes, nearest first."""
        t0 = time.perf_counter()
        self._check(k, offset)
        if not isinstance(text, str):
            raise QueryError("the query text must be a string")
        try:
            code = self.encoder.encode_query(text)  # empty or overlong text: a one-line error
        except RsirError as e:
            raise QueryError(str(e)) from None
        keep = self._split_keep(split, lambda i: i)
        ranked = self._ranked(self.pairs_index, code, offset + k, keep)
        matching = sum(1 for p in self.pairs.values() if split is None or p.split == split)
        return self._results("text->pairs", ranked, k, offset, lambda i: self.pair_record(self.pairs[i]),
                             matching, t0, {"text": text, "method": self.method})

    def search_pair(self, pair_or_item: str, k: int = 10, offset: int = 0, target: str = "text",
                    split: str | None = None) -> Results:
        """Sentences describing a pair's change (``target='text'``) or pairs with a similar change
        (``target='pairs'``, the pair itself left out)."""
        t0 = time.perf_counter()
        self._check(k, offset)
        if target not in TARGETS:
            raise QueryError(f"unknown target {target!r} (text or pairs)")
        p = self.pair(pair_or_item)
        code = np.asarray(self.pairs_index.get(np.array([p.pair_id], dtype=object)))[0]
        query = {"pair": self.pair_record(p), "target": target, "method": self.method}
        if target == "text":
            keep = self._split_keep(split, lambda i: i.rpartition("#")[0])
            ranked = self._ranked(self.text_index, code, offset + k, keep)
            return self._results("pair->text", ranked, k, offset, self.caption_record, len(self.text_index), t0,
                                 query)
        base = self._split_keep(split, lambda i: i)
        ranked = self._ranked(self.pairs_index, code, offset + k, lambda i: i != p.pair_id and base(i))
        return self._results("pair->pairs", ranked, k, offset, lambda i: self.pair_record(self.pairs[i]),
                             len(self.pairs) - 1, t0, query)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None
