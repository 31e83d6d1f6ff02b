"""Text <-> image evaluation of a text-image index: the four retrieval directions of DUCH and caption recall.

Directions (query -> database), all on Hamming distances of packed codes and ranked by the project's rule
(distance, then database position):

- ``i2i``: an item's image code against the database items' image codes;
- ``i2t``: an item's image code against the database items' caption codes;
- ``t2i``: each caption of a query item against the database items' image codes;
- ``t2t``: each caption of a query item against the database items' caption codes.

Relevance for mAP/P/R is "shares at least one label" (a caption carries its item's labels), as DUCH evaluates.
Under leave-one-out (queries and database are the same items) a query never sees its own pair: ``i2i`` drops the
item itself, ``i2t`` the item's own captions, ``t2i`` the caption's own image, ``t2t`` the caption itself.
Separately, caption-match recall (``cross_modal_recall``): over the query items, image -> text R@K (one of the
image's own captions in its top K among all query items' captions) and text -> image R@K, and their mean mR.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rsir.eval import metrics as M
from rsir.eval.protocols import distances, evaluate_full

DIRECTIONS = ("i2t", "t2i", "i2i", "t2t")


def parse_directions(text: str) -> list[str]:
    """'i2t,t2i' -> ["i2t", "t2i"]; ValueError naming the valid ones otherwise."""
    out = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in out if t not in DIRECTIONS]
    if bad or not out:
        raise ValueError(f"--directions {text!r}: expected a comma-separated list of {', '.join(DIRECTIONS)}")
    return list(dict.fromkeys(out))


def _mean_metrics(rows: list[dict[str, np.ndarray]], n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in rows[0]:
        if key.startswith(("radius_", "pk_curve")):
            continue
        out[key] = float(sum(float(np.asarray(r[key]).sum()) for r in rows) / n)
    return out


def _i2t_leave_own_out(q_img: np.ndarray, q_item: np.ndarray, q_lab: np.ndarray, caps: np.ndarray,
                       cap_item: np.ndarray, cap_lab: np.ndarray, ks: Sequence[int], bits: int | None,
                       metric: str) -> dict[str, float]:
    """Image -> text with each query's own captions removed from its ranking (one query at a time)."""
    rows = []
    for s in range(0, len(q_img), 256):
        d = distances(q_img[s:s + 256], caps, metric)
        if metric == "hamming":
            d = d.astype(np.uint16)
        for j in range(d.shape[0]):
            keep = cap_item != q_item[s + j]
            rows.append(M.per_query_metrics(d[j:j + 1, keep], q_lab[s + j:s + j + 1], cap_lab[keep], ks,
                                            hamming_bits=bits))
    return _mean_metrics(rows, len(q_img))


def evaluate_directions(directions: Sequence[str], img_codes: np.ndarray, labels: np.ndarray,
                        cap_codes: np.ndarray, cap_item: np.ndarray, query_rows: np.ndarray, db_rows: np.ndarray,
                        leave_one_out: bool, ks: Sequence[int] = (10, 20), bits: int | None = None,
                        metric: str = "hamming") -> dict[str, Any]:
    """Metrics per direction plus caption-match recall.

    ``img_codes``/``labels`` are per item (rows), ``cap_codes`` per caption with ``cap_item`` its item row;
    ``query_rows``/``db_rows`` select the query and database items (the same rows under leave-one-out).
    ``metric`` "hamming" (packed codes) or "ip" (float vectors, larger inner product is nearer)."""
    bits = int(bits or img_codes.shape[1] * 8) if metric == "hamming" else None
    q_rows, d_rows = np.asarray(query_rows), np.asarray(db_rows)
    q_caps = np.flatnonzero(np.isin(cap_item, q_rows))
    d_caps = np.flatnonzero(np.isin(cap_item, d_rows))
    pos_in_db = {int(r): j for j, r in enumerate(d_rows)}
    cap_pos_in_db = {int(c): j for j, c in enumerate(d_caps)}
    out: dict[str, Any] = {}
    for dr in directions:
        if dr == "i2i":
            ex = np.array([pos_in_db[int(r)] for r in q_rows]) if leave_one_out else None
            res = evaluate_full(img_codes[q_rows], img_codes[d_rows], metric, labels[q_rows], labels[d_rows], ks,
                                ex, pk_curve=(), bits=bits).metrics
        elif dr == "t2i":
            ex = np.array([pos_in_db[int(cap_item[c])] for c in q_caps]) if leave_one_out else None
            res = evaluate_full(cap_codes[q_caps], img_codes[d_rows], metric, labels[cap_item[q_caps]],
                                labels[d_rows], ks, ex, pk_curve=(), bits=bits).metrics
        elif dr == "t2t":
            ex = np.array([cap_pos_in_db[int(c)] for c in q_caps]) if leave_one_out else None
            res = evaluate_full(cap_codes[q_caps], cap_codes[d_caps], metric, labels[cap_item[q_caps]],
                                labels[cap_item[d_caps]], ks, ex, pk_curve=(), bits=bits).metrics
        elif dr == "i2t":
            if leave_one_out:
                res = _i2t_leave_own_out(img_codes[q_rows], q_rows, labels[q_rows], cap_codes[d_caps],
                                         cap_item[d_caps], labels[cap_item[d_caps]], ks, bits, metric)
            else:
                res = evaluate_full(img_codes[q_rows], cap_codes[d_caps], metric, labels[q_rows],
                                    labels[cap_item[d_caps]], ks, None, pk_curve=(), bits=bits).metrics
        else:
            raise ValueError(f"unknown direction {dr!r}")
        out[dr] = {k: v for k, v in res.items() if "tie-aware" not in k}
    # caption-match recall among the query items and their own captions
    local = {int(r): j for j, r in enumerate(q_rows)}
    d = distances(img_codes[q_rows], cap_codes[q_caps], metric)
    out["recall"] = M.cross_modal_recall(d, np.array([local[int(cap_item[c])] for c in q_caps]))
    out["n_queries"] = {"items": int(len(q_rows)), "captions": int(len(q_caps))}
    out["n_db"] = {"items": int(len(d_rows)), "captions": int(len(d_caps))}
    return out
