"""The training loop: validation metric by hand, augmentations, resume, early stopping, MiLAN frozen encoder,
and the `rsir train` command end to end on tiny archives."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from rsir.cli import main
from rsir.data.archive import open_archive
from rsir.errors import RsirError
from rsir.methods.recipes import ClassifierRecipe, MilanRecipe
from rsir.methods.train_api import MethodOptions, train_model
from rsir.models.encoder import load_model_encoder
from rsir.models.io import load_model
from rsir.models.net import NetConfig
from rsir.models.resnet import ResNetConfig
from rsir.train.data import SplitDataset, dihedral
from rsir.train.loop import TrainConfig, fit
from rsir.train.validation import map_at_k_a, rank_database
from tests.data.archive_helpers import write_tiny_archive


def test_map_at_k_variant_a_hand_example():
    # query labels {0}; retrieved relevance 1,0,1,0 -> P@1 = 1, P@3 = 2/3; R_k = 2 -> AP = (1 + 2/3)/2 = 5/6
    q = np.array([[1, 0]])
    ranked = np.array([[[1, 0], [0, 1], [1, 1], [0, 1]]])
    assert map_at_k_a(q, ranked) == pytest.approx(5 / 6)
    # no relevant item retrieved scores 0
    assert map_at_k_a(q, np.array([[[0, 1], [0, 1]]])) == 0.0


def test_ranking_leaves_query_out_and_breaks_ties_by_position():
    codes = np.array([[1, 0, 1], [1, 0, 1], [1, 0, 1], [0, 1, 0]], dtype=np.float32)
    pos = np.array([3, 1, 2, 0])
    top = rank_database(codes[:1], codes, "hamming", 3, pos[:1], pos)
    # query (position 3) left out; items at positions 1 and 2 have distance 0 -> 1 before 2; then position 0
    assert pos[top[0]].tolist() == [1, 2, 0]


def test_dihedral_keeps_spectra():
    x = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(3, 4, 4)
    spectra = {tuple(x[:, i, j].tolist()) for i in range(4) for j in range(4)}
    outs = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(outs) == 8  # the 8 symmetries differ
    for k in range(8):
        y = dihedral(x, k)
        assert {tuple(y[:, i, j].tolist()) for i in range(4) for j in range(4)} == spectra


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return open_archive(write_tiny_archive(tmp_path_factory.mktemp("a") / "a", n=36, size=8, with_s1=False))


def _cls_recipe(archive):
    torch.manual_seed(0)
    return ClassifierRecipe(NetConfig(ResNetConfig(12, 8, [1, 1]), n_classes=19, method="classifier"))


@pytest.mark.slow
def test_resume_reproduces_an_uninterrupted_run(archive, tmp_path):
    ds = SplitDataset(archive, "s2", "train", augment=True)
    cfg = TrainConfig(epochs=2, batch_size=4, progress=False, num_workers=0, checkpoint_dir=tmp_path / "c1")
    r1 = _cls_recipe(archive)
    fit(r1, ds, cfg)
    r2 = _cls_recipe(archive)
    fit(r2, ds, replace(cfg, epochs=1, checkpoint_dir=tmp_path / "c2"))
    r3 = _cls_recipe(archive)
    fit(r3, ds, replace(cfg, checkpoint_dir=tmp_path / "c2", resume=True))
    for k, v in r1.net.state_dict().items():
        assert torch.allclose(v.float(), r3.net.state_dict()[k].float(), atol=1e-6), k


@pytest.mark.slow
def test_early_stopping_on_flat_validation(archive):
    ds = SplitDataset(archive, "s2", "train")
    val = SplitDataset(archive, "s2", "validation")
    cfg = TrainConfig(epochs=6, batch_size=4, lr=1e-30, patience=1, progress=False, num_workers=0)
    hist = fit(_cls_recipe(archive), ds, cfg, val, torch.utils.data.ConcatDataset([ds, val]))
    # with a vanishing learning rate only batch-norm statistics move, so the mAP soon stops improving; the run
    # stops exactly `patience` epochs after its best one and keeps the best epoch's score
    maps = [e["val_map@20"] for e in hist.epochs]
    assert hist.stopped_early and len(hist.epochs) < 6 and len(hist.epochs) == hist.best_epoch + 1
    assert hist.best_map == max(maps) == maps[hist.best_epoch - 1]


def test_milan_optimiser_is_adam_1e4_05_09():
    opt = MilanRecipe(16, 8).optimizer(None)
    assert isinstance(opt, torch.optim.Adam)
    g = opt.param_groups[0]
    assert g["lr"] == 1e-4 and g["betas"] == (0.5, 0.9)


@pytest.mark.slow
def test_milan_keeps_the_feature_extractor_frozen(archive, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=6, progress=False, num_workers=0)
    opts = MethodOptions(bits=16, width=8, blocks=[1, 1], sampler="diverse")
    cls = train_model(archive, "classifier", tmp_path / "cls", cfg, opts)
    res = train_model(archive, "milan", tmp_path / "milan", replace(cfg, epochs=2),
                      replace(opts, features=cls.path))
    c, _ = load_model(cls.path)
    m, meta = load_model(res.path)
    for k, v in c.encoder.state_dict().items():
        assert torch.equal(v, m.encoder.state_dict()[k]), k  # gradients reached only the hash head
    assert m.config.output == "hash" and meta.info["frozen_encoder"] is True
    enc = load_model_encoder(res.path)
    x = np.stack([archive.image(i, "s2") for i in range(4)])
    assert enc.metric == "hamming" and enc.encode(x).shape == (4, 2)
    # the recorded count of distinct training codes is the count of the model's own codes
    train = np.stack([archive.image(int(p), "s2") for p in archive.split_positions("train")])
    assert meta.info["distinct_codes_train"] == len(np.unique(enc.encode(train), axis=0))


def test_milan_pairs_rejects_multilabel(archive, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=6, progress=False, num_workers=0)
    opts = MethodOptions(bits=8, width=8, blocks=[1, 1], sampler="milan-pairs")
    cls = train_model(archive, "classifier", tmp_path / "cls", cfg, opts)
    with pytest.raises(RsirError, match="single-label"):
        train_model(archive, "milan", tmp_path / "m", cfg, replace(opts, features=cls.path))


def test_cli_train_milan_e2e_and_resume(tmp_path, capsys):
    # its own archive, written for this test
    apath = write_tiny_archive(tmp_path / "a", n=24, size=8, with_s1=False)
    out = tmp_path / "e2e"
    args = [str(apath), "--method", "milan-e2e", "--bits", "8", "--epochs", "1", "--out", str(out),
            "--batch-size", "6", "--width", "8", "--quiet", "--workers", "0"]
    assert main(["train", *args]) == 0
    printed = capsys.readouterr().out
    assert "wrote milan-e2e model" in printed and f"{out / 'training.png'}" in printed
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    args[args.index("--epochs") + 1] = "2"
    assert main(["train", *args, "--resume"]) == 0
    enc = load_model_encoder(out)
    assert enc.dim == 8 and enc.metric == "hamming"
    info = load_model(out)[1].info
    assert len(info["history"]) == 2
    a = open_archive(apath)
    train = np.stack([a.image(int(p), "s2") for p in a.split_positions("train")])
    assert info["distinct_codes_checked_items"] == len(train)
    assert info["distinct_codes_train"] == len(np.unique(enc.encode(train), axis=0))
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2


def test_cosine_schedule_anneals_per_epoch_and_resumes(archive, tmp_path):
    ds = SplitDataset(archive, "s2", "train")
    cfg = TrainConfig(epochs=4, batch_size=8, lr=1e-3, schedule="cosine", progress=False, num_workers=0,
                      checkpoint_dir=tmp_path / "c1", max_steps=1)
    hist = fit(_cls_recipe(archive), ds, cfg)
    # epoch e (0-based) trains at lr_0 * (1 + cos(pi e / E)) / 2: 1e-3, 8.54e-4, 5e-4, 1.46e-4
    want = [1e-3 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)]
    assert [e["lr"] for e in hist.epochs] == pytest.approx(want)
    fit(_cls_recipe(archive), ds, replace(cfg, epochs=2, checkpoint_dir=tmp_path / "c2"))
    # a run extended by --resume to 4 epochs: its first 2 epochs followed the 2-epoch schedule (1e-3, 5e-4),
    # the resumed epochs follow the 4-epoch one
    hist2 = fit(_cls_recipe(archive), ds, replace(cfg, checkpoint_dir=tmp_path / "c2", resume=True))
    assert [e["lr"] for e in hist2.epochs] == pytest.approx([1e-3, 5e-4, *want[2:]])
    with pytest.raises(ValueError, match="schedule"):
        fit(_cls_recipe(archive), ds, replace(cfg, schedule="step"))


@pytest.mark.slow
def test_same_seed_same_model_across_processes(archive, tmp_path):
    # torch's global generator starts from a random seed in every process, so the weight initialisation must be
    # seeded by train_model itself: draw from the global generator first, as another process would differ there
    cfg = TrainConfig(epochs=1, batch_size=6, progress=False, num_workers=0, seed=3)
    opts = MethodOptions(bits=8, width=8, blocks=[1, 1])
    torch.manual_seed(123)
    a = train_model(archive, "classifier", tmp_path / "a", cfg, opts)
    torch.manual_seed(456)
    b = train_model(archive, "classifier", tmp_path / "b", cfg, opts)
    ma, mb = load_model(a.path)[0].state_dict(), load_model(b.path)[0].state_dict()
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    torch.manual_seed(7)
    m1 = train_model(archive, "milan", tmp_path / "m1", cfg, replace(opts, features=a.path))
    torch.manual_seed(8)
    m2 = train_model(archive, "milan", tmp_path / "m2", cfg, replace(opts, features=a.path))
    h1, h2 = load_model(m1.path)[0].hash_head, load_model(m2.path)[0].hash_head
    assert h1 is not None and h2 is not None
    assert all(torch.equal(x, y) for x, y in zip(h1.state_dict().values(), h2.state_dict().values(), strict=True))


def test_distinct_codes_counts_codes_and_sees_a_collapse():
    from rsir.methods.train_api import _distinct_codes

    x = torch.tensor([[1.0, -1.0], [1.0, 2.0], [-3.0, 1.0], [2.0, -5.0], [1.0, -1.0]])
    ident = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Sigmoid())  # code = signs of x
    assert _distinct_codes([ident(x)]) == 3  # (1, 0) for rows 0, 3, 4; (1, 1); (0, 1)
    assert _distinct_codes([ident(x[:2]), ident(x[2:])]) == 3  # counted over all batches together
    flat = torch.nn.Linear(2, 8)
    torch.nn.init.zeros_(flat.weight)
    torch.nn.init.constant_(flat.bias, 3.0)
    assert _distinct_codes([torch.nn.Sequential(flat, torch.nn.Sigmoid())(x)]) == 1


def test_a_non_finite_loss_stops_training_with_the_items_and_untouched_weights():
    from rsir.train.data import TensorItems
    from rsir.train.loop import TrainingError

    g = torch.Generator().manual_seed(0)
    x = torch.randn(36, 16, generator=g)
    x[7, 3] = float("nan")  # one corrupt feature vector, archive position 107
    labels = (torch.rand(36, 19, generator=g) < 0.3).float()
    data = TensorItems(x, labels, np.arange(100, 136))
    recipe = MilanRecipe(16, 8, sampler="random")
    before = {k: v.clone() for k, v in recipe.net.state_dict().items()}
    cfg = TrainConfig(epochs=2, batch_size=36, progress=False, num_workers=0)
    with pytest.raises(TrainingError, match=r"loss became nan in epoch 1, step 1.*non-finite input") as e:
        fit(recipe, data, cfg)
    assert isinstance(e.value, RsirError)  # the CLI prints it as one line
    for k, v in recipe.net.state_dict().items():
        assert torch.equal(v, before[k]), k
