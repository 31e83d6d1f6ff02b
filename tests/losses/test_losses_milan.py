"""MiLAN objective and classification losses, each recomputed in a plain loop written by hand."""

from __future__ import annotations

import math

import torch

from rsir.losses import (
    BitBalanceLoss,
    FocalLoss,
    MilanLoss,
    MultiLabelBCE,
    PushLoss,
    SquaredEuclidean,
    TripletMarginLoss,
)


def _h(n: int = 9, k: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.sigmoid(torch.randn(n, k, generator=g, dtype=torch.float64) * 2)


def test_triplet_on_normalised_outputs_matches_loop():
    h = _h()
    a, p, n = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8])
    got = TripletMarginLoss(0.2, SquaredEuclidean(normalize=True))(h, (a, p, n))
    total = 0.0
    for i in range(3):
        na = math.sqrt(sum(float(v) ** 2 for v in h[a[i]]))
        np_ = math.sqrt(sum(float(v) ** 2 for v in h[p[i]]))
        nn_ = math.sqrt(sum(float(v) ** 2 for v in h[n[i]]))
        dap = sum((float(h[a[i], k]) / na - float(h[p[i], k]) / np_) ** 2 for k in range(h.shape[1]))
        dan = sum((float(h[a[i], k]) / na - float(h[n[i], k]) / nn_) ** 2 for k in range(h.shape[1]))
        total += max(0.0, dap - dan + 0.2)
    assert torch.isclose(got, torch.tensor(total / 3, dtype=torch.float64))


def test_triplet_hand_value():
    # a=(1,0), p=(0.6,0.8) -> d_ap = 0.16+0.64 = 0.8; n=(0,1) -> d_an = 2; hinge max(0, 0.8-2+0.2)=0
    # second triplet swaps p and n: max(0, 2-0.8+0.2) = 1.4; mean = 0.7
    x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    loss = TripletMarginLoss(0.2, SquaredEuclidean())(x, (torch.tensor([0, 0]), torch.tensor([1, 2]),
                                                          torch.tensor([2, 1])))
    assert torch.isclose(loss, torch.tensor(0.7))


def test_push_term_is_subtracted_and_on_unnormalised_outputs():
    h = _h(6, 5)
    k = 5
    s = 0.0
    for i in range(6):
        s += sum((float(h[i, j]) - 0.5) ** 2 for j in range(k))
    expected = -(0.001 / k) * s / 6
    assert torch.isclose(PushLoss(0.001)(h), torch.tensor(expected, dtype=torch.float64))
    # outputs farther from 0.5 give a lower (more negative) value: the term is maximised
    assert PushLoss()(torch.tensor([[0.9, 0.1]])) < PushLoss()(torch.tensor([[0.6, 0.4]])) < 0


def test_bit_balance_is_per_code_not_per_bit():
    # codes (1,1) and (0,0): each bit's batch mean is 0.5 (a per-bit balance would be 0), but each code's
    # mean is 1 or 0 -> ((1-0.5)^2 + (0-0.5)^2)/2 = 0.25
    h = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert torch.isclose(BitBalanceLoss(1.0)(h), torch.tensor(0.25))
    h = _h(4, 6)
    expected = sum((sum(float(v) for v in h[i]) / 6 - 0.5) ** 2 for i in range(4)) / 4
    assert torch.isclose(BitBalanceLoss()(h), torch.tensor(expected, dtype=torch.float64))


def test_milan_total_is_triplet_minus_push_plus_balance():
    h = _h(9, 16, seed=3)
    idx = (torch.arange(3), torch.arange(3, 6), torch.arange(6, 9))
    total, parts = MilanLoss()(h, idx)
    lt = TripletMarginLoss(0.2, SquaredEuclidean(normalize=True))(h, idx)
    push = sum(float(((h[i] - 0.5) ** 2).sum()) for i in range(9)) / 9
    bal = sum((float(h[i].mean()) - 0.5) ** 2 for i in range(9)) / 9
    expected = float(lt) - 0.001 / 16 * push + 1.0 * bal
    assert torch.isclose(total, torch.tensor(expected, dtype=torch.float64))
    assert parts["push"] < 0 and parts["balance"] >= 0


def test_bce_and_focal_match_loops():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 0, 0]], dtype=torch.float64)
    bce = focal = 0.0
    for i in range(4):
        for c in range(3):
            p = 1 / (1 + math.exp(-float(z[i, c])))
            y = float(t[i, c])
            ce = -(y * math.log(p) + (1 - y) * math.log(1 - p))
            pt = p if y == 1 else 1 - p
            at = 0.25 if y == 1 else 0.75
            bce += ce
            focal += at * (1 - pt) ** 2 * ce
    assert torch.isclose(MultiLabelBCE()(z, t), torch.tensor(bce / 12, dtype=torch.float64))
    assert torch.isclose(FocalLoss(0.25, 2.0)(z, t), torch.tensor(focal / 12, dtype=torch.float64))
    # gamma 0 and no alpha weighting is plain BCE
    assert torch.isclose(FocalLoss(-1, 0.0)(z, t), MultiLabelBCE()(z, t))


def test_no_triplets_gives_zero_with_graph():
    h = _h(3, 4).requires_grad_(True)
    e = torch.zeros(0, dtype=torch.long)
    loss = TripletMarginLoss()(h, (e, e, e))
    loss.backward()
    assert float(loss.detach()) == 0.0
