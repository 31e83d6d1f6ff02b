"""Miners against brute-force loops and hand-computed rankings."""

from __future__ import annotations

import numpy as np
import torch

from rsir.losses import SquaredEuclidean
from rsir.miners import (
    BatchHardMiner,
    FixedTripletMiner,
    MilanPairsBatchSampler,
    MultiLabelDiverseMiner,
    RandomTripletMiner,
    SemiHardMiner,
)
from rsir.miners.base import relevance
from rsir.miners.multilabel_diverse import farthest_point_order, rank_candidates


def _batch(n: int = 16, c: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    lab = (rng.random((n, c)) < 0.3).astype(np.float32)
    lab[np.arange(n), rng.integers(0, c, n)] = 1
    emb = rng.normal(size=(n, 4)).astype(np.float32)
    return torch.from_numpy(emb), torch.from_numpy(lab)


def _shares(lab: torch.Tensor, i: int, j: int) -> bool:
    return any(lab[i, c] > 0 and lab[j, c] > 0 for c in range(lab.shape[1]))


def test_relevance_masks_match_loop():
    _, lab = _batch()
    pos, neg = relevance(lab)
    for i in range(len(lab)):
        for j in range(len(lab)):
            assert bool(pos[i, j]) == (i != j and _shares(lab, i, j))
            assert bool(neg[i, j]) == (not _shares(lab, i, j))


def test_batch_hard_matches_brute_force():
    emb, lab = _batch(seed=1)
    a, p, n = BatchHardMiner(SquaredEuclidean())(emb, lab)
    exp = []
    for i in range(len(lab)):
        d = [float(((emb[i] - emb[j]) ** 2).sum()) for j in range(len(lab))]
        ps = [j for j in range(len(lab)) if j != i and _shares(lab, i, j)]
        ns = [j for j in range(len(lab)) if not _shares(lab, i, j)]
        if ps and ns:
            exp.append((i, max(ps, key=lambda j: d[j]), min(ns, key=lambda j: d[j])))
    assert list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True)) == exp


def test_random_miner_valid_and_reproducible():
    emb, lab = _batch(seed=2)
    t1 = RandomTripletMiner(per_anchor=2, seed=5)(emb, lab)
    t2 = RandomTripletMiner(per_anchor=2, seed=5)(emb, lab)
    assert all(torch.equal(x, y) for x, y in zip(t1, t2, strict=True))
    for a, p, n in zip(*(x.tolist() for x in t1), strict=True):
        assert a != p and _shares(lab, a, p) and not _shares(lab, a, n)


def test_farthest_point_order_hand_example():
    # points on a line at 0, 1, 5, 6, 10; start {0}: farthest is 10 (d=10), then min-dist to {0,10}:
    # 1->1, 5->5, 6->4 -> pick 5; then 1->1, 6->1 -> tie -> earlier candidate (1)
    x = np.array([0.0, 1.0, 5.0, 6.0, 10.0])
    d = np.abs(x[:, None] - x[None])
    assert farthest_point_order(d, [1, 2, 3, 4], [0], 4) == [4, 2, 1, 3]


def test_rank_aggregation_hand_example():
    # anchor at 0, positives at 1 (item 1), 2 (item 2), 3 (item 3) on a line.
    x = np.array([0.0, 1.0, 2.0, 3.0])
    d = np.abs(x[:, None] - x[None])
    # equal relevance: rel ranks 2,2,2; hardness (far first): 3->1, 2->2, 1->3;
    # diversity from the hardest (3): then farthest from {3} is 1, then 2 -> ranks 3->1, 1->2, 2->3
    # totals: item3 4, item1 7, item2 7 -> tie broken by hardness: item2 before item1
    jac = np.array([0.0, 0.5, 0.5, 0.5])
    assert rank_candidates(d[0], jac, d, [1, 2, 3], positive=True) == [3, 2, 1]
    # item 1 more relevant: rel ranks 1->1, 2,3->2.5; totals item3 4.5, item1 6, item2 7.5
    jac = np.array([0.0, 1.0, 0.5, 0.5])
    assert rank_candidates(d[0], jac, d, [1, 2, 3], positive=True) == [3, 1, 2]
    # negatives prefer near ones: hardness 1->1, 2->2, 3->3; diversity from 1: 3 then 2 -> 1->1, 3->2, 2->3
    # totals (rel all tied at 2): item1 4, item2 7, item3 7 -> tie by hardness: item2, item3
    jac = np.zeros(4)
    assert rank_candidates(d[0], jac, d, [1, 2, 3], positive=False) == [1, 2, 3]


def test_diverse_miner_anchors_are_max_min_and_triplets_valid():
    emb, lab = _batch(n=24, seed=3)
    miner = MultiLabelDiverseMiner(n_anchors=6, n_pos=2, n_neg=3, distance=SquaredEuclidean(), seed=0)
    a, p, n = miner(emb, lab)
    anchors = list(dict.fromkeys(a.tolist()))
    assert len(anchors) == 6 < len(lab)
    # recompute the max-min sequence by hand from the first anchor
    d = [[float(((emb[i] - emb[j]) ** 2).sum()) for j in range(24)] for i in range(24)]
    pos, neg = relevance(lab)
    eligible = [i for i in range(24) if pos[i].any() and neg[i].any()]
    chosen = [anchors[0]]
    while len(chosen) < 6:
        rest = [e for e in eligible if e not in chosen]
        chosen.append(max(rest, key=lambda e: (min(d[e][c] for c in chosen), -rest.index(e))))
    assert anchors == chosen
    # every triplet uses multi-label relevance, and each anchor yields all n_pos * n_neg combinations
    for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist(), strict=True):
        assert _shares(lab, ai, pi) and ai != pi and not _shares(lab, ai, ni)
    for an in anchors:
        ps = {pi for ai, pi in zip(a.tolist(), p.tolist(), strict=True) if ai == an}
        ns = {ni for ai, ni in zip(a.tolist(), n.tolist(), strict=True) if ai == an}
        k = sum(1 for ai in a.tolist() if ai == an)
        assert k == len(ps) * len(ns)
    # far fewer triplets than the batch-all count
    batch_all = int(sum(int(pos[i].sum()) * int(neg[i].sum()) for i in range(24)))
    assert len(a) <= 6 * 2 * 3 < batch_all


def test_milan_pairs_sampler_two_classes():
    classes = np.repeat(np.arange(4), 10)
    s = MilanPairsBatchSampler(classes, n_triplets=3, iterations=5, seed=0)
    batches = list(s)
    assert len(batches) == 5
    for b in batches:
        assert len(b) == 9
        anc, pos, neg = b[:3], b[3:6], b[6:]
        cp = {int(classes[i]) for i in anc + pos}
        cn = {int(classes[i]) for i in neg}
        assert len(cp) == 1 and len(cn) == 1 and cp != cn
        assert not set(anc) & set(pos)
    a, p, n = FixedTripletMiner()(torch.zeros(9, 2), torch.zeros(9))
    assert a.tolist() == [0, 1, 2] and p.tolist() == [3, 4, 5] and n.tolist() == [6, 7, 8]


def _rank_candidates_loop(d_anchor, jaccard, d, candidates, positive):
    """The per-anchor ranking written as a plain loop (scipy ranks, farthest-point walk), as a reference."""
    from scipy.stats import rankdata

    c = np.asarray(candidates)
    r_rel = rankdata(-jaccard[c], method="average")
    hard_key = -d_anchor[c] if positive else d_anchor[c]
    r_hard = rankdata(hard_key, method="average")
    hardest = [int(c[i]) for i in np.lexsort((c, hard_key))]
    order = farthest_point_order(d, hardest, [], len(hardest))
    r_div = np.array([order.index(int(v)) + 1 for v in c], dtype=float)
    total = r_rel + r_hard + r_div
    return [int(c[i]) for i in np.lexsort((c, r_hard, total))]


def test_batched_ranking_matches_per_anchor_loop():
    rng = np.random.default_rng(7)
    for trial in range(20):
        n = int(rng.integers(5, 40))
        # integer coordinates make equal distances (ties) common, which the tie rules must resolve alike
        emb = torch.from_numpy(rng.integers(0, 3, size=(n, 2)).astype(np.float32))
        lab = torch.from_numpy((rng.random((n, 4)) < 0.35).astype(np.float32))
        d = SquaredEuclidean().pairwise(emb).double().numpy()
        labn = lab.numpy()
        inter = labn @ labn.T
        union = labn.sum(1)[:, None] + labn.sum(1)[None] - inter
        jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        pos, neg = (m.numpy() for m in relevance(lab))
        for a in range(n):
            for mask, is_pos in ((pos[a], True), (neg[a], False)):
                cand = np.flatnonzero(mask).tolist()
                want = _rank_candidates_loop(d[a], jac[a], d, cand, is_pos) if cand else []
                assert rank_candidates(d[a], jac[a], d, cand, is_pos) == want, (trial, a, is_pos)


def test_diverse_miner_matches_loop_over_anchors():
    emb, lab = _batch(n=30, seed=11)
    miner = MultiLabelDiverseMiner(anchor_fraction=0.5, n_pos=2, n_neg=3, distance=SquaredEuclidean(), seed=4)
    a, p, n = miner(emb, lab)
    ref = MultiLabelDiverseMiner(anchor_fraction=0.5, n_pos=2, n_neg=3, distance=SquaredEuclidean(), seed=4)
    d = SquaredEuclidean().pairwise(emb).double().numpy()
    pos, neg = (m.numpy() for m in relevance(lab))
    labn = lab.numpy()
    inter = labn @ labn.T
    jac = inter / np.maximum(labn.sum(1)[:, None] + labn.sum(1)[None] - inter, 1)
    eligible = [i for i in range(30) if pos[i].any() and neg[i].any()]
    want = []
    for an in ref.select_anchors(d, eligible):
        ps = _rank_candidates_loop(d[an], jac[an], d, np.flatnonzero(pos[an]).tolist(), True)[:2]
        ns = _rank_candidates_loop(d[an], jac[an], d, np.flatnonzero(neg[an]).tolist(), False)[:3]
        want += [(an, pi, ni) for pi in ps for ni in ns]
    assert list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True)) == want


def test_random_miner_draws_uniformly():
    # anchor 0 has positives {1, 2, 3} and negatives {4, 5}: every one should be drawn about equally often
    lab = torch.tensor([[1, 0], [1, 0], [1, 0], [1, 1], [0, 1], [0, 1]], dtype=torch.float32)
    a, p, n = RandomTripletMiner(per_anchor=3000, seed=0)(torch.zeros(6, 2), lab)
    p0, n0 = p[a == 0], n[a == 0]
    assert set(p0.tolist()) == {1, 2, 3} and set(n0.tolist()) == {4, 5}
    assert all(abs(int((p0 == j).sum()) - 1000) < 150 for j in (1, 2, 3))
    assert all(abs(int((n0 == j).sum()) - 1500) < 150 for j in (4, 5))


def test_semi_hard_matches_a_hand_loop():
    dist = SquaredEuclidean(normalize=True)
    for seed in range(3):
        emb, lab = _batch(n=20, c=4, seed=seed)
        margin = 0.5
        a, p, n = SemiHardMiner(margin, dist)(emb, lab)
        d = dist.pairwise(emb).numpy()
        want = []
        for i in range(len(lab)):
            for j in range(len(lab)):
                if i == j or not _shares(lab, i, j):
                    continue
                # FaceNet: the nearest negative with d(a,p) < d(a,n) < d(a,p) + margin, pair dropped if none
                best, best_d = None, np.inf
                for k in range(len(lab)):
                    if not _shares(lab, i, k) and d[i, j] < d[i, k] < d[i, j] + margin and d[i, k] < best_d:
                        best, best_d = k, d[i, k]
                if best is not None:
                    want.append((i, j, best))
        got = list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
        assert got == want and len(want) > 0
    # with a margin of 0 no negative lies in the band
    emb, lab = _batch()
    assert len(SemiHardMiner(0.0, dist)(emb, lab)[0]) == 0
