"""The joint compression/hashing losses against hand loops (METHODS.md section 8)."""

from __future__ import annotations

import math

import numpy as np
import torch

from rsir.losses.jci import (
    UncertaintyWeights,
    bit_balance_loss,
    classification_loss,
    min_norm_weights,
    pcgrad,
    quantisation_loss,
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


def test_quantisation_loss_matches_hand_loop() -> None:
    h, _ = _batch(2)
    want = sum((abs(float(h[i, k])) - 1) ** 2 for i in range(h.shape[0]) for k in range(h.shape[1])) / h.numel()
    assert abs(float(quantisation_loss(h)) - want) < 1e-6
    assert float(quantisation_loss(torch.tensor([[1.0, -1.0]]))) == 0.0


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


def _hand_pcgrad(grads: list[list[float]], order: list[list[int]]) -> list[float]:
    """PCGrad written out with Python floats: project g_i off each conflicting g_j in turn, then sum."""
    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    total = [0.0] * len(grads[0])
    for i, gi in enumerate(grads):
        g = list(gi)
        for j in order[i]:
            d = dot(g, grads[j])
            if d < 0:
                nj = dot(grads[j], grads[j])
                g = [x - d / nj * y for x, y in zip(g, grads[j], strict=True)]
        total = [t + x for t, x in zip(total, g, strict=True)]
    return total


def test_pcgrad_matches_hand_loop_and_leaves_agreeing_gradients_alone() -> None:
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=6).tolist() for _ in range(4)]
    order = [[1, 3, 2], [2, 0, 3], [3, 1, 0], [0, 2, 1]]
    got = pcgrad([torch.tensor(g, dtype=torch.float64) for g in grads], order=order)
    assert np.allclose(got.numpy(), _hand_pcgrad(grads, order), atol=1e-12)
    # two conflicting gradients: each loses its component along the other
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    want = (g1 - (-1.0) / 2 * g2) + (g2 - (-1.0) / 1 * g1)
    assert torch.allclose(pcgrad([g1, g2], order=[[1], [0]]), want)
    # no conflict: the plain sum
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.1])
    assert torch.allclose(pcgrad([a, b]), a + b)


def test_min_norm_weights_reach_the_minimum_norm_point() -> None:
    # two objectives: the closed form of Sener and Koltun (alpha on g1 = (g2 - g1).g2 / ||g1 - g2||^2, clipped)
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    a = min_norm_weights([g1, g2])
    want = float(torch.dot(g2 - g1, g2) / torch.dot(g1 - g2, g1 - g2))
    assert abs(float(a[0]) - want) < 1e-4 and abs(float(a.sum()) - 1) < 1e-6
    # a gradient inside the others' hull direction that is small: all the weight goes to it
    a = min_norm_weights([torch.tensor([1.0, 1.0]), torch.tensor([0.01, 0.01])])
    assert float(a[1]) > 0.999
    # four objectives in 5-d against a brute-force search over a simplex grid
    rng = np.random.default_rng(0)
    g = rng.normal(size=(4, 5))
    g[3] = -0.5 * g[0] + 0.2 * g[1]
    best = math.inf
    steps = 40
    for i in range(steps + 1):
        for j in range(steps + 1 - i):
            for k in range(steps + 1 - i - j):
                w = np.array([i, j, k, steps - i - j - k]) / steps
                best = min(best, float(np.linalg.norm(w @ g)))
    a = min_norm_weights([torch.tensor(x) for x in g])
    assert (a >= 0).all() and abs(float(a.sum()) - 1) < 1e-5
    assert float(np.linalg.norm(a.double().numpy() @ g)) <= best + 1e-6
