"""Text <-> image directions against a brute-force loop: Hamming distances on unpacked bits, ranking by
(distance, position), the query's own pair left out, P@k / R@k by hand; caption-match recall by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rsir.bits import pack_bits
from rsir.eval.crossmodal import evaluate_directions, parse_directions


def _data(seed=0, n=30, bits=16):
    rng = np.random.default_rng(seed)
    img_bits = rng.integers(0, 2, (n, bits))
    caps_per = rng.integers(2, 5, n)
    cap_item = np.repeat(np.arange(n), caps_per)
    # captions are noisy copies of their image's code, so pairs are near
    cap_bits = img_bits[cap_item] ^ (rng.random((len(cap_item), bits)) < 0.2)
    labels = (rng.random((n, 5)) < 0.3).astype(np.uint8)
    return img_bits, cap_bits, cap_item, labels


def _pk_rk(q_bits, q_lab, db_bits, db_lab, k, drop):
    """Mean P@k and R@k by hand; drop(j) = database rows query j must not see."""
    ps, rs = [], []
    for j in range(len(q_bits)):
        rows = [r for r in range(len(db_bits)) if r not in drop(j)]
        d = [(int((q_bits[j] != db_bits[r]).sum()), r) for r in rows]
        d.sort()
        rel = [bool((q_lab[j] & db_lab[r]).any()) for _, r in d]
        ps.append(sum(rel[:k]) / k)
        rs.append(sum(rel[:k]) / sum(rel) if sum(rel) else 0.0)
    return float(np.mean(ps)), float(np.mean(rs))


@pytest.mark.parametrize("loo", [True, False])
def test_directions_match_a_brute_force_loop(loo):
    img_bits, cap_bits, cap_item, labels = _data()
    n = len(img_bits)
    q_rows = np.arange(n) if loo else np.arange(0, 10)
    d_rows = np.arange(n) if loo else np.arange(10, n)
    res = evaluate_directions(["i2t", "t2i", "i2i", "t2t"], pack_bits(img_bits), labels, pack_bits(cap_bits),
                              cap_item, q_rows, d_rows, loo, ks=(5,), bits=16)
    q_caps = np.flatnonzero(np.isin(cap_item, q_rows))
    d_caps = np.flatnonzero(np.isin(cap_item, d_rows))
    cap_lab = labels[cap_item]
    none = lambda j: set()  # noqa: E731
    cases = {
        "i2i": (img_bits[q_rows], labels[q_rows], img_bits[d_rows], labels[d_rows],
                (lambda j: {j}) if loo else none),
        "i2t": (img_bits[q_rows], labels[q_rows], cap_bits[d_caps], cap_lab[d_caps],
                (lambda j: set(np.flatnonzero(cap_item[d_caps] == q_rows[j]).tolist())) if loo else none),
        "t2i": (cap_bits[q_caps], cap_lab[q_caps], img_bits[d_rows], labels[d_rows],
                (lambda j: {int(np.flatnonzero(d_rows == cap_item[q_caps[j]])[0])}) if loo else none),
        "t2t": (cap_bits[q_caps], cap_lab[q_caps], cap_bits[d_caps], cap_lab[d_caps],
                (lambda j: {j}) if loo else none),
    }
    for name, (qb, ql, db, dl, drop) in cases.items():
        p, r = _pk_rk(qb, ql, db, dl, 5, drop)
        assert res[name]["P@5"] == pytest.approx(p), name
        assert res[name]["R@5"] == pytest.approx(r), name
        assert 0.0 <= res[name]["mAP@5(B)"] <= 1.0
    assert res["n_queries"] == {"items": len(q_rows), "captions": len(q_caps)}


def test_caption_match_recall_by_hand():
    img_bits, cap_bits, cap_item, labels = _data(seed=1)
    n = len(img_bits)
    res = evaluate_directions(["i2i"], pack_bits(img_bits), labels, pack_bits(cap_bits), cap_item, np.arange(n),
                              np.arange(n), True, ks=(5,), bits=16)["recall"]
    hits_i = hits_t = 0
    for i in range(n):
        d = sorted((int((img_bits[i] != cap_bits[c]).sum()), c) for c in range(len(cap_item)))
        hits_i += any(cap_item[c] == i for _, c in d[:5])
    for c in range(len(cap_item)):
        d = sorted((int((cap_bits[c] != img_bits[i]).sum()), i) for i in range(n))
        hits_t += cap_item[c] in [i for _, i in d[:5]]
    assert res["i2t_R@5"] == pytest.approx(hits_i / n)
    assert res["t2i_R@5"] == pytest.approx(hits_t / len(cap_item))
    assert res["i2t_R@5"] > 0.5  # the pairs are near: far above chance (5/30)


def test_parse_directions():
    assert parse_directions("i2t, T2I,i2t") == ["i2t", "t2i"]
    with pytest.raises(ValueError, match="i2t, t2i, i2i, t2t"):
        parse_directions("i2x")
