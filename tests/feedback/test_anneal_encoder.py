"""ANNEAL's end-to-end metric model (rsir.methods.anneal_encoder): the symmetries it trains with, where each
round starts from, that training on pairs separates them while the batch-norm statistics stay put, that a
cross-modal model's branch embeds like the model's own encoder, and the loop with it in place of the head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rsir.feedback import FeedbackError
from rsir.feedback import anneal as A
from rsir.methods.anneal_encoder import EmbeddingNet, EncoderMetric, from_crossmodal
from rsir.models.resnet import ResNet, ResNetConfig
from rsir.train.data import dihedral, dihedral_batch


def _toy(n: int = 40, seed: int = 0) -> tuple[EncoderMetric, np.ndarray]:
    """Two groups of 3 x 12 x 12 noise images, the second with a bright centre; a tiny ResNet + linear projection."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 12, 12, generator=g)
    group = np.arange(n) % 2
    images[torch.as_tensor(group == 1), :, 4:8, 4:8] += 2.0
    torch.manual_seed(seed)
    net = EmbeddingNet(ResNet(ResNetConfig(in_channels=3, width=8, blocks=[1, 1], stem_stride=2)), nn.Linear(16, 8))
    return EncoderMetric(net, images), group


def _all_pairs(group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i, j = np.triu_indices(group.size, 1)
    return i, j, group[i] == group[j]


def test_dihedral_batch_is_each_images_own_symmetry() -> None:
    x = torch.arange(8 * 2 * 3 * 3, dtype=torch.float32).reshape(8, 2, 3, 3)
    k = torch.tensor([3, 0, 7, 4, 1, 6, 2, 5])
    got = dihedral_batch(x, k)
    for n in range(8):
        assert torch.equal(got[n], dihedral(x[n], int(k[n])))


def test_fit_separates_the_pairs_and_keeps_batch_norm_statistics() -> None:
    m, group = _toy()
    bn_before = {k: v.clone() for k, v in m.net.state_dict().items() if "running" in k}
    i, j, y = _all_pairs(group)

    def gap(z: np.ndarray) -> float:  # mean dissimilar distance minus mean similar distance
        d = A.pair_distances(z, i, j)
        return float(d[~y].mean() - d[y].mean())

    before = gap(m.embed(m.pretrained))
    state = m.fit(i, j, y, A.AnnealConfig(steps=60, batch=64, lr=3e-3), seed=0)
    z = m.embed(state)
    assert z.shape == (group.size, 8) and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert np.mean(state.losses[-10:]) < 0.5 * np.mean(state.losses[:10])
    assert gap(z) > before + 0.3
    for k, v in bn_before.items():
        assert torch.equal(state.weights[k], v), k  # statistics frozen, only the affine parameters learn
        assert torch.equal(m.pretrained.weights[k], v)


def test_each_round_starts_from_the_pretrained_weights_unless_fine_tune() -> None:
    m, group = _toy()
    i, j, y = _all_pairs(group)
    first = m.fit(i[:30], j[:30], y[:30], A.AnnealConfig(steps=5, batch=16, lr=1e-2), seed=1)
    assert any(not torch.equal(first.weights[k], m.pretrained.weights[k]) for k in first.weights)
    empty = np.zeros(0, np.int64)
    # no pairs: no step, so the state is where training started
    fresh = m.fit(empty, empty, empty.astype(bool), A.AnnealConfig(), seed=2, init=first)
    assert all(torch.equal(fresh.weights[k], m.pretrained.weights[k]) for k in fresh.weights)
    cont = m.fit(empty, empty, empty.astype(bool), A.AnnealConfig(fine_tune=True), seed=2, init=first)
    assert all(torch.equal(cont.weights[k], first.weights[k]) for k in cont.weights)
    # the same seed and pairs give the same model
    again = m.fit(i[:30], j[:30], y[:30], A.AnnealConfig(steps=5, batch=16, lr=1e-2), seed=1)
    assert np.array_equal(m.embed(again), m.embed(first))


def test_bad_images_are_refused() -> None:
    m, _ = _toy()
    with pytest.raises(FeedbackError):
        EncoderMetric(m.net, torch.zeros(4, 12, 12))


def test_loop_retrains_the_encoder_each_round() -> None:
    m, group = _toy(n=40)
    x = m.embed(m.pretrained)
    items = np.arange(group.size)
    oracle = A.label_oracle(np.eye(2, dtype=np.uint8)[group])
    seen: list[np.ndarray] = []
    cfg = A.AnnealConfig(strategy="anneal-mgue", budget=6, rounds=2, initial=10, pool=300, candidates=2, steps=10,
                         batch=32, lr=3e-3, seed=0)
    recs, state = A.run(x, items, oracle, cfg, evaluate=lambda z: {"map20": 0.0},
                        on_round=lambda r, s: seen.append(m.embed(s)), model=m)
    assert [r.labelled for r in recs] == [10, 16, 22]
    assert len(seen) == 3 and not np.array_equal(seen[0], seen[-1])
    assert np.array_equal(m.embed(state), seen[-1])


def test_the_default_model_is_the_head_on_the_frozen_features() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    labels = np.eye(3, dtype=np.uint8)[np.arange(60) % 3]
    cfg = A.AnnealConfig(strategy="random", budget=5, rounds=1, initial=10, pool=200, steps=5, seed=4)
    a, ha = A.run(x, np.arange(60), A.label_oracle(labels), cfg)
    b, hb = A.run(x, np.arange(60), A.label_oracle(labels), cfg, model=A.FrozenHead(x))
    assert [r.similar for r in a] == [r.similar for r in b]
    assert all(np.array_equal(ha.weights[k], hb.weights[k]) for k in ha.weights)


def test_from_crossmodal_embeds_like_the_models_encoder(tmp_path) -> None:
    from rsir.data.archive import open_archive
    from rsir.methods.sscm import SSCMOptions, train_sscm
    from rsir.models.crossmodal import load_crossmodal_encoder
    from rsir.train.loop import TrainConfig
    from tests.data.archive_helpers import write_tiny_archive

    arc = open_archive(write_tiny_archive(tmp_path / "a", n=20, size=12))
    path, _ = train_sscm(arc, tmp_path / "m", TrainConfig(epochs=1, batch_size=6, progress=False, num_workers=0),
                         SSCMOptions(bits=8, width=8, blocks=(1, 1), hidden=16))
    m = from_crossmodal(path, arc, "s2", positions=[3, 0, 7])
    enc = load_crossmodal_encoder(path, output="float")
    want = enc.encode(np.stack([arc.image(p, "s2") for p in (3, 0, 7)]), "s2")
    assert np.allclose(m.embed(m.pretrained), want, atol=1e-5)
    with pytest.raises(FeedbackError):
        from_crossmodal(path, arc, "s3")
