"""The native stem (rsir.models.native_input): the stem's response to native-size band groups equals the stem on
the bilinearly resampled grid; `rsir index` of an SS-CM model gives the codes of the reference loop (assembled
12-band batches through the fused encoder)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rsir.data.archive import open_archive
from rsir.data.bands import assemble, group_tensors, to_grid_batch
from rsir.methods.sscm import SSCMOptions, train_sscm
from rsir.models.crossmodal import encode_archive, load_crossmodal_encoder
from rsir.models.native_input import NativeStem, _taps
from rsir.models.resnet import ResNet, ResNetConfig, fuse_for_inference
from rsir.pipeline import IndexDir, build_index
from rsir.train.loop import TrainConfig
from tests.data.archive_helpers import write_tiny_archive


@pytest.mark.parametrize("native,grid,phases", [(120, 120, 1), (60, 120, 1), (20, 120, 3), (24, 48, 1),
                                                (8, 48, 3), (30, 120, 1), (50, 120, 3)])
def test_taps_rebuild_torch_bilinear(native: int, grid: int, phases: int) -> None:
    got = _taps(native, grid, 4)
    assert got is not None
    a, step, (lo, hi) = got
    assert a.shape[0] == phases
    # the phase convolutions of an edge-replicated line = torch's upsampling then the 4-pixel blocks, any line
    x = torch.randn(3, 1, native, dtype=torch.float64)
    up = F.interpolate(x, size=grid, mode="linear", align_corners=False)[:, 0]  # 3 x grid
    xp = F.pad(x, (lo, hi), mode="replicate")[:, 0]
    for q in range(grid // 4):
        win = xp[:, step * (q // phases):step * (q // phases) + a.shape[2]]
        assert torch.allclose(win @ a[q % phases].double().T, up[:, 4 * q:4 * q + 4], atol=1e-6)


def test_taps_refuse_what_they_cannot_reproduce() -> None:
    assert _taps(4, 24, 4) is None  # 60 m bands of a 24 px patch: fewer than 3 periods, resampled instead
    assert _taps(7, 120, 4) is None  # the pattern repeats every 30 blocks: the whole line, no period to use


def _random_encoder(cin: int, seed: int) -> ResNet:
    torch.manual_seed(seed)
    enc = ResNet(ResNetConfig(in_channels=cin, width=8, blocks=[1, 1, 1]))
    for m in enc.modules():  # batch-norm statistics and affines that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    return fuse_for_inference(enc)


@pytest.mark.parametrize("size", [48, 120])
def test_native_stem_equals_the_resampled_stem(tmp_path, size: int) -> None:
    a = open_archive(write_tiny_archive(tmp_path / "a", n=6, size=size))
    for m in ("s1", "s2"):
        spec = a.spec(m)
        order = list(spec.bands)
        mean, std = a.band_stats(m, order)
        enc = _random_encoder(len(order), seed=size)
        groups = a.band_groups(list(range(6)), m)
        stem = NativeStem.build(enc, [(g.shape, g.idx) for g in groups], spec.grid)
        assert stem is not None
        assert all(p[0] == "native" for p in stem.parts)  # no group needs resampling at 48 or 120 px
        with torch.inference_mode():
            x = torch.from_numpy(to_grid_batch([a.get(p, m) for p in range(6)], order, spec.grid, mean=mean,
                                               std=std))
            ref_stem, ref = enc.stem(x), enc(x)
            got_stem = stem.stem(group_tensors(a.band_groups(list(range(6)), m), mean, std))
            got = stem.features(group_tensors(a.band_groups(list(range(6)), m), mean, std))
        assert torch.allclose(got_stem, ref_stem, rtol=1e-5, atol=1e-5)
        assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_a_stem_that_is_no_patch_embedding_is_left_alone() -> None:
    enc = fuse_for_inference(ResNet(ResNetConfig(in_channels=12, width=8, blocks=[1], stem_stride=2)))
    assert NativeStem.build(enc, [((24, 24), list(range(12)))], (24, 24)) is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("n")
    apath = write_tiny_archive(root / "a", n=40, size=48)
    model, _ = train_sscm(open_archive(apath), root / "m", TrainConfig(epochs=2, batch_size=8, progress=False,
                                                                      num_workers=0, selection_fraction=0),
                          SSCMOptions(bits=64, width=8, blocks=(1, 1, 1), hidden=32))
    return root, apath, model


@pytest.mark.parametrize("output", ["codes", "float"])
def test_index_gives_the_reference_codes(trained, output: str) -> None:
    """rsir index (native stem, two worker threads) against the reference loop on assembled batches."""
    root, apath, model = trained
    arch = open_archive(apath)
    enc = load_crossmodal_encoder(model, output=output)
    out = build_index(arch, root / f"i-{output}", encoder=enc, progress=False)
    idx = IndexDir.open(out)
    for m in ("s1", "s2"):
        spec = arch.spec(m)
        order = list(spec.bands)
        mean, std = arch.band_stats(m, order)
        ref = np.concatenate([enc.encode(to_grid_batch([arch.get(p, m) for p in range(s, min(s + 16, 40))], order,
                                                       spec.grid, mean=mean, std=std), m) for s in range(0, 40, 16)])
        got = idx.vectors(arch.ids, m)
        if output == "codes":
            h = enc.raw(assemble(arch.band_groups(list(range(40)), m), 40, len(order), spec.grid, mean=mean,
                                 std=std), m)
            flipped = np.unpackbits(ref ^ got).reshape(40, -1)
            # a bit may flip only where the reference's tanh output is within float rounding of 0
            assert (np.abs(h[flipped.astype(bool)]) < 1e-5).all()
            assert flipped.sum() <= 2
        else:
            assert np.allclose(got, ref, atol=1e-5)


def test_encode_archive_keeps_order_and_restores_threads(trained) -> None:
    _, apath, model = trained
    arch = open_archive(apath)
    enc = load_crossmodal_encoder(model)
    before = torch.get_num_threads()
    pos = [39, 0, 17, 5, 22]
    for workers in (1, 3):
        got = list(encode_archive(enc.view("s2"), arch, pos, batch_size=2, workers=workers))
        assert [i for ids, _ in got for i in ids] == [arch.ids[p] for p in pos]
        assert np.concatenate([c for _, c in got]).shape == (5, 8)
    assert torch.get_num_threads() == before


def test_blocked_stages_equal_the_plain_ones() -> None:
    from rsir.models.native_input import BlockedStages

    enc = _random_encoder(12, seed=3)
    x = torch.randn(5, 8, 30, 30).relu_()
    stages = BlockedStages.build(enc, (8, 30, 30), batch=4)  # another batch size than the one it was built for
    if not stages:
        pytest.skip("oneDNN is not available in this torch")
    with torch.inference_mode():
        assert torch.allclose(stages(x), enc.stages(x), rtol=1e-6, atol=1e-6)


def test_real_reben_sample_codes_equal_the_reference(tmp_path) -> None:
    """The real reBEN sample (BigEarthNet v2.0 S1/S2 at 120 px) through rsir index, against the reference loop."""
    from rsir.data.formats import ingest
    from tests.conftest import shared_path

    src = shared_path("reben-sample")
    ingest(src, "reben", tmp_path / "reben", progress=False)
    arch = open_archive(tmp_path / "reben")
    model, _ = train_sscm(arch, tmp_path / "m", TrainConfig(epochs=1, batch_size=8, progress=False, num_workers=0,
                                                            selection_fraction=0),
                          SSCMOptions(bits=64, width=8, blocks=(1, 1, 1), hidden=32))
    enc = load_crossmodal_encoder(model)
    idx = IndexDir.open(build_index(arch, tmp_path / "i", encoder=enc, progress=False))
    n = len(arch)
    for m in ("s1", "s2"):
        spec = arch.spec(m)
        order = list(spec.bands)
        mean, std = arch.band_stats(m, order)
        stem = enc.native_stem(m, [(g.shape, g.idx) for g in arch.band_groups([0], m)], spec.grid)
        assert stem is not None and all(p[0] == "native" for p in stem.parts)
        x = to_grid_batch([arch.get(p, m) for p in range(n)], order, spec.grid, mean=mean, std=std)
        ref, h = enc.encode(x, m), enc.raw(x, m)
        flipped = np.unpackbits(ref ^ idx.vectors(arch.ids, m)).reshape(n, -1).astype(bool)
        assert (np.abs(h[flipped]) < 1e-5).all() and flipped.sum() <= 1


def test_training_reads_what_the_reference_encodes(trained) -> None:
    """Training (PairDataset, preloaded or item by item) sees the assembled, normalised batches that the reference
    loop encodes, and that the native stem matches: one preprocessing for training and indexing."""
    from rsir.train.pairs import PairDataset

    _, apath, _ = trained
    arch = open_archive(apath)
    pos = np.arange(0, 40, 3)
    pre = PairDataset(arch, ["s1", "s2"], pos, preload=True)
    lazy = PairDataset(arch, ["s1", "s2"], pos, preload=False)
    assert pre.images is not None
    for k, m in enumerate(("s1", "s2")):
        spec = arch.spec(m)
        mean, std = arch.band_stats(m, list(spec.bands))
        want = to_grid_batch([arch.get(int(p), m) for p in pos], list(spec.bands), spec.grid, mean=mean, std=std)
        assert np.array_equal(pre.images[k].numpy(), want)
        key = "x" if k == 0 else "x2"
        assert np.array_equal(np.stack([lazy[i][key].numpy() for i in range(len(pos))]), want)
