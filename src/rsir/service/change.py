"""Change search in the service: routes over a text-ITSR index (rsir.query.change.ChangeEngine) beside the
collection's own index. ``rsir serve ARCHIVE --index INDEX --change CHANGE_INDEX`` mounts them; the page then shows a
"Change" tab.

* ``GET /api/change`` -- what the change index holds (method, bits, pairs, captions per split);
* ``POST /api/change/search/text`` {text, k, offset, split} -> pairs, each with before/after quicklook URLs and the
  URL of its difference view;
* ``POST /api/change/search/pair`` {pair, k, offset, target: text|pairs, split} -> sentences or similar pairs;
* ``GET /api/change/pairs`` ?offset&limit&split -> pairs to browse;
* ``GET /api/change/pairs/{pair}/difference.png`` -- |after - before| of the true-colour quicklooks, stretched.

Every answer is bounded (k, offset and the page size by the service limits; the text by ``max_text_chars``); no
request names a path.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from rsir.data.bands import png_bytes
from rsir.query.change import ChangeEngine


class ChangeTextQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)
    k: int = 10
    offset: int = 0
    split: str | None = None


class ChangePairQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pair: str = Field(min_length=1, max_length=512)
    k: int = 10
    offset: int = 0
    target: Literal["text", "pairs"] = "text"
    split: str | None = None


def difference_image(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8: |after - before| of two quicklooks, grey where nothing changed, stretched so that the
    99th percentile of the change is white."""
    d = np.abs(after.astype(np.int16) - before.astype(np.int16)).max(axis=2).astype(np.float32)
    hi = float(np.percentile(d, 99)) if d.size else 0.0
    v = np.clip(d / hi, 0, 1) if hi > 0 else np.zeros_like(d)
    return np.repeat((v * 255).astype(np.uint8)[..., None], 3, axis=2)


def add_change_routes(app: FastAPI, change: ChangeEngine, prefix: str, max_text_chars: int, page_limit: int = 100,
                      cache_size: int = 256) -> None:
    """Mount the change routes on ``app`` (whose item quicklook route serves both dates)."""
    cache: OrderedDict[str, bytes] = OrderedDict()
    lock = threading.Lock()
    mod = change.encoder.modality

    def ql(item_id: str) -> str:
        return f"{prefix}/api/items/{quote(item_id, safe='')}/quicklook.png?modality={quote(mod, safe='')}"

    def pair_json(rec: dict[str, Any]) -> dict[str, Any]:
        rec = dict(rec)
        rec["before_quicklook"] = ql(rec["before"])
        rec["after_quicklook"] = ql(rec["after"])
        rec["difference"] = f"{prefix}/api/change/pairs/{quote(rec['pair_id'], safe='')}/difference.png"
        return rec

    def answer(res: Any) -> dict[str, Any]:
        out = res.to_json()
        out["results"] = [r if "text" in r else pair_json(r) for r in out["results"]]
        if "pair" in out["query"]:
            out["query"]["pair"] = pair_json(out["query"]["pair"])
        return out

    def check_text(text: str) -> None:
        if len(text) > max_text_chars:
            raise HTTPException(422, f"text is longer than {max_text_chars} characters")

    @app.get("/api/change")
    def change_info() -> dict[str, Any]:
        """What the change index holds."""
        splits: dict[str, int] = {}
        for p in change.pairs.values():
            splits[p.split or "(none)"] = splits.get(p.split or "(none)", 0) + 1
        return {"method": change.method, "bits": int(change.pairs_index.dim), "pairs": len(change.pairs),
                "captions": len(change.text_index), "splits": splits, "modality": mod}

    @app.get("/api/change/pairs")
    def change_pairs(offset: int = Query(0, ge=0, le=10_000_000), limit: int = Query(24, ge=1, le=page_limit),
                     split: str | None = Query(None, max_length=64)) -> dict[str, Any]:
        """Pairs in archive order (optionally of one split), to browse."""
        ps = [p for p in change.pairs.values() if split is None or p.split == split]
        return {"total": len(ps), "offset": offset,
                "pairs": [pair_json(change.pair_record(p)) for p in ps[offset:offset + limit]]}

    @app.post("/api/change/search/text")
    def change_search_text(q: ChangeTextQuery) -> dict[str, Any]:
        """Pairs whose change a sentence describes."""
        check_text(q.text)
        return answer(change.search_text(q.text, q.k, q.offset, q.split))

    @app.post("/api/change/search/pair")
    def change_search_pair(q: ChangePairQuery) -> dict[str, Any]:
        """Sentences describing a pair's change, or pairs with a similar change."""
        return answer(change.search_pair(q.pair, q.k, q.offset, q.target, q.split))

    @app.get("/api/change/pairs/{pair_id:path}/difference.png")
    def change_difference(pair_id: str) -> Response:
        """Where the two dates differ (|after - before| of the quicklooks)."""
        p = change.pair(pair_id)
        with lock:
            hit = cache.get(p.pair_id)
        if hit is None:
            a = change.archive.quicklook(p.before_pos, mod)
            b = change.archive.quicklook(p.after_pos, mod)
            hit = png_bytes(difference_image(a, b))
            with lock:
                cache[p.pair_id] = hit
                while len(cache) > cache_size:
                    cache.popitem(last=False)
        return Response(hit, media_type="image/png", headers={"Cache-Control": "max-age=3600"})
