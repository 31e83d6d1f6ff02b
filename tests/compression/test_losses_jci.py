"""The joint compression/hashing losses against hand loops (METHODS.md section 8)."""

from __future__ import annotations

import math

import numpy as np
import torch

from rsir.losses.jci import (
    UncertaintyWeights,
    bit_balance_loss,
    classification_loss,
    rate_bpp,
    rate_distortion_loss,
    soft_pairwise_loss,
    soft_similarity,
)


def _batch(seed: int = 0, n: int = 7, k: int = 16, c: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h = torch.tanh(torch.randn(n, k, generator=g) * 2)
    labels = (torch.rand(n, c, generator=g) < 0.4).float()
    labels[0] = 0  # an item without labels
    return h, labels


def test_soft_similarity_is_jaccard() -> None:
    _, lab = _batch()
    s = soft_similarity(lab)
    for i in range(len(lab)):
        for j in range(len(lab)):
            a, b = set(np.flatnonzero(lab[i].numpy())), set(np.flatnonzero(lab[j].numpy()))
            want = len(a & b) / len(a | b) if a | b else 0.0
            assert abs(float(s[i, j]) - want) < 1e-6


def test_soft_pairwise_loss_matches_hand_loop() -> None:
    h, lab = _batch()
    total, count = 0.0, 0
    for i in range(len(h)):
        for j in range(len(h)):
            if i == j:
                continue
            a, b = set(np.flatnonzero(lab[i].numpy())), set(np.flatnonzero(lab[j].numpy()))
            s = len(a & b) / len(a | b) if a | b else 0.0
            theta = 0.5 * float(torch.dot(h[i], h[j]))
            total += math.log1p(math.exp(theta)) - s * theta
            count += 1
    assert abs(float(soft_pairwise_loss(h, lab)) - total / count) < 1e-5


def test_bit_balance_and_classification_match_hand_loops() -> None:
    h, lab = _batch(1)
    want = sum((sum(float(h[i, k]) for i in range(len(h))) / len(h)) ** 2 for k in range(h.shape[1]))
    assert abs(float(bit_balance_loss(h)) - want) < 1e-5
    logits = torch.randn(lab.shape)
    bce = 0.0
    for i in range(lab.shape[0]):
        for c in range(lab.shape[1]):
            p = 1 / (1 + math.exp(-float(logits[i, c])))
            y = float(lab[i, c])
            bce -= y * math.log(p) + (1 - y) * math.log(1 - p)
    assert abs(float(classification_loss(logits, lab)) - bce / lab.numel()) < 1e-5


def test_rate_is_bits_per_pixel_and_rd_combines() -> None:
    lik = torch.full((2, 3, 4, 4), 0.25)  # 2 bits per latent element
    # 2 images of 16 x 16 pixels: 2 * 3 * 16 elements * 2 bits / (2 * 256 pixels)
    assert abs(float(rate_bpp(lik, 2 * 16 * 16)) - 2 * 3 * 16 * 2 / 512) < 1e-6
    x, xh = torch.zeros(2, 12, 16, 16), torch.full((2, 12, 16, 16), 0.5)
    loss, r, d = rate_distortion_loss(lik, x, xh, 10.0)
    assert abs(float(d) - 0.25) < 1e-7 and abs(float(loss) - (float(r) + 2.5)) < 1e-6


def test_uncertainty_weights_formula_and_learning() -> None:
    w = UncertaintyWeights(["a", "b"])
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.5, -1.0]))
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    want = math.exp(-0.5) * 2 + 0.5 + math.exp(1.0) * 3 - 1.0
    assert abs(float(w(losses).detach()) - want) < 1e-5
    # the optimum of exp(-s) L + s is s = log L: the larger loss gets the smaller weight
    w2 = UncertaintyWeights(["a", "b"])
    opt = torch.optim.SGD(w2.parameters(), lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        w2({"a": torch.tensor(0.5), "b": torch.tensor(4.0)}).backward()
        opt.step()
    assert np.allclose(w2.log_vars.detach().numpy(), [math.log(0.5), math.log(4.0)], atol=1e-2)
    assert w2.weights()["a"] > w2.weights()["b"]
