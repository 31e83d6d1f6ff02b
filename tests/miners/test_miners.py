"""Miners against brute-force loops and hand-computed rankings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsir.losses import SquaredEuclidean
from rsir.miners import (
    BatchHardMiner,
    FixedTripletMiner,
    MilanPairsBatchSampler,
    MultiLabelDiverseMiner,
    RandomTripletMiner,
    RelevanceFirstDiverseMiner,
    SemiHardMiner,
)
from rsir.miners.base import relevance
from rsir.miners.multilabel_diverse import farthest_point_order, rank_candidates, select_relevance_first


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


def jac_of(lab):
    labn = lab.numpy()
    inter = labn @ labn.T
    union = labn.sum(1)[:, None] + labn.sum(1)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def _tie_batch(rng, n_max):
    """A random batch on an integer grid: equal distances (ties) are common, which the tie rules must resolve."""
    n = int(rng.integers(5, n_max))
    emb = torch.from_numpy(rng.integers(0, 3, size=(n, 2)).astype(np.float32))
    lab = torch.from_numpy((rng.random((n, 4)) < 0.35).astype(np.float32))
    return n, lab, SquaredEuclidean().pairwise(emb).double().numpy(), jac_of(lab)


def test_batched_ranking_matches_per_anchor_loop():
    rng = np.random.default_rng(7)
    for trial in range(20):
        n, lab, d, jac = _tie_batch(rng, 40)
        pos, neg = (m.numpy() for m in relevance(lab))
        for a in range(n):
            for mask, is_pos in ((pos[a], True), (neg[a], False)):
                cand = np.flatnonzero(mask).tolist()
                want = _rank_candidates_loop(d[a], jac[a], d, cand, is_pos) if cand else []
                assert rank_candidates(d[a], jac[a], d, cand, is_pos) == want, (trial, a, is_pos)


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


def _relevance_first_loop(d_anchor, jac, d, cand, k, positive):
    """The relevance-first selection written out with lists and scipy ranks, as a reference."""
    from scipy.stats import rankdata

    if not cand or k < 1:
        return []
    cut = sorted((jac[c] for c in cand), reverse=True)[min(k, len(cand)) - 1]
    pool = [c for c in cand if jac[c] >= cut]
    hard = {c: (-d_anchor[c] if positive else d_anchor[c]) for c in pool}
    chosen: list[int] = []
    while len(chosen) < min(k, len(pool)):
        rest = [c for c in pool if c not in chosen]
        score = dict.fromkeys(rest, 0.0)
        if chosen:
            hr = rankdata([hard[c] for c in rest])
            dr = rankdata([-min(d[c][s] for s in chosen) for c in rest])
            score = {c: hr[i] + dr[i] for i, c in enumerate(rest)}
        chosen.append(min(rest, key=lambda c: (score[c], hard[c], c)))
    return chosen


def test_relevance_first_by_hand():
    # 1-D embeddings, squared distances; anchor 0 at x=0 with labels {A, B}
    x = [0, 1, 5, 9, 4, -1, -3, 2, 8]
    lab = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0],
                        [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 1]], dtype=torch.float32)
    emb = torch.tensor(x, dtype=torch.float32)[:, None]
    d = SquaredEuclidean().pairwise(emb).double().numpy()
    jac = np.array([1, 1, 1, 0.5, 1, 0, 0, 0, 0])
    # positives 1..4: item 3 (x=9) is the hardest but less relevant (J 0.5), so the pool is {1, 2, 4}; the first
    # pick is the hardest of the pool, 2 (d 25); then 4 (hardness rank 1, diversity rank 2: min d to 2 is 1) and
    # 1 (hardness 2, diversity 1: 16) tie at 3 and the harder one, 4, wins
    assert select_relevance_first(d[0], jac, d, [1, 2, 3, 4], 2, positive=True) == [2, 4]
    # the Borda reading takes the hardest, less relevant item 3 first (totals: 3 -> 6, 2 -> 7, 1 -> 8, 4 -> 9)
    assert rank_candidates(d[0], jac, d, [1, 2, 3, 4], positive=True) == [3, 2, 1, 4]
    # negatives 5..8 all tie on relevance; first the nearest, 5 (d 1); then 7 (hardness 1 + diversity 2 = 3)
    # before 8 (3 + 1 = 4) and 6 (2 + 3 = 5)
    assert select_relevance_first(d[0], jac, d, [5, 6, 7, 8], 2, positive=False) == [5, 7]
    # fewer candidates than wanted: all of them, hardest first
    assert select_relevance_first(d[0], jac, d, [1, 3], 5, positive=True) == [3, 1]
    miner = RelevanceFirstDiverseMiner(n_anchors=1, n_pos=2, n_neg=2, distance=SquaredEuclidean(), seed=0)
    a, p, n = miner(emb, lab)
    an = int(a[0])
    want = [(an, pi, ni) for pi in _relevance_first_loop(d[an], jac_of(lab)[an], d, _pos(lab, an), 2, True)
            for ni in _relevance_first_loop(d[an], jac_of(lab)[an], d, _neg(lab, an), 2, False)]
    assert list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True)) == want


def _pos(lab, a):
    return [j for j in range(len(lab)) if j != a and _shares(lab, a, j)]


def _neg(lab, a):
    return [j for j in range(len(lab)) if not _shares(lab, a, j)]


def test_relevance_first_matches_loop_with_ties():
    rng = np.random.default_rng(5)
    for trial in range(20):
        n, lab, d, jac = _tie_batch(rng, 30)
        for a in range(n):
            for cand, is_pos in ((_pos(lab, a), True), (_neg(lab, a), False)):
                for k in (1, 2, 3):
                    want = _relevance_first_loop(d[a], jac[a], d, cand, k, is_pos)
                    assert select_relevance_first(d[a], jac[a], d, cand, k, is_pos) == want, (trial, a, k)


def _borda_loop(d_anchor, jac, d, cand, k, positive):
    return _rank_candidates_loop(d_anchor, jac, d, cand, positive)[:k] if cand else []


@pytest.mark.parametrize("miner_cls, select", [(MultiLabelDiverseMiner, _borda_loop),
                                               (RelevanceFirstDiverseMiner, _relevance_first_loop)])
def test_diverse_miners_match_loop_over_anchors(miner_cls, select):
    emb, lab = _batch(n=30, seed=11)
    miner = miner_cls(anchor_fraction=0.5, n_pos=2, n_neg=3, distance=SquaredEuclidean(), seed=4)
    a, p, n = miner(emb, lab)
    ref = MultiLabelDiverseMiner(anchor_fraction=0.5, n_pos=2, n_neg=3, distance=SquaredEuclidean(), seed=4)
    d = SquaredEuclidean().pairwise(emb).double().numpy()
    jac = jac_of(lab)
    eligible = [i for i in range(30) if _pos(lab, i) and _neg(lab, i)]
    want = []
    for an in ref.select_anchors(d, eligible):
        ps = select(d[an], jac[an], d, _pos(lab, an), 2, True)
        ns = select(d[an], jac[an], d, _neg(lab, an), 3, False)
        want += [(an, pi, ni) for pi in ps for ni in ns]
    got = list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
    assert got == want and 0 < len(got) <= 15 * 2 * 3
    for ai, pi, ni in got:
        assert _shares(lab, ai, pi) and ai != pi and not _shares(lab, ai, ni)


def test_samplers_by_name():
    from rsir.methods.recipes import SAMPLERS, make_miner

    assert isinstance(make_miner("diverse-rf"), RelevanceFirstDiverseMiner)
    assert type(make_miner("diverse")) is MultiLabelDiverseMiner
    assert {"random", "batch-hard", "semi-hard", "diverse", "diverse-rf"} <= set(SAMPLERS)
