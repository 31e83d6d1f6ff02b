"""Metrics: hand-computed cases, brute-force tie enumeration, torchmetrics and ranx agreement."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from rsir.eval import metrics as M

# One ranking of 8 items, relevant at ranks 1, 3, 5, 8 (R = 4).
REL = np.array([[1, 0, 1, 0, 1, 0, 0, 1]])
# Graded relevance (shared labels) of the same ranking.
GAIN = np.array([[2, 0, 1, 0, 3, 0, 0, 1]])


def test_rank_is_stable_and_drops_the_excluded_position():
    d = np.array([[2, 1, 1, 0], [0, 0, 0, 0]])
    # row 0: distance 0 at pos 3, then the tie 1,1 in position order 1, 2, then pos 0
    np.testing.assert_array_equal(M.rank(d), [[3, 1, 2, 0], [0, 1, 2, 3]])
    np.testing.assert_array_equal(M.rank(d, exclude=np.array([1, 0])), [[3, 2, 0], [1, 2, 3]])
    with pytest.raises(ValueError):
        M.rank(d, exclude=np.array([4, 0]))


def test_relevance_helpers():
    q = np.array([[1, 1, 0], [0, 0, 1]])
    x = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 1]])
    np.testing.assert_array_equal(M.overlap(q, x), [[1, 2, 0, 1], [0, 0, 0, 1]])
    np.testing.assert_array_equal(M.relevance_any(q, x), [[1, 1, 0, 1], [0, 0, 0, 1]])
    # exact: only x1 = {0, 1} equals q0 = {0, 1}; nothing equals q1 = {2}
    np.testing.assert_array_equal(M.relevance_exact(q, x), [[0, 1, 0, 0], [0, 0, 0, 0]])


def test_precision_recall_hand():
    # top 4 holds ranks 1 and 3: P@4 = 2/4, R@4 = 2/4 (R = 4)
    assert M.precision_at_k(REL, 4)[0] == 0.5
    assert M.recall_at_k(REL, 4)[0] == 0.5
    # top 1: P@1 = 1/1, R@1 = 1/4
    assert M.precision_at_k(REL, 1)[0] == 1.0
    assert M.recall_at_k(REL, 1)[0] == 0.25
    # no relevant item at all: recall defined 0
    assert M.recall_at_k(np.zeros((1, 5)), 3)[0] == 0.0


def test_map_variants_hand():
    # k = 4: relevant at ranks 1, 3 inside the top 4; P@1 = 1, P@3 = 2/3
    #  A: (1 + 2/3) / R_k with R_k = 2         = 5/6
    #  C: (1 + 2/3) / min(4, R=4)              = 5/12
    #  B: m = min(4, 4) = 4, ranks 1, 3, 5, 8: (1/1 + 2/3 + 3/5 + 4/8) / 4 = (83/30) / 4 = 83/120
    assert M.average_precision_at_k(REL, 4, "A")[0] == pytest.approx(5 / 6, abs=1e-12)
    assert M.average_precision_at_k(REL, 4, "C")[0] == pytest.approx(5 / 12, abs=1e-12)
    assert M.average_precision_at_k(REL, 4, "B")[0] == pytest.approx(83 / 120, abs=1e-12)
    # k = 2: only rank 1 inside; A: 1/1 = 1; C: 1 / min(2, 4) = 1/2; B: m = 2, (1/1 + 2/3) / 2 = 5/6
    assert M.average_precision_at_k(REL, 2, "A")[0] == pytest.approx(1.0)
    assert M.average_precision_at_k(REL, 2, "C")[0] == pytest.approx(0.5)
    assert M.average_precision_at_k(REL, 2, "B")[0] == pytest.approx(5 / 6)
    # a query with no relevant item scores 0 in every variant
    for v in "ABC":
        assert M.average_precision_at_k(np.zeros((1, 6)), 3, v)[0] == 0.0
    # relevant only beyond k: A and C are 0, B still counts rank 4: m = min(2, 1) = 1 -> 1/4
    late = np.array([[0, 0, 0, 1, 0]])
    assert M.average_precision_at_k(late, 2, "A")[0] == 0.0
    assert M.average_precision_at_k(late, 2, "C")[0] == 0.0
    assert M.average_precision_at_k(late, 2, "B")[0] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        M.average_precision_at_k(REL, 2, "D")


def test_graded_hand():
    # ACG@3 = (2 + 0 + 1) / 3 = 1
    assert M.acg_at_k(GAIN, 3)[0] == pytest.approx(1.0)
    # WAP@3: ACG@1 = 2/1 = 2, ACG@3 = 3/3 = 1, relevant at 1 and 3 -> (2 + 1) / 2 = 1.5
    assert M.wap_at_k(GAIN, 3)[0] == pytest.approx(1.5)
    # NDCG@3 exp: gains 2^C - 1 = [3, 0, 1, 0, 7, 0, 0, 1]; DCG = 3/log2(2) + 1/log2(4) = 3.5
    #   ideal order 7, 3, 1: IDCG = 7 + 3/log2(3) + 1/2
    assert M.ndcg_at_k(GAIN, 3, "exp")[0] == pytest.approx(3.5 / (7 + 3 / math.log2(3) + 0.5), abs=1e-12)
    # NDCG@3 lin: DCG = 2 + 1/2 = 2.5; ideal 3, 2, 1: IDCG = 3 + 2/log2(3) + 1/2
    assert M.ndcg_at_k(GAIN, 3, "lin")[0] == pytest.approx(2.5 / (3.5 + 2 / math.log2(3)), abs=1e-12)
    assert M.ndcg_at_k(np.zeros((1, 4)), 2)[0] == 0.0


def test_rsim_hand():
    # query {a, b}: |Lq| = 2; retrieved r1 = {a} (overlap 1, |Lr| = 1), r2 = {a, b, c} (overlap 2, |Lr| = 3)
    p, r = M.rsim_precision_recall_at_k(np.array([[1, 2]]), np.array([2]), np.array([[1, 3]]), 2)
    assert p[0] == pytest.approx((1 / 1 + 2 / 3) / 2)  # 5/6
    assert r[0] == pytest.approx((1 / 2 + 2 / 2) / 2)  # 3/4
    # F1 of averages: 2 * (5/6) * (3/4) / (5/6 + 3/4) = (5/4) / (19/12) = 15/19
    assert M.rsim_f1(5 / 6, 3 / 4) == pytest.approx(15 / 19)
    assert M.rsim_f1(0.0, 0.0) == 0.0


def test_radius_hand():
    # distances 0, 1, 1, 3 with relevance 1, 0, 1, 1 (R = 3), 3 bits
    d = np.array([[0, 1, 1, 3]])
    rel = np.array([[1, 0, 1, 1]])
    p, r = M.precision_recall_at_radius(d, rel, 3)
    # r=0: 1 item, 1 relevant -> 1; r=1: 3 items, 2 rel -> 2/3; r=2: same; r=3: 4 items, 3 rel -> 3/4
    np.testing.assert_allclose(p[0], [1, 2 / 3, 2 / 3, 3 / 4])
    np.testing.assert_allclose(r[0], [1 / 3, 2 / 3, 2 / 3, 1])
    # empty ball: precision defined 0
    p2, _ = M.precision_recall_at_radius(np.array([[2, 3]]), np.array([[1, 1]]), 3)
    np.testing.assert_allclose(p2[0], [0, 0, 1, 1])
    with pytest.raises(ValueError):
        M.radius_counts(np.array([[4]]), np.array([[1]]), 3)


def _brute_tie_ap(d: np.ndarray, rel: np.ndarray, k: int | None) -> tuple[float, float]:
    """Mean AP (variant C / full) and P@k over every ordering of the tie groups, by enumeration."""
    groups = [list(np.flatnonzero(d == v)) for v in np.unique(d)]
    aps, pks = [], []
    total = rel.sum()
    kk = len(d) if k is None else k
    denom = total if k is None else min(k, total)
    for perms in itertools.product(*[itertools.permutations(g) for g in groups]):
        order = [i for p in perms for i in p]
        r = rel[order]
        hits, s = 0, 0.0
        for i in range(kk):
            if r[i]:
                hits += 1
                s += hits / (i + 1)
        aps.append(s / denom if denom else 0.0)
        pks.append(r[:kk].sum() / kk)
    return float(np.mean(aps)), float(np.mean(pks))


@pytest.mark.parametrize("seed", range(10))
def test_tie_aware_against_enumeration(seed):
    rng = np.random.default_rng(seed)
    n = 7
    d = np.sort(rng.integers(0, 3, n))
    rel = rng.integers(0, 2, n)
    shuffle = rng.permutation(n)  # the tie-aware values depend only on distances, not on the input order
    for k in (None, 2, 4):
        want_ap, want_pk = _brute_tie_ap(d, rel, k)
        got = M.tie_aware_average_precision(d[None, shuffle], rel[None, shuffle], k)[0]
        assert got == pytest.approx(want_ap, abs=1e-12)
        if k is not None:
            got_pk = M.tie_aware_precision_at_k(d[None, shuffle], rel[None, shuffle], k, bits=2)[0]
            assert got_pk == pytest.approx(want_pk, abs=1e-12)


def test_tie_aware_equals_plain_without_ties():
    rng = np.random.default_rng(1)
    d = np.arange(30)[None].repeat(4, 0)
    rel = rng.integers(0, 2, (4, 30))
    np.testing.assert_allclose(M.tie_aware_average_precision(d, rel, 10), M.average_precision_at_k(rel, 10, "C"))
    np.testing.assert_allclose(M.tie_aware_precision_at_k(d, rel, 7), M.precision_at_k(rel, 7))


def test_cross_modal_recall_hand():
    # 2 images, 3 captions: captions 0, 1 -> image 0, caption 2 -> image 1
    d = np.array([[0.5, 0.1, 0.2],    # image 0 ranks captions 1, 2, 0 -> own caption at rank 1: hit @1
                  [0.1, 0.2, 0.3]])   # image 1 ranks 0, 1, 2 -> own caption 2 at rank 3: hit only @3+
    out = M.cross_modal_recall(d, np.array([0, 0, 1]), ks=(1, 3))
    assert out["i2t_R@1"] == 0.5 and out["i2t_R@3"] == 1.0
    # captions over images (transpose): c0 -> [0.5, 0.1] ranks image 1 first (miss @1); c1 -> image 0 first
    # (hit); c2 -> [0.2, 0.3] image 0 first (miss @1). R@1 = 1/3, R@3 = 1
    assert out["t2i_R@1"] == pytest.approx(1 / 3) and out["t2i_R@3"] == 1.0
    assert out["mR"] == pytest.approx((0.5 + 1 + 1 / 3 + 1) / 4)


def _random_case(seed: int, nq: int = 12, n: int = 40):
    rng = np.random.default_rng(seed)
    dist = rng.random((nq, n))  # continuous: no ties, so every library orders identically
    ql = (rng.random((nq, 6)) < 0.25).astype(np.uint8)
    dl = (rng.random((n, 6)) < 0.25).astype(np.uint8)
    order = M.rank(dist)
    c = M.ranked(M.overlap(ql, dl), order)
    return dist, ql, dl, M.overlap(ql, dl), c


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 5, 17])
def test_agrees_with_torchmetrics(k):
    from torchmetrics.functional.retrieval import (
        retrieval_average_precision,
        retrieval_normalized_dcg,
        retrieval_precision,
        retrieval_recall,
    )

    dist, ql, dl, c_all, c = _random_case(k)
    rel = c > 0
    ours = {"A": M.average_precision_at_k(rel, k, "A"), "P": M.precision_at_k(rel, k),
            "R": M.recall_at_k(rel, k), "lin": M.ndcg_at_k(c, k, "lin"), "exp": M.ndcg_at_k(c, k, "exp")}
    for q in range(dist.shape[0]):
        # torchmetrics scores must be > 0 (it zeroes targets of non-positive scores): similarity = 2 - distance
        preds = torch.tensor(2.0 - dist[q], dtype=torch.float64)
        tgt = torch.tensor(c_all[q] > 0)
        # torchmetrics RetrievalMAP(top_k=k) divides by the relevant items retrieved in the top k: variant A.
        # It accumulates in float32, hence 1e-6 rather than 1e-9.
        assert ours["A"][q] == pytest.approx(float(retrieval_average_precision(preds, tgt, top_k=k)), abs=1e-6)
        assert ours["P"][q] == pytest.approx(float(retrieval_precision(preds, tgt, top_k=k)), abs=1e-6)
        assert ours["R"][q] == pytest.approx(float(retrieval_recall(preds, tgt, top_k=k)), abs=1e-6)
        # torchmetrics NDCG uses the target itself as gain (linear); exp gain = feed it 2^C - 1
        g = torch.tensor(c_all[q], dtype=torch.float64)
        assert ours["lin"][q] == pytest.approx(float(retrieval_normalized_dcg(preds, g, top_k=k)), abs=1e-6)
        assert ours["exp"][q] == pytest.approx(float(retrieval_normalized_dcg(preds, 2 ** g - 1, top_k=k)),
                                               abs=1e-6)


def test_agrees_with_torchmetrics_module_map():
    from torchmetrics.retrieval import RetrievalMAP

    dist, ql, dl, c_all, c = _random_case(3)
    k = 10
    m = RetrievalMAP(top_k=k, empty_target_action="neg")
    nq, n = dist.shape
    m.update(torch.tensor(2.0 - dist).flatten(), torch.tensor(c_all > 0).flatten(),
             indexes=torch.arange(nq).repeat_interleave(n))
    assert M.average_precision_at_k(c > 0, k, "A").mean() == pytest.approx(float(m.compute()), abs=1e-6)


@pytest.mark.slow
def test_agrees_with_ranx():
    ranx = pytest.importorskip("ranx")
    dist, ql, dl, c_all, c = _random_case(7, nq=10, n=30)
    nq, n = dist.shape
    qrels = ranx.Qrels({f"q{q}": {f"d{i}": int(c_all[q, i]) for i in range(n) if c_all[q, i] > 0}
                        for q in range(nq) if c_all[q].any()})
    run = ranx.Run({f"q{q}": {f"d{i}": float(2.0 - dist[q, i]) for i in range(n)}
                    for q in range(nq) if c_all[q].any()})
    has = c_all.any(1)
    k = 8
    got = ranx.evaluate(qrels, run, [f"map@{k}", "map", f"ndcg@{k}", f"ndcg_burges@{k}"], return_mean=False)
    rel = c > 0
    total = rel.sum(1)[has]
    ap_c = M.average_precision_at_k(rel, k, "C")[has]
    # ranx map@k divides by all relevant R (not min(k, R)): C * min(k, R) / R
    np.testing.assert_allclose(got[f"map@{k}"], ap_c * np.minimum(k, total) / total, atol=1e-9)
    # full-list AP: ranx map = variant C with k = n (min(n, R) = R)
    np.testing.assert_allclose(got["map"], M.average_precision_at_k(rel, n, "C")[has], atol=1e-9)
    # ranx ndcg = Järvelin linear gain, ndcg_burges = 2^C - 1 gain; both log2(i+1) discounts
    np.testing.assert_allclose(got[f"ndcg@{k}"], M.ndcg_at_k(c, k, "lin")[has], atol=1e-9)
    np.testing.assert_allclose(got[f"ndcg_burges@{k}"], M.ndcg_at_k(c, k, "exp")[has], atol=1e-9)


def _loop_b(rel_row: np.ndarray, k: int) -> float:
    """DUCH calc_map_k for one query, written as the reference loop."""
    total = int(rel_row.sum())
    if total == 0:
        return 0.0
    m = min(k, total)
    idx = [i + 1 for i, r in enumerate(rel_row) if r][:m]
    return sum((n + 1) / idx[n] for n in range(m)) / m


def _loop_wap(c_row: np.ndarray, k: int) -> float:
    s, hits = 0.0, 0
    for i in range(k):
        if c_row[i] > 0:
            hits += 1
            s += sum(c_row[: i + 1]) / (i + 1)
    return s / hits if hits else 0.0


@pytest.mark.parametrize("k", [1, 4, 15])
def test_variant_b_and_wap_against_loops(k):
    dist, ql, dl, c_all, c = _random_case(11 + k)
    rel = c > 0
    b = M.average_precision_at_k(rel, k, "B")
    w = M.wap_at_k(c, k)
    for q in range(rel.shape[0]):
        assert b[q] == pytest.approx(_loop_b(rel[q], k), abs=1e-12)
        assert w[q] == pytest.approx(_loop_wap(c[q], k), abs=1e-12)


def test_per_query_metrics_keys_and_exclusion():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 9, (10, 10))
    labels = (rng.random((10, 4)) < 0.4).astype(np.uint8)
    out = M.per_query_metrics(codes, labels, labels, ks=(3,), exclude=np.arange(10), hamming_bits=8,
                              pk_curve=(1, 2))
    for key in ("P@3", "R@3", "mAP@3(A)", "mAP@3(B)", "mAP@3(C)", "WAP@3", "ACG@3", "NDCG@3(exp)",
                "NDCG@3(lin)", "rsim_P@3", "rsim_R@3", "P@3(tie-aware)", "mAP@3(C,tie-aware)"):
        assert out[key].shape == (10,)
    assert out["radius_P"].shape == (10, 9) and out["pk_curve"].shape == (10, 2)
    # leave-one-out: the query's own item never counts; recall denominator is the other 9 items
    order = M.rank(codes, np.arange(10))
    assert not (order == np.arange(10)[:, None]).any()
    rel = M.ranked(M.relevance_any(labels, labels), order)
    np.testing.assert_allclose(out["R@3"], M.recall_at_k(rel, 3))
    assert out["radius_R"][:, -1][rel.any(1)].min() == 1.0


def _ap_loop(rel: list[bool], k: int, variant: str) -> float:
    hits, s = 0, 0.0
    for i, r in enumerate(rel[:k], start=1):
        if r:
            hits += 1
            s += hits / i
    denom = hits if variant == "A" else min(k, sum(rel))
    return s / denom if denom else 0.0


def test_strict_relevances_against_loops():
    rng = np.random.default_rng(3)
    n, k = 14, 5
    codes = rng.integers(0, 4, (n, 3))  # few distinct distances: many ties
    labels = (rng.random((n, 4)) < 0.45).astype(np.uint8)
    labels[np.arange(n), rng.integers(0, 4, n)] = 1
    labels[1] = labels[0]  # at least one identical pair
    dist = np.abs(codes[:, None, :] - codes[None, :, :]).sum(-1).astype(np.int64)
    out = M.per_query_metrics(dist, labels, labels, ks=(k,), exclude=np.arange(n), hamming_bits=9)
    sets = [set(np.flatnonzero(r).tolist()) for r in labels]
    for q in range(n):
        # ranking by hand: ascending distance, ties by position, the query itself left out
        order = sorted((j for j in range(n) if j != q), key=lambda j: (dist[q, j], j))
        exact = [sets[j] == sets[q] for j in order]
        jac = [len(sets[j] & sets[q]) / len(sets[j] | sets[q]) >= 0.5 for j in order]
        for name, rel in (("exact", exact), ("jac>=0.5", jac)):
            assert out[f"P@{k}[{name}]"][q] == pytest.approx(sum(rel[:k]) / k)
            assert out[f"mAP@{k}(A)[{name}]"][q] == pytest.approx(_ap_loop(rel, k, "A"))
            assert out[f"mAP@{k}(C)[{name}]"][q] == pytest.approx(_ap_loop(rel, k, "C"))
            # tie-aware: the (enumeration-tested) expected AP of the same relevance over the kept items
            kept = np.array([[dist[q, j] for j in order]])
            want = M.tie_aware_average_precision(kept, np.array([rel]), k, bits=9)[0]
            assert out[f"mAP@{k}(C,tie-aware)[{name}]"][q] == pytest.approx(want)
    assert out[f"P@{k}[exact]"].sum() > 0
    # identical label sets are a subset of Jaccard >= 0.5, which is a subset of "any shared label"
    e = M.relevance_exact(labels, labels)
    j = M.relevance_jaccard(labels, labels)
    assert (~e | j).all() and (~j | M.relevance_any(labels, labels)).all()
