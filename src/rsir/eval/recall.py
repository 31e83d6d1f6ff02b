"""Recall@K for cross-modal retrieval with one relevant side per query (text <-> bitemporal pairs, text-ITSR).

R@K is the share of queries with at least one relevant item among their K best results; mR is the mean of R@1, R@5
and R@10 over both directions (the text-ITSR and image-text retrieval papers' summary). On binary codes the
similarity is -Hamming distance and ties are broken by database order (a stable sort), as rsir's indexes break them.
"""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10)


def recall_at_k(sim: np.ndarray, relevant: np.ndarray, ks: tuple[int, ...] = KS) -> dict[int, float]:
    """Share of queries (rows) with at least one relevant item among their k best columns; ties broken by column
    order (a stable sort of -sim)."""
    order = np.argsort(-sim, axis=1, kind="stable")
    hit_rank = np.full(len(sim), np.inf)
    for q in range(len(sim)):
        r = np.flatnonzero(relevant[q, order[q]])
        if len(r):
            hit_rank[q] = r[0]
    return {k: float((hit_rank < k).mean()) if len(sim) else 0.0 for k in ks}


def cross_modal_recalls(pair_emb: np.ndarray, text_emb: np.ndarray, text_pair: np.ndarray,
                        metric: str = "cosine", directions: tuple[str, ...] | list[str] = ("t2p", "p2t")
                        ) -> dict[str, float]:
    """R@1/5/10 text->pair (t2p) and/or pair->text (p2t) and their mean mR.

    ``text_pair[j]`` is the pair index sentence j describes. ``metric`` "cosine" on float embeddings, "hamming"
    on sign codes (similarity = -Hamming distance, ties by archive order)."""
    if metric == "hamming":
        a, b = np.where(pair_emb > 0, 1.0, -1.0), np.where(text_emb > 0, 1.0, -1.0)
        sim = a @ b.T  # = bits - 2 * Hamming distance
    else:
        a = pair_emb / np.maximum(np.linalg.norm(pair_emb, axis=1, keepdims=True), 1e-12)
        b = text_emb / np.maximum(np.linalg.norm(text_emb, axis=1, keepdims=True), 1e-12)
        sim = a @ b.T
    rel = np.zeros(sim.shape, bool)
    rel[text_pair, np.arange(len(text_pair))] = True
    out: dict[str, float] = {}
    for d in directions:
        r = recall_at_k(sim.T, rel.T) if d == "t2p" else recall_at_k(sim, rel)
        out.update({f"{d}_R@{k}": v for k, v in r.items()})
    out["mR"] = float(np.mean(list(out.values())))
    return out
