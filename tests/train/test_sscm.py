"""SS-CM training on tiny archives: no label is read, label-free selection on a seeded slice of the training pairs,
the CLI (progress, checkpoints, resume, training.png), codes and float embeddings from the same model, and the
index of both modalities."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsir.bits import pack_bits
from rsir.cli import main
from rsir.data.archive import Archive, open_archive
from rsir.errors import RsirError
from rsir.methods.sscm import SSCMOptions, train_sscm
from rsir.models.crossmodal import load_crossmodal_encoder
from rsir.pipeline import IndexDir
from rsir.train.loop import TrainConfig
from rsir.train.pairs import PairDataset, partner_mrr
from rsir.train.selection import ids_digest, selection_slice
from tests.data.archive_helpers import write_tiny_archive

CFG = TrainConfig(epochs=1, batch_size=6, progress=False, num_workers=0, selection_fraction=0.3)
OPTS = SSCMOptions(bits=8, width=8, blocks=(1, 1), hidden=16)


@pytest.fixture(scope="module")
def apath(tmp_path_factory):
    return write_tiny_archive(tmp_path_factory.mktemp("a") / "a", n=30, size=12)


def test_labels_never_reach_training(apath, tmp_path, monkeypatch):
    def no_labels(self):  # any read of the labels fails the run
        raise AssertionError("ss-cm read the labels")

    monkeypatch.setattr(Archive, "labels", property(no_labels))
    a = open_archive(apath)
    ds = PairDataset(a, ["s1", "s2"], a.split_positions("train")[:4])
    assert set(ds[0]) == {"x", "x2", "index"}  # no label key to pass on
    path, hist = train_sscm(a, tmp_path / "m", CFG, OPTS)
    info = json.loads((path / "config.json").read_text())["info"]
    assert info["labels_used"] is False and len(hist.epochs) == 1


def test_selection_is_the_shared_held_out_training_slice_and_recorded(apath, tmp_path):
    a = open_archive(apath)
    train_ids = [a.ids[p] for p in a.split_positions("train")]
    want = [i for i, m in zip(train_ids, selection_slice(train_ids, 0.3, 0), strict=True) if m]
    path, _ = train_sscm(a, tmp_path / "m", CFG, OPTS)
    info = json.loads((path / "config.json").read_text())["info"]
    sel = info["selection"]
    # the slice every rsir method holds out (rsir.train.selection), only training items, never query items
    assert sel["n_selection"] == len(want) == 3 and sel["selection_ids_sha256_16"] == ids_digest(want)
    assert sel["scored"] and info["train_pairs"] == len(train_ids) - 3
    assert info["history"][0]["sel_partner_mrr"] > 0


def test_partner_mrr_by_hand():
    h1 = np.array([[1, 1, 1], [-1, -1, -1], [1, -1, 1]], np.float32)
    # identical codes in both modalities: every partner is at distance 0 and nothing else is -> MRR 1
    assert partner_mrr(h1, h1) == 1.0
    h2 = np.array([[-1, -1, -1], [1, 1, 1], [1, -1, 1]], np.float32)
    # s1 -> s2 Hamming distances (rows: s1 items 111, 000, 101; columns: s2 items 000, 111, 101):
    #   item 0: [3, 0, 1], partner at 3 -> rank 3 (two closer); item 1: [0, 3, 2] -> rank 3; item 2: [2, 1, 0]
    #   -> rank 1; s2 -> s1 is the transpose and gives the same ranks: MRR = (1/3 + 1/3 + 1) / 3
    assert partner_mrr(h1, h2) == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)


def test_codes_are_signs_of_the_float_embeddings(apath, tmp_path):
    a = open_archive(apath)
    path, _ = train_sscm(a, tmp_path / "m", CFG, OPTS)
    enc = load_crossmodal_encoder(path)
    x = np.stack([a.image(p, "s1") for p in range(5)])
    h = enc.raw(x, "s1")
    assert np.array_equal(enc.encode(x, "s1"), pack_bits(h > 0))
    f = enc.with_output("float").encode(x, "s1")
    assert np.allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5) and np.array_equal(f > 0, h > 0)
    with pytest.raises(RsirError, match="N x 2 x H x W"):
        enc.encode(np.stack([a.image(0, "s2")]), "s1")


def test_cli_train_resume_index_both_modalities(apath, tmp_path, capsys):
    out = tmp_path / "m"
    args = ["train", str(apath), "--method", "ss-cm", "--bits", "8", "--epochs", "1", "--out", str(out),
            "--batch-size", "6", "--width", "8", "--workers", "0", "--selection-fraction", "0.3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "selection sel_partner_mrr" in printed and (out / "training.png").read_bytes()[:4] == b"\x89PNG"
    args[args.index("--epochs") + 1] = "2"
    assert main([*args, "--resume"]) == 0
    assert "resuming ss-cm after epoch 1" in capsys.readouterr().out
    info = json.loads((out / "config.json").read_text())["info"]
    assert len(info["history"]) == 2
    idx = tmp_path / "i"
    assert main(["index", str(apath), "--model", str(out), "--out", str(idx), "--no-progress"]) == 0
    d = IndexDir.open(idx)
    assert d.modalities == ["s1", "s2"] and len(d.index) == 60
    a = open_archive(apath)
    enc = load_crossmodal_encoder(out)
    assert np.array_equal(d.vectors(a.ids[:3], "s1"), enc.encode(np.stack([a.image(p, "s1") for p in range(3)]),
                                                                     "s1"))
    # without a modality: the index's own (the model's home modality), not the first one listed (s1)
    assert d.modality == "s2"
    assert np.array_equal(d.vectors(a.ids[:3]), d.vectors(a.ids[:3], "s2"))
    assert not np.array_equal(d.vectors(a.ids[:3]), d.vectors(a.ids[:3], "s1"))


def test_an_archive_without_s1_is_refused_and_nothing_written(tmp_path, capsys):
    a = write_tiny_archive(tmp_path / "a", n=9, size=12, with_s1=False)
    out = tmp_path / "m"
    assert main(["train", str(a), "--method", "ss-cm", "--out", str(out), "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no s1 modality" in err and "pairs" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "m.ckpt").exists()


def test_untrained_pair_with_epochs_0(apath, tmp_path):
    assert main(["train", str(apath), "--method", "ss-cm", "--bits", "8", "--epochs", "0", "--out",
                 str(tmp_path / "r"), "--width", "8", "--quiet"]) == 0
    assert load_crossmodal_encoder(tmp_path / "r").dim == 8
    assert main(["train", str(apath), "--method", "milan", "--epochs", "0", "--out", str(tmp_path / "x")]) == 2


def test_train_takes_split_lists(apath, tmp_path, capsys):
    names = open_archive(apath).ids[:12]  # 12 listed training pairs, whatever their split in the archive
    lst = tmp_path / "train.csv"
    lst.write_text("".join(f"{n},S1_{n}\n" for n in names))
    out = tmp_path / "m"
    assert main(["train", str(apath), "--method", "ss-cm", "--bits", "8", "--epochs", "1", "--out", str(out),
                 "--batch-size", "6", "--width", "8", "--workers", "0", "--quiet", "--split-list", str(lst)]) == 0
    assert "split lists: train 12, validation 0, test 0" in capsys.readouterr().out
    info = json.loads((out / "config.json").read_text())["info"]
    assert info["train_pairs"] + info["selection"]["n_selection"] == 12


def test_terms_on_the_encoder_leave_the_heads_to_infonce(apath, tmp_path):
    """With --terms-on encoder the discrepancy and intra-modal terms act on the encoder features: their gradient
    reaches the encoders but not the projection heads, and the choice is recorded in the model."""
    import torch

    from rsir.losses.sscm import SSCMWeights
    from rsir.methods.sscm import SSCMRecipe, crossmodal_config

    a = open_archive(apath)
    ds = PairDataset(a, ["s1", "s2"], a.split_positions("train")[:6])
    batch = {k: torch.stack([ds[i][k] for i in range(6)]) for k in ("x", "x2")}
    cfg = crossmodal_config(a, OPTS)
    grads = {}
    for terms in ("mim", "all"):
        torch.manual_seed(0)
        r = SSCMRecipe(cfg, SSCMWeights(terms=terms, w_de=5.0, w_intra=5.0, terms_on="encoder"))
        r.model.train()
        loss, parts = r.loss(batch)
        loss.backward()
        grads[terms] = {n: p.grad.clone() for n, p in r.model.named_parameters() if p.grad is not None}
    heads = [n for n in grads["all"] if n.startswith("heads.")]
    encs = [n for n in grads["all"] if n.startswith("encoders.")]
    assert heads and encs
    assert all(torch.allclose(grads["all"][n], grads["mim"][n], atol=1e-6) for n in heads)
    assert any(not torch.allclose(grads["all"][n], grads["mim"][n], atol=1e-6) for n in encs)
    w = SSCMWeights(terms_on="encoder", ramp=True)
    path, _ = train_sscm(a, tmp_path / "m", CFG, SSCMOptions(bits=8, width=8, blocks=(1, 1), hidden=16, weights=w))
    assert json.loads((path / "config.json").read_text())["info"]["objective"]["terms_on"] == "encoder"
