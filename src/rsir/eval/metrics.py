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


def ranked(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per-query values (nq, n) of the archive items in the order given by ``rank``."""
    return np.take_along_axis(np.asarray(values), order, axis=1)


def _binary(rel: np.ndarray) -> np.ndarray:
    return (np.asarray(rel) > 0).astype(np.float64)


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
    return _binary(rel)[:, :k].sum(1) / k


def recall_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    """R@k = (relevant in the top k) / (all relevant in the ranking) per query; 0 without relevant items."""
    b = _binary(rel)
    total = b.sum(1)
    hit = b[:, :_check_k(k)].sum(1)
    return np.divide(hit, total, out=np.zeros_like(hit), where=total > 0)


def average_precision_at_k(rel: np.ndarray, k: int, variant: str = "A") -> np.ndarray:
    """AP@k per query in variant A, B or C (module docstring); ``rel`` must be the full ranking for B and C."""
    k = _check_k(k)
    b = _binary(rel)
    if variant == "B":
        # rank_n of the n-th relevant item in the full ranking: at a relevant position j (1-based) the
        # running count is n, so its term is n / j; keep the first m = min(k, R) of them.
        cum = np.cumsum(b, axis=1)
        m = np.minimum(k, cum[:, -1]) if b.shape[1] else np.zeros(b.shape[0])
        pos = np.arange(1, b.shape[1] + 1, dtype=np.float64)
        terms = np.where((b > 0) & (cum <= m[:, None]), cum / pos, 0.0).sum(1)
        return np.divide(terms, m, out=np.zeros_like(terms), where=m > 0)
    if variant not in ("A", "C"):
        raise ValueError(f"unknown mAP variant {variant!r} (one of {MAP_VARIANTS})")
    top = b[:, :k]
    cum = np.cumsum(top, axis=1)
    prec = cum / np.arange(1, top.shape[1] + 1, dtype=np.float64)
    s = (top * prec).sum(1)
    denom = top.sum(1) if variant == "A" else np.minimum(k, b.sum(1))
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
    n_all, n_rel = radius_counts(dist, rel, bits)
    total = _binary(rel).sum(1)[:, None]
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
def _tie_groups(sorted_dist: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per ranked position: group size g, relevant in group r, relevant before the group c, offset j (0-based)
    of the position inside its group, and the group's start position s (0-based)."""
    nq, n = sorted_dist.shape
    new = np.ones((nq, n), dtype=bool)
    new[:, 1:] = sorted_dist[:, 1:] != sorted_dist[:, :-1]
    idx = np.broadcast_to(np.arange(n), (nq, n))
    start = np.maximum.accumulate(np.where(new, idx, 0), axis=1)
    gid = np.cumsum(new, axis=1) - 1 + (np.arange(nq) * n)[:, None]
    flat = gid.ravel()
    g = np.bincount(flat, minlength=nq * n)[flat].reshape(nq, n).astype(np.float64)
    r = np.bincount(flat, weights=rel.ravel(), minlength=nq * n)[flat].reshape(nq, n)
    excl = np.cumsum(rel, axis=1) - rel
    c = np.take_along_axis(excl, start, axis=1)
    return g, r, c, (idx - start).astype(np.float64), start


def tie_aware_precision_at_k(sorted_dist: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    """Expected P@k over all orderings of tied distances (each tie group uniformly permuted)."""
    k = _check_k(k)
    b = _binary(rel)
    g, r, _, _, _ = _tie_groups(np.asarray(sorted_dist), b)
    # each position in a group is relevant with probability r / g
    return (r / g)[:, :k].sum(1) / k


def tie_aware_average_precision(sorted_dist: np.ndarray, rel: np.ndarray, k: int | None = None) -> np.ndarray:
    """Expected AP over all orderings of tied distances (McSherry & Najork, ECIR 2008), variant C.

    With ``k=None`` this is full AP (sum over all relevant ranks of P@i, divided by R); with k it is variant C,
    ``(1/min(k, R)) sum_{i<=k} rel_i P@i``, whose denominator does not depend on the tie order, so the
    expectation is exact. Inputs are the full ranking: distances ascending and relevance in that order.

    For a tie group of g items holding r relevant ones, preceded by c relevant items, position j (1-based)
    in the group is relevant with probability r/g, and given that, the expected number of relevant items
    among the j-1 before it in the group is (j-1)(r-1)/(g-1); so E[rel_i * cum_i] = (r/g)(c+1+(j-1)(r-1)/(g-1)).
    """
    b = _binary(rel)
    sd = np.asarray(sorted_dist)
    nq, n = b.shape
    kk = n if k is None else min(_check_k(k), n)
    g, r, c, j, _ = _tie_groups(sd, b)
    frac = np.divide(r - 1, g - 1, out=np.zeros_like(r), where=g > 1)
    expected = (r / g) * (c + 1.0 + j * frac)
    pos = np.arange(1, n + 1, dtype=np.float64)
    s = (expected / pos)[:, :kk].sum(1)
    total = b.sum(1)
    denom = total if k is None else np.minimum(_check_k(k), total)
    return np.divide(s, denom, out=np.zeros_like(s), where=denom > 0)


# ---------------------------------------------------------------------------------------------------------
# cross-modal text <-> image recall
# ---------------------------------------------------------------------------------------------------------
def cross_modal_recall(dist_i2t: np.ndarray, txt_to_img: np.ndarray, ks: Sequence[int] = (1, 5, 10),
                       dist_t2i: np.ndarray | None = None) -> dict[str, float]:
    """Image->text and text->image R@K and mR, the mean of all of them (the six values for ks = 1, 5, 10).

    ``dist_i2t`` (n_img, n_txt) distances from each image to each caption; ``txt_to_img`` (n_txt,) gives the
    image of each caption (many captions to one image). I->T: an image hits at K when any of its captions is
    in its top K; T->I: a caption hits when its image is in its top K. ``dist_t2i`` defaults to the transpose.
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

    Relevance is "shares at least one label"; graded relevance is the number of shared labels. With
    ``hamming_bits`` (integer distances) the tie-aware values and the radius curves are added
    ("radius_P", "radius_R" of shape (nq, bits+1)); ``pk_curve`` adds "pk_curve" (nq, len(pk_curve)).
    """
    dist = np.asarray(dist)
    order = rank(dist, exclude)
    c_all = overlap(q_labels, db_labels)
    c = ranked(c_all, order)
    rel = c > 0
    r_counts = ranked(np.broadcast_to((np.asarray(db_labels) > 0).sum(1), c_all.shape), order)
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
    if hamming_bits is not None:
        sd = ranked(dist, order)
        for k in ks:
            out[f"P@{k}(tie-aware)"] = tie_aware_precision_at_k(sd, rel, k)
            out[f"mAP@{k}(C,tie-aware)"] = tie_aware_average_precision(sd, rel, k)
        kept = dist if exclude is None else np.take_along_axis(dist, order, axis=1)
        kept_rel = (c_all > 0) if exclude is None else rel
        out["radius_P"], out["radius_R"] = precision_recall_at_radius(kept, kept_rel, hamming_bits)
    if len(pk_curve):
        out["pk_curve"] = precision_curve(rel, pk_curve)
    return out
