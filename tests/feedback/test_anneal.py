"""ANNEAL's parts against loops written by hand: contrastive loss, MGUE threshold and uncertainty, BCGUE,
k-means representatives, each selection strategy, the oracle, the retrieval mAP, and the loop's bookkeeping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsir.feedback import FeedbackError
from rsir.feedback import anneal as A
from rsir.losses.contrastive import ContrastiveLoss


def test_contrastive_loss_by_hand() -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(6, 3, generator=g)
    i, j, y = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 4, 5]), torch.tensor([1, 0, 0, 1])
    m = 1.5
    total = 0.0
    for a, b, s in zip(i.tolist(), j.tolist(), y.tolist(), strict=True):
        d = math.sqrt(sum((emb[a, k].item() - emb[b, k].item()) ** 2 for k in range(3)))
        total += d * d if s else max(0.0, m - d) ** 2
    got = ContrastiveLoss(m)(emb, i, j, y)
    assert torch.isclose(got, torch.tensor(total / 4), atol=1e-5)
    assert ContrastiveLoss()(emb, i[:0], j[:0], y[:0]).item() == 0.0
    with pytest.raises(ValueError):
        ContrastiveLoss(0.0)


def test_mgue_threshold_midpoint_and_least_error() -> None:
    d = np.array([0.1, 0.2, 0.35, 0.5, 0.6, 0.9])
    y = np.array([1, 1, 0, 1, 0, 0])
    # midpoint of the class means: similar mean (0.1+0.2+0.5)/3, dissimilar (0.35+0.6+0.9)/3
    assert A.mgue_threshold(d, y, "midpoint") == pytest.approx(((0.8 / 3) + (1.85 / 3)) / 2)
    tau = A.mgue_threshold(d, y, "error")
    # brute force over every cut between sorted distances: misclassified = dissimilar below + similar above
    cuts = [0.0, 0.15, 0.275, 0.425, 0.55, 0.75, 1.0]
    errs = [sum((di < c) != bool(yi) for di, yi in zip(d, y, strict=True)) for c in cuts]
    best = min(errs)
    assert sum((di < tau) != bool(yi) for di, yi in zip(d, y, strict=True)) == best == 1
    assert A.mgue_threshold(d, np.ones(6), fallback=0.42) == 0.42
    with pytest.raises(FeedbackError, match="both answers"):
        A.mgue_threshold(d, np.zeros(6))


def test_mgue_uncertainty_is_monotone_in_distance_to_tau() -> None:
    d = np.linspace(0, 2, 41)
    u = A.mgue_uncertainty(d, 0.8)
    assert u.argmax() == 16  # d = 0.8
    far = np.abs(d - 0.8)
    for a in range(41):
        for b in range(41):
            if far[a] < far[b]:
                assert u[a] > u[b]
    p = np.array([0.0, 0.3, 0.5, 0.55, 1.0])
    assert np.argsort(-A.bcgue_uncertainty(p)).tolist()[:2] == [2, 3]


def test_bcgue_classifier_learns_pair_labels() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 4)).astype(np.float32)
    cls = (z[:, 0] > 0).astype(int)
    i, j = rng.integers(0, 200, 600), rng.integers(0, 200, 600)
    y = (cls[i] == cls[j]).astype(int)
    clf = A.train_pair_classifier(A.pair_features(z, i, j), y, steps=300)
    p = clf(A.pair_features(z, i, j))
    assert ((p > 0.5) == y).mean() > 0.85
    # symmetric in the two items
    assert np.allclose(clf(A.pair_features(z, j, i)), p, atol=1e-6)


def test_kmeans_representatives_by_hand() -> None:
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], float)
    x = np.concatenate([c + rng.normal(scale=0.5, size=(25, 2)) for c in centres])
    labels, cent = A.kmeans(x, 4, rng)
    # the four blobs are recovered: each cluster holds exactly one blob
    assert sorted(np.bincount(labels).tolist()) == [25, 25, 25, 25]
    for c in range(4):
        assert len(set((np.flatnonzero(labels == c) // 25).tolist())) == 1
    reps = A.representatives(x, labels, cent)
    for c, r in enumerate(reps):  # by hand: the member with the smallest squared distance to the centre
        members = [m for m in range(100) if labels[m] == c]
        best = min(members, key=lambda m: sum((x[m, t] - cent[c, t]) ** 2 for t in range(2)))
        assert r == best
    assert A.diverse(x[:3], 5, rng).tolist() == [0, 1, 2]
    with pytest.raises(FeedbackError):
        A.kmeans(x, 0, rng)


def test_sample_pool_distinct_unordered_pairs() -> None:
    rng = np.random.default_rng(0)
    items = np.array([3, 5, 7, 11, 13])
    i, j = A.sample_pool(items, 100, rng)
    assert i.size == 10  # all C(5, 2) pairs
    assert (i < j).all() and set(i) | set(j) <= set(items.tolist())
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == 10
    with pytest.raises(FeedbackError):
        A.sample_pool(items[:1], 5, rng)


def test_knn_pool_by_hand() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    items = np.arange(5, 25)
    i, j = A.knn_pool(x, items, 3, 10_000, rng, block=7)  # a block size that does not divide the items
    want = set()
    for a in items.tolist():  # by hand: each item's 3 nearest other items, as unordered pairs
        near = sorted((b for b in items.tolist() if b != a), key=lambda b: math.dist(x[a], x[b]))[:3]
        want |= {(min(a, b), max(a, b)) for b in near}
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == want
    assert (i < j).all() and len(want) == i.size
    i2, j2 = A.knn_pool(x, items, 3, 5, rng)  # capped: a subset of the same pairs
    assert i2.size == 5 and set(zip(i2.tolist(), j2.tolist(), strict=True)) <= want
    cfg = A.AnnealConfig(pool_from="knn", neighbours=3, pool=10_000)
    assert set(zip(*(v.tolist() for v in A.candidate_pool(x, items, cfg, rng)), strict=True)) == want
    with pytest.raises(FeedbackError):
        A.AnnealConfig(pool_from="nearest")
    with pytest.raises(FeedbackError):
        A.knn_pool(x, items[:1], 3, 10, rng)


def _toy(seed: int = 0, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 4, n)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x[:, :4] += 1.5 * np.eye(4)[cls]  # the class shows in 4 of 8 dimensions
    labels = np.eye(4, dtype=np.uint8)[cls]
    return x, labels


def test_select_strategies_by_hand() -> None:
    x, labels = _toy()
    rng = np.random.default_rng(0)
    pi, pj = A.sample_pool(np.arange(120), 500, rng)
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    unl = np.ones(pi.size, bool)
    unl[:50] = False
    y = A.label_oracle(labels)(pi[:50], pj[:50])
    li, lj = pi[:50], pj[:50]
    cfg = A.AnnealConfig(budget=10, candidates=4)
    # uncertainty alone = the 10 unlabelled pairs whose distance is closest to tau (hand loop)
    tau = A.mgue_threshold(A.pair_distances(z, li, lj), y)
    sel = A.select("uncertainty", z, pi, pj, unl, li, lj, y, cfg, rng)
    assert sel.tau == pytest.approx(tau)
    by_hand = sorted(range(50, 500), key=lambda p: abs(math.dist(z[pi[p]], z[pj[p]]) - tau))[:10]
    assert sorted(sel.chosen.tolist()) == sorted(by_hand)
    # ANNEAL-MGUE: 10 pairs among the 40 most uncertain, one per k-means cluster of those 40
    sel = A.select("anneal-mgue", z, pi, pj, unl, li, lj, y, cfg, np.random.default_rng(3))
    top40 = set(sorted(range(50, 500), key=lambda p: abs(math.dist(z[pi[p]], z[pj[p]]) - tau))[:40])
    assert len(sel.chosen) == 10 and set(sel.chosen.tolist()) <= top40
    feats = A.cluster_features(z, pi, pj)
    # the same seeded k-means on the same candidates (in uncertainty order) gives one pair per cluster
    order = np.argsort(-A.mgue_uncertainty(A.pair_distances(z, pi[50:], pj[50:]), tau), kind="stable")[:40] + 50
    lab, cent = A.kmeans(feats[order], 10, np.random.default_rng(3))
    assert sorted(order[A.representatives(feats[order], lab, cent)].tolist()) == sorted(sel.chosen.tolist())
    assert set(order.tolist()) == top40 and len(set(lab.tolist())) == 10
    # BCGUE scores come from the classifier's probability; chosen pairs are unlabelled
    sel = A.select("anneal-bcgue", z, pi, pj, unl, li, lj, y, cfg, rng)
    assert len(sel.chosen) == 10 and unl[sel.chosen].all() and sel.tau is None
    assert np.isnan(sel.scores[:50]).all() and np.isfinite(sel.scores[50:]).all()
    for strat in ("random", "diversity"):
        sel = A.select(strat, z, pi, pj, unl, li, lj, y, cfg, rng)
        assert len(set(sel.chosen.tolist())) == 10 and unl[sel.chosen].all()
    # fewer unlabelled pairs than the budget: all of them
    few = np.zeros(pi.size, bool)
    few[[7, 9]] = True
    assert sorted(A.select("anneal-mgue", z, pi, pj, few, li, lj, y, cfg, rng).chosen.tolist()) == [7, 9]


def test_label_oracles_by_hand() -> None:
    labels = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 1]], np.uint8)
    i, j = np.array([0, 0, 0, 1]), np.array([1, 2, 3, 2])
    assert A.label_oracle(labels, "shared")(i, j).tolist() == [True, False, True, False]
    assert A.label_oracle(labels, "exact")(i, j).tolist() == [False, False, True, False]
    with pytest.raises(FeedbackError):
        A.label_oracle(labels, "maybe")


def test_head_numpy_inference_matches_torch_and_learns() -> None:
    x, labels = _toy()
    rng = np.random.default_rng(0)
    pi, pj = A.sample_pool(np.arange(120), 2000, rng)
    y = A.label_oracle(labels)(pi, pj)
    for hidden in (0, 16):
        cfg = A.AnnealConfig(hidden=hidden, dim=8, steps=200)
        head = A.train_head(x, pi, pj, y, cfg)
        assert head.losses[-1] < head.losses[0]
        w = {k: torch.as_tensor(v) for k, v in head.weights.items()}
        h = torch.as_tensor(x)
        if hidden:
            h = torch.relu(h @ w["w1"].T + w["b1"])
        ref = torch.nn.functional.normalize(h @ w["w2"].T + w["b2"], dim=1).numpy()
        assert np.allclose(head.embed(x), ref, atol=1e-5)
        # learned distances separate the answers better than chance
        d = A.pair_distances(head.embed(x), pi, pj)
        assert d[y].mean() < d[~y].mean() - 0.2


def _map_by_hand(z: np.ndarray, q: np.ndarray, db: np.ndarray, labels: np.ndarray, k: int, exact: bool) -> float:
    aps = []
    for qq in q:
        cand = [p for p in db if p != qq]
        cand.sort(key=lambda p: (float(((z[qq] - z[p]) ** 2).sum()), p))
        hits, s = 0, 0.0
        for r, p in enumerate(cand[:k], 1):
            rel = (labels[qq] == labels[p]).all() if exact else (labels[qq] & labels[p]).any()
            if rel:
                hits += 1
                s += hits / r
        aps.append(s / hits if hits else 0.0)
    return float(np.mean(aps))


@pytest.mark.parametrize("exact", [False, True])
def test_retrieval_map_by_hand(exact: bool) -> None:
    x, labels = _toy(3, 80)
    labels[::3, 0] = 1  # some multi-label items
    q = np.arange(0, 80, 7)
    db = np.arange(80)  # queries also in the database: each left out of its own ranking
    rel = "exact" if exact else "shared"
    assert A.retrieval_map(x, q, db, labels, k=10, relevance=rel, block=5) == pytest.approx(
        _map_by_hand(x, q, db, labels, 10, exact))


def test_loop_bookkeeping_and_learning() -> None:
    x, labels = _toy(0, 200)
    q, db = np.arange(150, 200), np.arange(150)
    cfg = A.AnnealConfig(strategy="anneal-mgue", budget=20, rounds=3, initial=20, pool=3000, dim=8, steps=150)
    seen: list[int] = []
    recs, head = A.run(x, np.arange(150), A.label_oracle(labels), cfg,
                       evaluate=lambda z: {"map20": A.retrieval_map(z, q, db, labels)},
                       on_round=lambda r, h: seen.append(r.round))
    assert seen == [0, 1, 2, 3]
    assert [r.labelled for r in recs] == [20, 40, 60, 80]
    assert recs[-1].metrics["map20"] > recs[0].metrics["map20"] - 0.05
    assert head.embed(x).shape == (200, 8)
    with pytest.raises(FeedbackError, match="strategy"):
        A.AnnealConfig(strategy="greedy")
    with pytest.raises(FeedbackError, match="budget"):
        A.AnnealConfig(budget=0)


def test_fine_tune_starts_from_the_given_head() -> None:
    x, labels = _toy()
    rng = np.random.default_rng(0)
    pi, pj = A.sample_pool(np.arange(120), 200, rng)
    y = A.label_oracle(labels)(pi, pj)
    cfg = A.AnnealConfig(dim=4, steps=30, lr=1e-2)
    first = A.train_head(x, pi[:50], pj[:50], y[:50], cfg)
    # no steps: the fine-tuned head is the one it started from; a fresh one is the seeded initialisation
    zero = A.AnnealConfig(dim=4, steps=1, lr=1e-12)
    same = A.train_head(x, pi[:1], pj[:1], y[:1], zero, init=first)
    for k in ("w2", "b2"):
        np.testing.assert_allclose(same.weights[k], first.weights[k], atol=1e-6)
    fresh = A.train_head(x, pi[:1], pj[:1], y[:1], zero)
    assert not np.allclose(fresh.weights["w2"], first.weights["w2"], atol=1e-3)
    with pytest.raises(FeedbackError):
        A.train_head(x, pi[:1], pj[:1], y[:1], A.AnnealConfig(dim=8), init=first)
    recs, head = A.run(x, np.arange(120), A.label_oracle(labels),
                       A.AnnealConfig(budget=10, rounds=2, initial=20, pool=500, dim=4, steps=20, fine_tune=True))
    assert [r.labelled for r in recs] == [20, 30, 40] and head.dim == 4
