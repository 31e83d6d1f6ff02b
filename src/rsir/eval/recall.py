"""Text <-> bitemporal pair retrieval (text-ITSR): R@1/5/10 in each direction and mR, computed by
:func:`rsir.eval.metrics.cross_modal_recall` (pairs play the images, change sentences the captions).

R@K is the share of queries with at least one relevant item among their K best results; mR is the mean of the R@K
reported. On binary codes the similarity is -Hamming distance and ties are broken by database order (a stable
sort), as rsir's indexes break them.
"""

from __future__ import annotations

import numpy as np

from rsir.eval.metrics import cross_modal_recall

KS = (1, 5, 10)
#: change directions -> the image/caption names of metrics.cross_modal_recall
_NAMES = {"p2t": "i2t", "t2p": "t2i"}


def cross_modal_recalls(pair_emb: np.ndarray, text_emb: np.ndarray, text_pair: np.ndarray,
                        metric: str = "cosine", directions: tuple[str, ...] | list[str] = ("t2p", "p2t"),
                        queries: np.ndarray | None = None) -> dict[str, float]:
    """R@1/5/10 text->pair (t2p) and/or pair->text (p2t) and their mean mR.

    ``text_pair[j]`` is the pair index sentence j describes. ``metric`` "cosine" on float embeddings, "hamming"
    on sign codes (similarity = -Hamming distance, ties by archive order). ``queries`` (bool per pair): score only
    these pairs and their sentences as queries, against all pairs and sentences."""
    if metric == "hamming":
        a, b = np.where(pair_emb > 0, 1.0, -1.0), np.where(text_emb > 0, 1.0, -1.0)
    else:
        a = pair_emb / np.maximum(np.linalg.norm(pair_emb, axis=1, keepdims=True), 1e-12)
        b = text_emb / np.maximum(np.linalg.norm(text_emb, axis=1, keepdims=True), 1e-12)
    both = cross_modal_recall(-(a @ b.T), np.asarray(text_pair), KS, queries=queries)  # distance = -similarity
    out = {f"{d}_R@{k}": both[f"{_NAMES[d]}_R@{k}"] for d in directions for k in KS}
    out["mR"] = float(np.mean(list(out.values())))
    return out
