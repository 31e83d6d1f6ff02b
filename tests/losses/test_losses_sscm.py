"""SS-CM-RSIR objectives against loops written by hand, and the signs the paper prescribes."""

from __future__ import annotations

import math

import pytest
import torch

from rsir.losses.sscm import (
    SSCMLoss,
    SSCMWeights,
    inter_modal_discrepancy,
    inter_modal_infonce,
    most_similar_cosine,
    quantisation,
)


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a)) / math.sqrt(sum(y * y for y in b))


def _pairs(n: int = 6, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def test_infonce_over_2n_matches_a_hand_loop():
    z1, z2 = _pairs()
    tau = 0.5
    items = z1.tolist() + z2.tolist()
    n = len(z1)
    total = 0.0
    for j in range(2 * n):
        partner = j + n if j < n else j - n
        denom = sum(math.exp(_cos(items[j], items[k]) / tau) for k in range(2 * n) if k != j)
        total += -math.log(math.exp(_cos(items[j], items[partner]) / tau) / denom)
    assert torch.isclose(inter_modal_infonce(z1, z2, tau), torch.tensor(total / (2 * n), dtype=torch.float64))


def test_discrepancy_matches_a_hand_loop_and_rises_with_the_paired_cosine():
    z1, z2 = _pairs()
    want = sum(math.log(1 + math.exp(_cos(a, b))) for a, b in zip(z1.tolist(), z2.tolist(), strict=True)) / len(z1)
    assert torch.isclose(inter_modal_discrepancy(z1, z2), torch.tensor(want, dtype=torch.float64))
    # identical pairs (angle 0) score log(1 + e), the maximum
    assert inter_modal_discrepancy(z1, z1).item() == pytest.approx(math.log(1 + math.e))


def test_most_similar_uses_the_euclidean_nearest_other_item():
    z, _ = _pairs(7, 4, seed=3)
    rows = z.tolist()
    want = 0.0
    for j, a in enumerate(rows):
        dists = [math.dist(a, b) if k != j else math.inf for k, b in enumerate(rows)]
        nn = dists.index(min(dists))
        want += _cos(a, rows[nn])
    assert torch.isclose(most_similar_cosine(z), torch.tensor(want / len(rows), dtype=torch.float64))


def test_quantisation_is_zero_on_binary_outputs():
    assert quantisation(torch.tensor([[1.0, -1.0], [-1.0, 1.0]])).item() == 0.0
    assert quantisation(torch.tensor([[0.5, -0.5]])).item() == pytest.approx(0.25)


def test_total_follows_the_paper_signs_and_the_ablations():
    z1, z2 = _pairs()
    w = SSCMWeights(tau=0.5, w_de=0.7, w_intra=0.3)
    mim = inter_modal_infonce(z1, z2, 0.5)
    de = inter_modal_discrepancy(z1, z2)
    intra = 0.5 * (most_similar_cosine(z1) + most_similar_cosine(z2))
    total, parts = SSCMLoss(w)(z1, z2)
    # the discrepancy and the intra-modal similarity are *maximised*: both enter with a minus sign (the public
    # DA4DTE port adds the intra-modal term; rsir follows the paper)
    assert torch.isclose(total, mim - 0.7 * de - 0.3 * intra)
    assert set(parts) == {"mim", "de", "intra"}
    only, p1 = SSCMLoss(SSCMWeights(tau=0.5, terms="mim"))(z1, z2)
    assert torch.isclose(only, mim) and set(p1) == {"mim"}
    two, _ = SSCMLoss(SSCMWeights(tau=0.5, w_de=0.7, terms="mim+de"))(z1, z2)
    assert torch.isclose(two, mim - 0.7 * de)
    q, pq = SSCMLoss(SSCMWeights(tau=0.5, terms="mim", w_quant=2.0))(z1, z2)
    assert torch.isclose(q, mim + 2.0 * 0.5 * (quantisation(z1) + quantisation(z2))) and "quant" in pq


def test_gradient_step_on_the_intra_term_raises_the_neighbour_cosine():
    z, _ = _pairs(8, 4, seed=5)
    z.requires_grad_(True)
    before = most_similar_cosine(z).item()
    loss, _ = SSCMLoss(SSCMWeights(w_de=0.0, w_intra=1.0))(z, z.detach().clone())
    loss.backward()
    with torch.no_grad():
        z2 = z - 0.05 * z.grad
    assert most_similar_cosine(z2).item() > before


def test_bad_batches_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        SSCMLoss()(torch.zeros(1, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="objective set"):
        SSCMLoss(SSCMWeights(terms="nope"))


def test_extra_terms_on_the_encoder_features():
    z1, z2 = _pairs()
    f1, f2 = _pairs(6, 9, seed=7)  # encoder features: another width than the projections
    w = SSCMWeights(tau=0.5, w_de=0.7, w_intra=0.3, terms_on="encoder")
    loss = SSCMLoss(w)
    assert loss.needs_features
    total, parts = loss(z1, z2, f1, f2)
    # InfoNCE stays on the projections; the discrepancy and intra-modal terms move to the features (the DA4DTE
    # port's placement)
    want = (inter_modal_infonce(z1, z2, 0.5) - 0.7 * inter_modal_discrepancy(f1, f2)
            - 0.3 * 0.5 * (most_similar_cosine(f1) + most_similar_cosine(f2)))
    assert torch.isclose(total, want)
    assert parts["de"] == pytest.approx(inter_modal_discrepancy(f1, f2).item())
    # on the projections (the default) the features are not used
    on_proj, _ = SSCMLoss(SSCMWeights(tau=0.5, w_de=0.7, w_intra=0.3))(z1, z2, f1, f2)
    assert torch.isclose(on_proj, SSCMLoss(SSCMWeights(tau=0.5, w_de=0.7, w_intra=0.3))(z1, z2)[0])
    # InfoNCE alone needs no features wherever the (absent) extra terms would act
    assert not SSCMLoss(SSCMWeights(terms="mim", terms_on="encoder")).needs_features
    with pytest.raises(ValueError, match="encoder features"):
        loss(z1, z2)
    with pytest.raises(ValueError, match="place for the extra terms"):
        SSCMLoss(SSCMWeights(terms_on="head"))
