"""Encoder shapes, MiLAN head structure, model directory round trip and the search-side encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from rsir.errors import RsirError
from rsir.models import MilanHashHead, NetConfig, ResNet, ResNetConfig, RetrievalNet
from rsir.models.encoder import ModelEncoder, load_model_encoder
from rsir.models.io import ModelMeta, load_model, save_model


@pytest.mark.parametrize("bands,size", [(12, 16), (2, 8), (3, 12)])
def test_resnet_any_band_count_and_size(bands, size):
    net = ResNet(ResNetConfig(bands, width=8, blocks=[1, 1, 1]))
    assert net.stem[0].weight.is_contiguous(memory_format=torch.channels_last)  # training layout
    net.eval()
    y = net(torch.randn(3, bands, size, size))
    assert y.shape == (3, 32) and net.feature_dim == 32


@pytest.mark.slow
def test_memory_format_follows_mode_and_keeps_parameters():
    net = ResNet(ResNetConfig(4, width=8, blocks=[1, 1]))
    params = list(net.parameters())
    opt = torch.optim.Adam(net.parameters())
    x = torch.randn(2, 4, 16, 16)
    net.eval()  # CPU inference: NCHW weights
    assert net.stem[0].weight.is_contiguous() and net.memory_format == torch.contiguous_format
    with torch.no_grad():
        y_nchw = net(x)
    net.train()
    assert net.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    # the same Parameter objects (the optimiser still holds them), and the same function in either layout
    assert all(a is b for a, b in zip(params, net.parameters(), strict=True))
    assert all(p is q for p, q in zip(params, opt.param_groups[0]["params"], strict=True))
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), y_nchw, atol=1e-6)


@pytest.mark.slow
def test_fused_inference_copy_matches_network():
    torch.manual_seed(0)
    net = RetrievalNet(NetConfig(ResNetConfig(5, 8, [1, 2]), n_classes=3, bits=16, output="hash"))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):  # non-trivial batch-norm statistics and affine parameters
        net.train()
        loss = net(torch.randn(8, 5, 12, 12))["hash"].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    fast = net.for_inference()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.encoder.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.encoder.modules())  # the original is untouched
    x = torch.randn(4, 5, 12, 12)
    with torch.no_grad():
        a, b = net(x), fast(x)
    for k in ("features", "hash", "logits"):
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_milan_head_structure():
    h = MilanHashHead(40, 16)
    lin = [m for m in h.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(40, 1024), (1024, 512), (512, 16)]
    assert h.act.negative_slope == 0.2
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.Dropout)) for m in h.modules())
    y = h(torch.randn(5, 40))
    assert y.shape == (5, 16) and bool(((y > 0) & (y < 1)).all())
    # sigmoid of the last linear layer
    x = torch.randn(2, 40)
    z = lin[2](h.act(lin[1](h.act(lin[0](x)))))
    assert torch.allclose(h(x), torch.sigmoid(z))


def test_milan_head_init_is_tflib_he_over_the_mean_fan():
    # MHCLN: tflib Conv2D 1x1, he_init -> stdev sqrt(4 / (fan_in + fan_out)), uniform +-sqrt(3) stdev, zero bias
    torch.manual_seed(0)
    h = MilanHashHead(2048, 64)
    for fc, (fi, fo) in zip((h.fc1, h.fc2, h.fc3), [(2048, 1024), (1024, 512), (512, 64)], strict=True):
        bound = np.sqrt(3) * np.sqrt(4.0 / (fi + fo))  # 2048 -> 1024: 0.0442 (fan_in He would be 0.0541)
        w = fc.weight.detach().numpy()
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
        assert w.std() == pytest.approx(np.sqrt(4.0 / (fi + fo)), rel=0.02)  # uniform: std = bound / sqrt(3)
        assert not fc.bias.detach().any()


def _net(bits: int = 12, output: str = "hash") -> RetrievalNet:
    torch.manual_seed(0)
    return RetrievalNet(NetConfig(ResNetConfig(4, 8, [1, 1]), n_classes=3, bits=bits, output=output)).eval()


def _meta() -> ModelMeta:
    return ModelMeta("s2", ["B02", "B03", "B04", "B08"], [1.0, 2, 3, 4], [1.0, 1, 1, 1], 8, ["a", "b", "c"])


def test_save_load_round_trip(tmp_path):
    net = _net()
    p = save_model(tmp_path / "m", net, _meta())
    assert sorted(x.name for x in p.iterdir()) == ["config.json", "model.safetensors"]
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".")]  # no partial copy left behind
    cfg = json.loads((p / "config.json").read_text())
    assert cfg["bands"] == ["B02", "B03", "B04", "B08"] and cfg["modality"] == "s2" and cfg["mean"][3] == 4.0
    net2, meta = load_model(p)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(net(x)["hash"], net2(x)["hash"])
    assert meta.bands == _meta().bands
    save_model(p, _net(bits=8), _meta())  # replacing an existing model
    assert load_model(p)[0].config.bits == 8


def test_load_errors(tmp_path):
    with pytest.raises(RsirError, match="not an rsir model"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(RsirError, match="foreign"):
        load_model(tmp_path)


def test_encoder_packs_thresholded_codes(tmp_path):
    net = _net(bits=12)
    enc = ModelEncoder(net, _meta())
    assert enc.metric == "hamming" and enc.dim == 12 and enc.encoder_type == "model" and enc.modality == "s2"
    assert enc.method == "model"  # the net's config.method when set ("milan", "classifier"), recorded by indexes
    x = np.random.default_rng(0).normal(size=(5, 4, 8, 8)).astype(np.float32)
    codes = enc.encode(x)
    assert codes.shape == (5, 2) and codes.dtype == np.uint8
    with torch.no_grad():
        h = net(torch.from_numpy(x))["hash"].numpy()
    for i in range(5):
        # big-endian packing by hand: bit k goes to byte k//8 at value 2**(7 - k%8)
        want = [0, 0]
        for k in range(12):
            if h[i, k] > 0.5:
                want[k // 8] |= 1 << (7 - k % 8)
        assert codes[i].tolist() == want
    enc.save(tmp_path / "m")
    enc2 = load_model_encoder(tmp_path / "m")
    assert np.array_equal(enc2.encode(x), codes)


def test_feature_encoder_is_normalised_float():
    enc = ModelEncoder(_net(bits=0, output="features"), _meta())
    assert enc.metric == "ip" and enc.dim == 16
    f = enc.encode(np.random.default_rng(1).normal(size=(3, 4, 8, 8)).astype(np.float32))
    assert f.dtype == np.float32 and f.shape == (3, 16)
    assert np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
