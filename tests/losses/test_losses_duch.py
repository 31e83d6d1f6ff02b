"""The DUCH terms against hand loops over the batch (the formulas of ../shared/METHODS.md section 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsir.losses.duch import (
    ALPHA,
    BETA,
    GAMMA,
    DuchLoss,
    adversarial_loss,
    bit_balance_loss,
    discriminator_loss,
    nt_xent,
    quantization_loss,
)
from rsir.models.duch import Discriminator, HashHead


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _ntxent_by_hand(u, v, tau=1.0, eps=1e-6):
    z = [*u, *v]
    n = len(u)
    total = 0.0
    for j in range(2 * n):
        pos = j + n if j < n else j - n
        denom = sum(math.exp(_cos(z[j], z[k]) / tau) for k in range(2 * n) if k != j) + eps
        total += -math.log(math.exp(_cos(z[j], z[pos]) / tau) / denom)
    return total


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_nt_xent_sums_over_all_2n_anchors(tau):
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert float(nt_xent(u, v, tau)) == pytest.approx(_ntxent_by_hand(u.numpy(), v.numpy(), tau), rel=1e-5)
    # symmetric in its two arguments, and smaller when the pairs agree
    assert float(nt_xent(v, u, tau)) == pytest.approx(float(nt_xent(u, v, tau)), rel=1e-6)
    assert float(nt_xent(u, u + 0.01 * v, tau)) < float(nt_xent(u, v, tau))


def test_adversarial_quantization_bit_balance_by_hand():
    g = torch.Generator().manual_seed(1)
    dt, di = torch.randn(6, generator=g), torch.randn(6, generator=g)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    hand = -sum(math.log(sig(float(a))) for a in dt) - sum(math.log(sig(float(a))) for a in di)
    assert float(adversarial_loss(dt, di)) == pytest.approx(hand, rel=1e-5)
    b = torch.randn(4, 6, generator=g).sign()
    hs = [torch.tanh(torch.randn(4, 6, generator=g)) for _ in range(4)]
    q = sum((float(b[i, k]) - float(h[i, k])) ** 2 for h in hs for i in range(4) for k in range(6))
    assert float(quantization_loss(b, *hs)) == pytest.approx(q, rel=1e-5)
    bb = sum(sum(float(h[i, k]) for k in range(6)) ** 2 for h in hs for i in range(4))
    assert float(bit_balance_loss(*hs)) == pytest.approx(bb, rel=1e-5)


def test_discriminator_loss_with_gradient_penalty_by_hand():
    torch.manual_seed(0)
    k, n = 8, 5
    disc = Discriminator(k).eval()  # eval: batch norm uses running stats, so D is a per-row function
    ht, hi = torch.tanh(torch.randn(n, k)), torch.tanh(torch.randn(n, k))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    got = float(discriminator_loss(disc, ht, hi, generator=g1).detach())
    u = torch.rand((n, k), generator=g2)
    real = -np.mean([math.log(torch.sigmoid(disc(ht[j:j + 1]))[0].item()) for j in range(n)])
    fake = -np.mean([math.log(1 - torch.sigmoid(disc(hi[j:j + 1]))[0].item()) for j in range(n)])
    gps = []
    for j in range(n):
        x = (u[j] * ht[j] + (1 - u[j]) * hi[j]).clone().requires_grad_(True)
        (gr,) = torch.autograd.grad(disc(x[None])[0], x)
        gps.append((gr.norm().item() - 1) ** 2)
    assert got == pytest.approx(real + fake + 10 * np.mean(gps), rel=1e-4)
    # inputs are detached: no gradient reaches the hash codes
    ht2 = ht.clone().requires_grad_(True)
    discriminator_loss(disc, ht2, hi).backward()
    assert ht2.grad is None


def test_total_uses_the_authors_weights_and_ablations_switch_terms_off():
    torch.manual_seed(0)
    k, n = 16, 6
    disc = Discriminator(k)
    hs = [torch.tanh(torch.randn(n, k)) for _ in range(4)]
    b = torch.randn(n, k).sign()
    t = DuchLoss()(*hs, b, disc)
    assert (ALPHA, BETA, GAMMA) == (0.01, 0.001, 0.01)
    assert float(t.inter) == pytest.approx(float(nt_xent(hs[0], hs[2])), rel=1e-6)
    assert float(t.intra_img) == pytest.approx(float(nt_xent(hs[0], hs[1])), rel=1e-6)
    assert float(t.intra_txt) == pytest.approx(float(nt_xent(hs[2], hs[3])), rel=1e-6)
    assert float(t.quantization) == pytest.approx(0.001 * float(quantization_loss(b, *hs)), rel=1e-6)
    assert float(t.bit_balance) == pytest.approx(0.01 * float(bit_balance_loss(*hs)), rel=1e-6)
    assert float(t.adversarial) == pytest.approx(0.01 * float(adversarial_loss(disc(hs[2]), disc(hs[0])).detach()), rel=1e-5)
    parts = t.as_floats()
    assert float(t.total) == pytest.approx(sum(parts.values()), rel=1e-6)
    off = DuchLoss(alpha=0.0, beta=0.0, weights=(1.0, 0.0, 0.0))(*hs, b, None)
    assert float(off.adversarial) == float(off.quantization) == float(off.intra_img) == float(off.intra_txt) == 0
    assert float(off.total) == pytest.approx(float(t.inter) + float(t.bit_balance), rel=1e-6)


def test_hash_head_shape_and_range():
    h = HashHead(12, 32, hidden=64)
    layers = [type(m).__name__ for m in h.net]
    assert layers == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    y = h(torch.randn(7, 12))
    assert y.shape == (7, 32) and float(y.abs().max()) < 1.0


def test_shared_code_is_the_sign_of_the_mean_of_the_four_outputs():
    from rsir.losses.duch import shared_code

    g = torch.Generator().manual_seed(4)
    hs = [torch.tanh(torch.randn(5, 8, generator=g)) for _ in range(4)]
    b = shared_code(*hs)
    for i in range(5):
        for k in range(8):
            m = ((hs[0][i, k] + hs[1][i, k]) / 2 + (hs[2][i, k] + hs[3][i, k]) / 2) / 2
            assert float(b[i, k]) == (1.0 if float(m) >= 0 else -1.0)
    z = torch.zeros(1, 3)
    assert shared_code(z, z, z, z).tolist() == [[1.0, 1.0, 1.0]]
