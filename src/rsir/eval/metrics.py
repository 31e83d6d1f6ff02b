"""Exact retrieval metrics as pure numpy functions, vectorised over queries, in float64.

Conventions (DESIGN.md, "Evaluation definitions"):

- A ranking is the archive ordered by ascending distance, ties broken by ascending archive position
  (``rank``: a stable argsort). Metrics take the relevance of the ranked items, ``rel`` of shape (nq, n) in
  rank order (binary: any shared label; graded: ``C = |Lq ∩ Lx|``), and return one value per query; callers
  average over queries.
- ``rel_i`` is the binary relevance at rank i (1-based), ``P@i`` the precision of the top i, ``R_k`` the
  relevant items in the top k and ``R`` all relevant items in the (ranked) archive.
- mAP@k comes in three variants in the field; every number names its variant:

  (A) ``AP@k = (1/R_k) sum_{i<=k} rel_i P@i``, 0 when ``R_k = 0`` (MiLAN/MHCLN eval, DeepHash-pytorch,
      torchmetrics ``RetrievalMAP(top_k=k)``).
  (B) DUCH ``calc_map_k``: ``AP@k = (1/m) sum_{n<=m} n / rank_n`` with ``m = min(k, R)`` and ``rank_n`` the
      position of the n-th relevant item in the FULL ranking (it may lie beyond k); 0 when ``R = 0``.
  (C) IR standard: ``AP@k = (1/min(k, R)) sum_{i<=k} rel_i P@i``, 0 when ``R = 0``.

- Empty cases are scored 0 (a query with no relevant item, precision of an empty Hamming ball, recall of a
  query without relevant items), and such queries still count in the mean, as in the reference codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAP_VARIANTS = ("A", "B", "C")
GAINS = ("exp", "lin")


# ---------------------------------------------------------------------------------------------------------
# ranking and relevance
# ---------------------------------------------------------------------------------------------------------
def rank(dist: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Archive positions ordered by (distance, position); with ``exclude`` each row drops that position.

    Returns (nq, n) positions, or (nq, n-1) when ``exclude`` (one position per query, leave-one-out) is given.
    """
    dist = np.asarray(dist)
    order = np.argsort(dist, axis=1, kind="stable")
    if exclude is None:
        return order
    ex = np.asarray(exclude, dtype=np.int64).reshape(-1)
    nq, n = order.shape
    if ex.shape[0] != nq or ((ex < 0) | (ex >= n)).any():
        raise ValueError("exclude must hold one valid archive position per query")
    keep = order != ex[:, None]
    return order[keep].reshape(nq, n - 1)


def overlap(q_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """Graded relevance ``C = |Lq ∩ Lx|`` (nq, n) as int32 counts from multi-hot label matrices."""
    q = (np.asarray(q_labels) > 0).astype(np.int32)
    x = (np.asarray(db_labels) > 0).astype(np.int32)
    return q @ x.T


def relevance_any(q_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """Binary relevance (nq, n): the query and the item share at least one label."""
    return overlap(q_labels, db_labels) > 0


def relevance_exact(q_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """Binary relevance (nq, n): the query and the item have identical label sets."""
    q = np.asarray(q_labels) > 0
    x = np.asarray(db_labels) > 0
    c = overlap(q, x)
    return (c == q.sum(1)[:, None]) & (c == x.sum(1)[None, :])


def relevance_jaccard(q_labels: np.ndarray, db_labels: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Binary relevance (nq, n): Jaccard index |Lq ∩ Lx| / |Lq ∪ Lx| of the label sets >= ``threshold``."""
    q = np.asarray(q_labels) > 0
    x = np.asarray(db_labels) > 0
    c = overlap(q, x)
    union = q.sum(1)[:, None] + x.sum(1)[None, :] - c
    return (union > 0) & (c >= threshold * union)


#: Stricter relevances reported beside "any shared label" (which saturates on BigEarthNet), by name suffix.
STRICT_RELEVANCES = {"exact": "identical label sets", "jac>=0.5": "Jaccard index of the label sets >= 0.5"}


def strict_relevance(name: str, q_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """The binary relevance matrix of one of :data:`STRICT_RELEVANCES`."""
    if name == "exact":
        return relevance_exact(q_labels, db_labels)
    if name == "jac>=0.5":
        return relevance_jaccard(q_labels, db_labels, 0.5)
    raise ValueError(f"unknown relevance {name!r} (one of {', '.join(STRICT_RELEVANCES)})")


def ranked(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per-query values (nq, n) of the archive items in the order given by ``rank``."""
    return np.take_along_axis(np.asarray(values), order, axis=1)


def _binary(rel: np.ndarray) -> np.ndarray:
    r = np.asarray(rel)
    return (r if r.dtype == bool else r > 0).astype(np.float64)


def _check_k(k: int) -> int:
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


# ---------------------------------------------------------------------------------------------------------
# binary relevance metrics
# ---------------------------------------------------------------------------------------------------------
def precision_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    """P@k = (relevant in the top k) / k per query (k is not clipped to the archive size)."""
    k = _check_k(k)
    return np.count_nonzero(np.asarray(rel)[:, :k], axis=1) / k


def recall_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    """R@k = (relevant in the top k) / (all relevant in the ranking) per query; 0 without relevant items."""
    r = np.asarray(rel)
    total = np.count_nonzero(r, axis=1).astype(np.float64)
    hit = np.count_nonzero(r[:, :_check_k(k)], axis=1).astype(np.float64)
    return np.divide(hit, total, out=np.zeros_like(hit), where=total > 0)


def average_precision_at_k(rel: np.ndarray, k: int, variant: str = "A") -> np.ndarray:
    """AP@k per query in variant A, B or C (module docstring); ``rel`` must be the full ranking for B and C."""
    k = _check_k(k)
    if variant == "B":
        b = _binary(rel)
        # rank_n of the n-th relevant item in the full ranking: at a relevant position j (1-based) the
        # running count is n, so its term is n / j; keep the first m = min(k, R) of them.
        cum = np.cumsum(b, axis=1)
        m = np.minimum(k, cum[:, -1]) if b.shape[1] else np.zeros(b.shape[0])
        pos = np.arange(1, b.shape[1] + 1, dtype=np.float64)
        terms = np.where((b > 0) & (cum <= m[:, None]), cum / pos, 0.0).sum(1)
        return np.divide(terms, m, out=np.zeros_like(terms), where=m > 0)
    if variant not in ("A", "C"):
        raise ValueError(f"unknown mAP variant {variant!r} (one of {MAP_VARIANTS})")
    top = _binary(np.asarray(rel)[:, :k])
    cum = np.cumsum(top, axis=1)
    prec = cum / np.arange(1, top.shape[1] + 1, dtype=np.float64)
    s = (top * prec).sum(1)
    denom = top.sum(1) if variant == "A" else np.minimum(k, np.count_nonzero(rel, axis=1))
    return np.divide(s, denom, out=np.zeros_like(s), where=denom > 0)


# ---------------------------------------------------------------------------------------------------------
# graded relevance metrics (C = number of shared labels)
# ---------------------------------------------------------------------------------------------------------
def acg_at_k(gain: np.ndarray, k: int) -> np.ndarray:
    """ACG@k = (1/k) sum_{i<=k} C_i: average number of labels shared with the query in the top k."""
    k = _check_k(k)
    return np.asarray(gain, dtype=np.float64)[:, :k].sum(1) / k


def wap_at_k(gain: np.ndarray, k: int) -> np.ndarray:
    """Weighted AP (Zhao et al. 2015, DSRH): WAP@k = (1/R_k) sum_{i<=k} rel_i ACG@i, with rel_i = [C_i > 0].

    ``ACG@i = (1/i) sum_{j<=i} C_j`` and ``R_k`` is the number of relevant items in the top k (0 if none), i.e.
    variant A of mAP with P@i replaced by ACG@i.
    """
    k = _check_k(k)
    c = np.asarray(gain, dtype=np.float64)[:, :k]
    acg = np.cumsum(c, axis=1) / np.arange(1, c.shape[1] + 1, dtype=np.float64)
    b = (c > 0).astype(np.float64)
    s = (b * acg).sum(1)
    r = b.sum(1)
    return np.divide(s, r, out=np.zeros_like(s), where=r > 0)


def _gain(c: np.ndarray, gain: str) -> np.ndarray:
    if gain == "exp":
        return np.exp2(c) - 1.0
    if gain == "lin":
        return c
    raise ValueError(f"unknown NDCG gain {gain!r} (one of {GAINS})")


def ndcg_at_k(gain: np.ndarray, k: int, gain_form: str = "exp") -> np.ndarray:
    """NDCG@k = DCG@k / IDCG@k with DCG@k = sum_{i<=k} g(C_i) / log2(i + 1).

    ``g(C) = 2^C - 1`` ("exp", Burges et al.) or ``g(C) = C`` ("lin", Järvelin & Kekäläinen). The ideal DCG
    ranks the whole archive (``gain`` must be the full ranking) by decreasing C; 0 when IDCG is 0.
    """
    k = _check_k(k)
    c = np.asarray(gain, dtype=np.float64)
    g = _gain(c, gain_form)
    kk = min(k, c.shape[1])
    disc = 1.0 / np.log2(np.arange(2, kk + 2, dtype=np.float64))
    dcg = (g[:, :kk] * disc).sum(1)
    ideal = -np.sort(-g, axis=1)[:, :kk] if kk else g[:, :0]
    idcg = (ideal * disc).sum(1)
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


# ---------------------------------------------------------------------------------------------------------
# RSiM BigEarthNet protocol
# ---------------------------------------------------------------------------------------------------------
def rsim_precision_recall_at_k(gain: np.ndarray, q_counts: np.ndarray, r_counts: np.ndarray, k: int
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Per-query RSiM P@k and R@k: mean over the top k items of |Lq∩Lr|/|Lr| and |Lq∩Lr|/|Lq|.

    ``gain`` (nq, >=k) are the overlaps in rank order, ``q_counts`` (nq,) = |Lq|, ``r_counts`` (nq, >=k) = |Lr|
    of the ranked items. An item without labels has precision 0; a query without labels has recall 0.
    F1 is taken of the averages over all queries (``rsim_f1``), not per query.
    """
    k = _check_k(k)
    c = np.asarray(gain, dtype=np.float64)[:, :k]
    lr = np.asarray(r_counts, dtype=np.float64)[:, :k]
    lq = np.asarray(q_counts, dtype=np.float64)[:, None]
    p = np.divide(c, lr, out=np.zeros_like(c), where=lr > 0).sum(1) / k
    r = np.divide(c, np.broadcast_to(lq, c.shape), out=np.zeros_like(c), where=np.broadcast_to(lq > 0, c.shape))
    return p, r.sum(1) / k


def rsim_f1(p: float, r: float) -> float:
    """F1 of the averaged RSiM precision and recall (0 when both are 0)."""
    return 0.0 if p + r == 0 else 2.0 * p * r / (p + r)


# ---------------------------------------------------------------------------------------------------------
# hashing extras: Hamming radius, P@k curve
# ---------------------------------------------------------------------------------------------------------
def radius_counts(dist: np.ndarray, rel: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query and radius r = 0..bits: (items within radius r, relevant items within radius r)."""
    d = np.asarray(dist).astype(np.int64)
    nq = d.shape[0]
    if d.size and (d.min() < 0 or d.max() > bits):
        raise ValueError(f"Hamming distances must lie in 0..{bits}")
    off = (np.arange(nq, dtype=np.int64) * (bits + 1))[:, None]
    flat = (d + off).ravel()
    size = nq * (bits + 1)
    n_all = np.bincount(flat, minlength=size).reshape(nq, bits + 1)
    n_rel = np.bincount(flat, weights=_binary(rel).ravel(), minlength=size).reshape(nq, bits + 1)
    return np.cumsum(n_all, axis=1).astype(np.float64), np.cumsum(n_rel, axis=1)


def precision_recall_at_radius(dist: np.ndarray, rel: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query precision and recall (nq, bits+1) of the Hamming ball of radius r = 0..bits.

    The precision of an empty ball is defined as 0 (DeepHash "precision within Hamming radius 2" convention);
    recall is 0 for a query without relevant items. ``dist`` and ``rel`` are in archive (or any common) order.
    """
    return _radius_pr(*radius_counts(dist, rel, bits))


def _radius_pr(n_all: np.ndarray, n_rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    total = n_rel[:, -1:]
    p = np.divide(n_rel, n_all, out=np.zeros_like(n_rel), where=n_all > 0)
    r = np.divide(n_rel, np.broadcast_to(total, n_rel.shape), out=np.zeros_like(n_rel),
                  where=np.broadcast_to(total > 0, n_rel.shape))
    return p, r


def precision_curve(rel: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """P@k per query for every k in ``ks``: (nq, len(ks))."""
    return np.stack([precision_at_k(rel, k) for k in ks], axis=1) if len(ks) else np.zeros((len(rel), 0))


# ---------------------------------------------------------------------------------------------------------
# tie-aware metrics for integer (Hamming) distances
# ---------------------------------------------------------------------------------------------------------
def _tie_histograms(dist: np.ndarray, rel: np.ndarray, bits: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Per query and integer distance v = 0..bits: items at distance v (a tie group) and relevant ones."""
    d = np.asarray(dist)
    if d.dtype.kind not in "iu":
        raise ValueError("tie-aware metrics need integer (Hamming) distances")
    b = int(d.max()) if bits is None and d.size else int(bits or 0)
    n_all, n_rel = radius_counts(d, rel, b)
    # radius_counts is cumulative over radius; tie groups are its increments
    g = np.diff(n_all, axis=1, prepend=0.0)
    r = np.diff(n_rel, axis=1, prepend=0.0)
    return g, r, d.shape[1]


def tie_aware_precision_at_k(dist: np.ndarray, rel: np.ndarray, k: int, bits: int | None = None) -> np.ndarray:
    """Expected P@k over all orderings of tied integer distances (each tie group uniformly permuted).

    ``dist`` and ``rel`` may be in any common order; only the distance histogram matters.
    """
    g, r, _ = _tie_histograms(dist, rel, bits)
    return _tie_pk(g, r, _check_k(k))


def _tie_pk(g: np.ndarray, r: np.ndarray, k: int) -> np.ndarray:
    start = np.cumsum(g, axis=1) - g
    inside = np.clip(k - start, 0.0, g)  # positions of each group that fall within the top k
    frac = np.divide(r, g, out=np.zeros_like(r), where=g > 0)
    return (inside * frac).sum(1) / k


def _harmonic(m: int) -> np.ndarray:
    """H[i] = sum_{j<=i} 1/j for i = 0..m (H[0] = 0)."""
    h = np.zeros(m + 1)
    h[1:] = np.cumsum(1.0 / np.arange(1, m + 1, dtype=np.float64))
    return h


def tie_aware_average_precision(dist: np.ndarray, rel: np.ndarray, k: int | None = None,
                                bits: int | None = None) -> np.ndarray:
    """Expected AP over all orderings of tied integer distances (McSherry & Najork, ECIR 2008), variant C.

    With ``k=None`` this is full AP (sum over all relevant ranks of P@i, divided by R); with k it is variant C,
    ``(1/min(k, R)) sum_{i<=k} rel_i P@i``, whose denominator does not depend on the tie order, so the
    expectation is exact. ``dist`` (integer) and ``rel`` may be in any common order.

    For a tie group of g items holding r relevant ones, starting after position s and preceded by c relevant
    items, its j-th position (1-based) is relevant with probability r/g, and given that, the expected number
    of relevant items among the j-1 before it in the group is (j-1)(r-1)/(g-1); so
    E[rel_i P@i] = (r/g)(c + 1 + (j-1)(r-1)/(g-1)) / (s+j). Summing over the o positions of the group inside
    the top k uses sum_j 1/(s+j) = H(s+o) - H(s) and sum_j (j-1)/(s+j) = o - (s+1)(H(s+o) - H(s)).
    """
    g, r, n = _tie_histograms(dist, rel, bits)
    return _tie_ap(g, r, n, None if k is None else _check_k(k))


def _tie_ap(g: np.ndarray, r: np.ndarray, n: int, k: int | None) -> np.ndarray:
    kk = n if k is None else min(k, n)
    start = np.cumsum(g, axis=1) - g
    c = np.cumsum(r, axis=1) - r
    o = np.clip(kk - start, 0.0, g)
    h = _harmonic(n)
    si, oi = start.astype(np.int64), o.astype(np.int64)
    hdiff = h[si + oi] - h[si]
    frac = np.divide(r - 1.0, g - 1.0, out=np.zeros_like(r), where=g > 1)
    pg = np.divide(r, g, out=np.zeros_like(r), where=g > 0)
    s = (pg * ((c + 1.0) * hdiff + frac * (o - (start + 1.0) * hdiff))).sum(1)
    total = r.sum(1)
    denom = total if k is None else np.minimum(k, total)
    return np.divide(s, denom, out=np.zeros_like(s), where=denom > 0)


# ---------------------------------------------------------------------------------------------------------
# cross-modal text <-> image recall
# ---------------------------------------------------------------------------------------------------------
def cross_modal_recall(dist_i2t: np.ndarray, txt_to_img: np.ndarray, ks: Sequence[int] = (1, 5, 10),
                       dist_t2i: np.ndarray | None = None, queries: np.ndarray | None = None) -> dict[str, float]:
    """Image->text and text->image R@K and mR, the mean of all of them (the six values for ks = 1, 5, 10).

    ``dist_i2t`` (n_img, n_txt) distances from each image to each caption; ``txt_to_img`` (n_txt,) gives the
    image of each caption (many captions to one image). I->T: an image hits at K when any of its captions is
    in its top K; T->I: a caption hits when its image is in its top K. ``dist_t2i`` defaults to the transpose.
    ``queries`` (n_img,) bool: average over these images and their captions only (each still searched against
    every caption or image), e.g. one kind of item within the whole database.
    """
    d = np.asarray(dist_i2t)
    t2i_map = np.asarray(txt_to_img, dtype=np.int64)
    n_img, n_txt = d.shape
    if t2i_map.shape != (n_txt,):
        raise ValueError("txt_to_img must give one image per caption")
    dt = d.T if dist_t2i is None else np.asarray(dist_t2i)
    # rank (0-based) of each caption in each image's ranking; an image hits at K if its best caption < K
    order_i = rank(d)
    caption_rank = np.empty_like(order_i)
    np.put_along_axis(caption_rank, order_i, np.arange(n_txt)[None, :].repeat(n_img, 0), axis=1)
    own = t2i_map[None, :] == np.arange(n_img)[:, None]
    best_i = np.where(own, caption_rank, n_txt).min(1)
    order_t = rank(dt)
    rank_t = np.argmax(order_t == t2i_map[:, None], axis=1)
    if queries is not None:
        q = np.asarray(queries, bool)
        best_i, rank_t = best_i[q], rank_t[q[t2i_map]]
        n_img, n_txt = len(best_i), len(rank_t)
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float((best_i < k).mean()) if n_img else 0.0
    for k in ks:
        out[f"t2i_R@{k}"] = float((rank_t < k).mean()) if n_txt else 0.0
    out["mR"] = float(np.mean(list(out.values())))
    return out


# ---------------------------------------------------------------------------------------------------------
# one block of queries: every metric, per query
# ---------------------------------------------------------------------------------------------------------
def per_query_metrics(dist: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray, ks: Sequence[int],
                      exclude: np.ndarray | None = None, hamming_bits: int | None = None,
                      pk_curve: Sequence[int] = ()) -> dict[str, np.ndarray]:
    """All metrics of one block of queries, one value per query, under their reported names.

    Relevance is "shares at least one label"; graded relevance is the number of shared labels. The stricter
    relevances of :data:`STRICT_RELEVANCES` add P@k and mAP@k (A) and (C) under a ``[name]`` suffix, e.g.
    "mAP@20(C)[exact]". With ``hamming_bits`` (integer distances) the tie-aware values (also for the strict
    relevances) and the radius curves are added ("radius_P", "radius_R" of shape (nq, bits+1)); ``pk_curve``
    adds "pk_curve" (nq, len(pk_curve)).
    """
    dist = np.asarray(dist)
    order = rank(dist, exclude)
    c_all = overlap(q_labels, db_labels)
    c = ranked(c_all, order)
    rel = c > 0
    kmax = max(ks) if len(ks) else 1
    r_counts = (np.asarray(db_labels) > 0).sum(1)[order[:, :kmax]]
    q_counts = (np.asarray(q_labels) > 0).sum(1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"P@{k}"] = precision_at_k(rel, k)
        out[f"R@{k}"] = recall_at_k(rel, k)
        for v in MAP_VARIANTS:
            out[f"mAP@{k}({v})"] = average_precision_at_k(rel, k, v)
        out[f"WAP@{k}"] = wap_at_k(c, k)
        out[f"ACG@{k}"] = acg_at_k(c, k)
        out[f"NDCG@{k}(exp)"] = ndcg_at_k(c, k, "exp")
        out[f"NDCG@{k}(lin)"] = ndcg_at_k(c, k, "lin")
        p, r = rsim_precision_recall_at_k(c, q_counts, r_counts, k)
        out[f"rsim_P@{k}"] = p
        out[f"rsim_R@{k}"] = r
    strict = {name: strict_relevance(name, q_labels, db_labels) for name in STRICT_RELEVANCES}
    for name, s_all in strict.items():
        s_rel = ranked(s_all, order)
        for k in ks:
            out[f"P@{k}[{name}]"] = precision_at_k(s_rel, k)
            out[f"mAP@{k}(A)[{name}]"] = average_precision_at_k(s_rel, k, "A")
            out[f"mAP@{k}(C)[{name}]"] = average_precision_at_k(s_rel, k, "C")
    if hamming_bits is not None:
        kept = dist if exclude is None else ranked(dist, order)
        kept_rel = (c_all > 0) if exclude is None else rel
        g, r, n = _tie_histograms(kept, kept_rel, hamming_bits)
        for k in ks:
            out[f"P@{k}(tie-aware)"] = _tie_pk(g, r, k)
            out[f"mAP@{k}(C,tie-aware)"] = _tie_ap(g, r, n, k)
        out["radius_P"], out["radius_R"] = _radius_pr(np.cumsum(g, axis=1), np.cumsum(r, axis=1))
        for name, s_all in strict.items():
            sg, sr, sn = _tie_histograms(kept, s_all if exclude is None else ranked(s_all, order), hamming_bits)
            for k in ks:
                out[f"mAP@{k}(C,tie-aware)[{name}]"] = _tie_ap(sg, sr, sn, k)
    if len(pk_curve):
        out["pk_curve"] = precision_curve(rel, pk_curve)
    return out
