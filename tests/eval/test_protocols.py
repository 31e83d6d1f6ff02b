"""Protocols: splits, directions, blockwise distances and evaluation against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from rsir.data.archive import open_archive
from rsir.eval import metrics as M
from rsir.eval.protocols import (
    ProtocolError,
    directions,
    distances,
    evaluate,
    evaluate_full,
    hamming_distances,
    parse_direction,
    split_queries,
)
from tests.data.archive_helpers import write_tiny_archive


@pytest.mark.parametrize("nbytes", [1, 3, 4, 8, 12])
def test_hamming_matches_unpackbits(nbytes):
    rng = np.random.default_rng(nbytes)
    q = rng.integers(0, 256, (5, nbytes), dtype=np.uint8)
    db = rng.integers(0, 256, (9, nbytes), dtype=np.uint8)
    want = (np.unpackbits(q, axis=1)[:, None, :] != np.unpackbits(db, axis=1)[None, :, :]).sum(-1)
    np.testing.assert_array_equal(hamming_distances(q, db), want)


def test_float_distances_rank_like_brute_force():
    rng = np.random.default_rng(0)
    q, db = rng.normal(size=(3, 4)), rng.normal(size=(6, 4))
    np.testing.assert_allclose(distances(q, db, "ip"), -np.array([[a @ b for b in db] for a in q]))
    np.testing.assert_allclose(distances(q, db, "l2"), [[((a - b) ** 2).sum() for b in db] for a in q],
                               atol=1e-12)
    with pytest.raises(ProtocolError):
        distances(q, db, "cosine")


def test_directions_parse():
    assert parse_direction("S2->S1") == ("s2", "s1")
    assert parse_direction("s1:s2") == ("s1", "s2")
    assert parse_direction("s1-s1") == ("s1", "s1")
    with pytest.raises(ProtocolError):
        parse_direction("s1")
    assert directions(["s1", "s2"]) == [("s1", "s1"), ("s1", "s2"), ("s2", "s1"), ("s2", "s2")]


def test_split_queries_on_archive(tmp_path):
    a = open_archive(write_tiny_archive(tmp_path / "a", n=12, size=4, with_s1=False))
    s = split_queries(a, "rsim")
    # write_tiny_archive cycles train/validation/test: validation = 1, 4, 7, 10; test = 2, 5, 8, 11
    assert s.query_pos.tolist() == [1, 4, 7, 10] and s.db_pos.tolist() == [2, 5, 8, 11] and s.exclude is None
    loo = split_queries(a, "loo", split="train")
    assert loo.query_pos.tolist() == [0, 3, 6, 9] and loo.exclude.tolist() == [0, 1, 2, 3]
    assert loo.limit(2).query_pos.tolist() == [0, 9] and loo.limit(2).exclude.tolist() == [0, 3]
    with pytest.raises(ProtocolError):
        split_queries(a, "holdout")


def test_evaluate_hand_computed():
    # 4 items, 8-bit codes; labels: item0 {0}, item1 {0,1}, item2 {1}, item3 {2}
    codes = np.array([[0b00000000], [0b00000001], [0b00000011], [0b11111111]], dtype=np.uint8)
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=np.uint8)
    m = evaluate(codes, codes, "hamming", labels, labels, ks=(2,), exclude=np.arange(4))
    # leave-one-out rankings (Hamming distances in brackets), relevance = any shared label:
    #  q0: item1 (1), item2 (2), item3 (8)   rel 1,0,0  -> P@2 = 1/2
    #  q1: item0 (1), item2 (1), item3 (7)   rel 1,1,0  -> P@2 = 1
    #  q2: item1 (1), item0 (2), item3 (6)   rel 1,0,0  -> P@2 = 1/2
    #  q3: item2 (6), item1 (7), item0 (8)   rel 0,0,0  -> P@2 = 0
    assert m["P@2"] == pytest.approx((0.5 + 1 + 0.5 + 0) / 4)
    # mAP@2(A): q0 1, q1 (1 + 1)/2 = 1, q2 1, q3 0 -> 3/4
    assert m["mAP@2(A)"] == pytest.approx(0.75)
    # R@2: q0 1/1, q1 2/2, q2 1/1, q3 0 (no relevant) -> 3/4
    assert m["R@2"] == pytest.approx(0.75)
    # ACG@2 (shared labels): q0 (1+0)/2, q1 (1+1)/2, q2 (1+0)/2, q3 0 -> (0.5 + 1 + 0.5) / 4 = 0.5
    assert m["ACG@2"] == pytest.approx(0.5)
    # RSiM P@2 per item |Lq∩Lr|/|Lr|: q0 (1/2 + 0)/2 = 1/4; q1 (1/1 + 1/1)/2 = 1; q2 (1/2 + 0)/2 = 1/4; q3 0
    assert m["rsim_P@2"] == pytest.approx((0.25 + 1 + 0.25) / 4)
    # RSiM R@2 per item |Lq∩Lr|/|Lq|: q0 (1 + 0)/2 = 1/2; q1 (1/2 + 1/2)/2 = 1/2; q2 1/2; q3 0 -> 3/8
    assert m["rsim_R@2"] == pytest.approx(3 / 8)
    assert m["rsim_F1@2"] == pytest.approx(2 * 0.375 * 0.375 / 0.75)
    # tie in q1 between item0 and item2 (both distance 1, both relevant): tie-aware P@2 is still 1
    assert m["P@2(tie-aware)"] == pytest.approx(m["P@2"])


def test_blocks_do_not_change_results():
    rng = np.random.default_rng(3)
    q = rng.integers(0, 256, (13, 2), dtype=np.uint8)
    db = rng.integers(0, 256, (40, 2), dtype=np.uint8)
    ql = (rng.random((13, 5)) < 0.3).astype(np.uint8)
    dl = (rng.random((40, 5)) < 0.3).astype(np.uint8)
    one = evaluate_full(q, db, "hamming", ql, dl, ks=(5, 10), pk_curve=(1, 5, 50))
    blocked = evaluate_full(q, db, "hamming", ql, dl, ks=(5, 10), pk_curve=(1, 5, 50), block_size=4)
    assert one.metrics.keys() == blocked.metrics.keys()
    for key, v in one.metrics.items():
        assert blocked.metrics[key] == pytest.approx(v, abs=1e-12)
    np.testing.assert_allclose(one.curves["radius_P"], blocked.curves["radius_P"])
    assert one.curves["pk_curve_k"] == [1.0, 5.0]  # 50 > 40 items is dropped
    assert len(one.curves["radius_P"]) == 17 and one.bits == 16


def test_map_a_matches_milan_style_loop():
    """MiLAN eval: normalised Hamming, stable sort, leave-one-out, AP over the top 20 / relevant retrieved."""
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, (30, 1), dtype=np.uint8)
    labels = (rng.random((30, 4)) < 0.3).astype(np.uint8)
    bits = np.unpackbits(codes, axis=1)
    k = 20
    aps = []
    for i in range(30):
        d = [(bits[i] != bits[j]).mean() for j in range(30) if j != i]
        others = [j for j in range(30) if j != i]
        order = [others[t] for t in sorted(range(len(d)), key=lambda t: d[t])]  # sorted() is stable
        hits, s = 0, 0.0
        for rank_i, j in enumerate(order[:k], start=1):
            if (labels[i] & labels[j]).any():
                hits += 1
                s += hits / rank_i
        aps.append(s / hits if hits else 0.0)
    m = evaluate(codes, codes, "hamming", labels, labels, ks=(k,), exclude=np.arange(30))
    assert m["mAP@20(A)"] == pytest.approx(float(np.mean(aps)), abs=1e-12)


def test_float_metric_and_errors():
    rng = np.random.default_rng(2)
    q, db = rng.normal(size=(4, 3)), rng.normal(size=(10, 3))
    ql = (rng.random((4, 3)) < 0.5).astype(np.uint8)
    dl = (rng.random((10, 3)) < 0.5).astype(np.uint8)
    res = evaluate_full(q, db, "ip", ql, dl, ks=(3,))
    assert "radius_P" not in res.curves and "mAP@3(C,tie-aware)" not in res.metrics
    order = M.rank(-(q @ db.T))
    rel = M.ranked(M.relevance_any(ql, dl), order)
    assert res.metrics["mAP@3(B)"] == pytest.approx(M.average_precision_at_k(rel, 3, "B").mean())
    with pytest.raises(ProtocolError):
        evaluate(q, db, "ip", ql[:2], dl)
    with pytest.raises(ProtocolError):
        evaluate(q, db, "ip", ql, dl, ks=(0,))
