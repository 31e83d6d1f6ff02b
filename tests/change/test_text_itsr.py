"""text-ITSR (issue 15): pairs, fusion, loss, recall, and the commands end to end on a tiny simulated archive."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from rsir.cli import main as cli_main
from rsir.data.pairs import PairError, bitemporal_pairs, check_pair_images
from rsir.eval.metrics import cross_modal_recall
from rsir.eval.recall import cross_modal_recalls
from rsir.models.change import ChangeNet, ChangeNetConfig, gff, symmetric_info_nce
from rsir.models.resnet import ResNetConfig


def _fake_archive(rows: list[dict]) -> SimpleNamespace:
    return SimpleNamespace(catalog=pd.DataFrame(rows), modalities={"rgb": None}, primary_modality="rgb")


def _row(i: str, partner: str, date: str = "", epoch: str = "", caps: tuple[str, ...] = (), split: str = "test"):
    return {"id": i, "partner_id": partner, "date": date, "epoch": epoch, "captions": list(caps),
            "split": split, "modalities": ["rgb"]}


def test_pairs_are_ordered_by_epoch_or_date_and_carry_the_later_captions():
    rows = [_row("x_B", "x_A", epoch="B", caps=("new road",)), _row("x_A", "x_B", epoch="A"),
            _row("s", "s_t2", date="2018-05-01"), _row("s_t2", "s", date="2017-01-01", caps=("flood",)),
            _row("alone", "")]
    pairs = bitemporal_pairs(_fake_archive(rows))
    assert [(p.before, p.after, p.captions) for p in pairs] == [("x_A", "x_B", ("new road",)),
                                                               ("s_t2", "s", ())]
    assert all(p.info["prior"] == "" for p in pairs)  # archives without the prior_change column still read
    # the simulator's later item is dated, so "s" (2018) comes after "s_t2" (2017); captions live on the later


@pytest.mark.parametrize("dates,problem", [(("2018-01-01", ""), "no readable date for b"),
                                          (("2018-01-01", "2018-01-01"), "both images are dated 2018-01-01"),
                                          (("soon", "2018-01-01"), "no readable date for a")])
def test_a_pair_without_an_order_is_an_error_naming_it(dates, problem):
    rows = [_row("a", "b", date=dates[0]), _row("b", "a", date=dates[1])]
    with pytest.raises(PairError, match="pair 'a'.*" + problem):
        bitemporal_pairs(_fake_archive(rows))


def test_a_partner_missing_from_the_archive_is_named():
    with pytest.raises(PairError, match="names partner ghost"):
        bitemporal_pairs(_fake_archive([_row("a", "ghost", date="2018-01-01")]))


def test_pair_images_must_match_in_bands_size_and_be_finite():
    a = np.zeros((3, 8, 8), np.float32)
    check_pair_images("p", a, a.copy())
    with pytest.raises(PairError, match="pair 'p': the images have 3 and 4 bands"):
        check_pair_images("p", a, np.zeros((4, 8, 8), np.float32))
    with pytest.raises(PairError, match="differ in size: 8x8 and 8x9"):
        check_pair_images("p", a, np.zeros((3, 8, 9), np.float32))
    bad = a.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(PairError, match="after image holds NaN"):
        check_pair_images("p", a, bad)


def test_symmetric_info_nce_matches_a_hand_loop():
    g = torch.Generator().manual_seed(0)
    img, txt, tau = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g), 0.1
    total = 0.0
    for i in range(5):
        s_row = [float(torch.nn.functional.cosine_similarity(img[i], txt[j], dim=0)) / tau for j in range(5)]
        s_col = [float(torch.nn.functional.cosine_similarity(img[j], txt[i], dim=0)) / tau for j in range(5)]
        total += -s_row[i] + math.log(sum(math.exp(v) for v in s_row))
        total += -s_col[i] + math.log(sum(math.exp(v) for v in s_col))
    assert float(symmetric_info_nce(img, txt, tau)) == pytest.approx(total / 10, rel=1e-5)


def test_gff_operators():
    g1, g2 = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 1.0]])
    assert gff(g1, g2, "concat").tolist() == [[1.0, -2.0, 3.0, 1.0]]
    assert gff(g1, g2, "diff").tolist() == [[2.0, 3.0]]
    assert gff(g1, g2, "absdiff").tolist() == [[2.0, 3.0]]
    assert gff(g2, g1, "absdiff").tolist() == [[2.0, 3.0]]
    assert gff(g1, g2, "sum").tolist() == [[4.0, -1.0]]
    assert gff(g1, g2, "product").tolist() == [[3.0, -2.0]]


def _net(fusion: str, operator: str = "concat") -> ChangeNet:
    torch.manual_seed(0)
    enc = ResNetConfig(in_channels=3, width=4, blocks=[1, 1], stem_stride=4)
    return ChangeNet(ChangeNetConfig(enc, fusion, operator, dim=16, tokens=4, tff_dim=8, tff_heads=2)).eval()


def test_both_dates_go_through_one_encoder_before_fusion():
    net = _net("gff", "concat")
    a, b = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        fused = net.fuse(a, b)
        assert torch.allclose(fused, torch.cat([net.encoder(a), net.encoder(b)], 1), atol=1e-5)
        # the single-date baseline sees only the later image
        base = _net("later")
        assert torch.allclose(base.fuse(torch.randn(2, 3, 16, 16), b), base.encoder(b), atol=1e-6)


def test_tff_knows_which_date_is_which():
    net = _net("tff")
    a, b = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ab, ba = net.pair_logits(a, b), net.pair_logits(b, a)
    assert ab.shape == (2, 16)
    assert not torch.allclose(ab, ba)  # temporal embeddings: before/after swapped is another pair
    with pytest.raises(ValueError, match="built for 4 tokens"):
        net.fuse(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32))


def test_recall_at_k_by_hand():
    sim = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.5, 0.5, 0.1]])
    rel = np.array([[False, False, True], [True, False, False], [False, True, False]])
    # ranks of the relevant column: row 0 -> 2nd, row 1 -> 3rd, row 2 -> tie with column 0, broken by order: 2nd
    owner = np.argmax(rel, axis=0)  # the row each column is relevant to
    r = cross_modal_recall(-sim, owner, (1, 2, 3))
    assert {k: r[f"i2t_R@{k}"] for k in (1, 2, 3)} == {1: 0.0, 2: 2 / 3, 3: 1.0}
    pair = np.array([[1.0, 0.0], [0.0, 1.0]])
    text = np.array([[1.0, 0.1], [0.9, 0.0], [0.0, 1.0]])
    r = cross_modal_recalls(pair, text, np.array([0, 0, 1]))
    assert r["t2p_R@1"] == 1.0 and r["p2t_R@1"] == 1.0 and r["mR"] == 1.0
    r = cross_modal_recalls(pair, text[[2, 0, 1]], np.array([0, 0, 1]), directions=["t2p"])
    # sentences (0, 1) -> pair 1 (miss), (1, .1) -> pair 0 (hit), (.9, 0) -> pair 0 (miss, it describes pair 1)
    assert r["t2p_R@1"] == pytest.approx(1 / 3) and set(r) == {"t2p_R@1", "t2p_R@5", "t2p_R@10", "mR"}
    # queries: only pair 1 and its sentence (0, 1) are scored, each still searched against everything
    r = cross_modal_recalls(pair, text[[2, 0, 1]], np.array([0, 0, 1]), queries=np.array([False, True]))
    assert r["t2p_R@1"] == 0.0 and r["p2t_R@1"] == 0.0 and r["p2t_R@5"] == 1.0


@pytest.mark.slow
def test_commands_end_to_end(tmp_path: Path, capsys):
    arch, model, index = tmp_path / "arch", tmp_path / "model", tmp_path / "index"
    assert cli_main(["simulate", "--n", "60", "--size", "12", "--bitemporal", "0.9", "--seed", "3",
                     "--out", str(arch), "--quiet"]) == 0
    assert cli_main(["train", str(arch), "--method", "text-itsr", "--fusion", "tff", "--bits", "16",
                     "--epochs", "2", "--width", "4", "--out", str(model), "--quiet"]) == 0
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["format"] == "rsir-change-model" and cfg["info"]["selection"]["n_selection"] >= 1
    assert (model / "training.png").stat().st_size > 0
    assert cli_main(["index", str(arch), "--model", str(model), "--out", str(index), "--no-progress"]) == 0
    capsys.readouterr()
    assert cli_main(["search", str(index), "--text", "the forest was cut down", "-k", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mode"] == "text->pairs" and len(res["results"]) == 3
    first = res["results"][0]
    assert first["before"] != first["after"] and first["captions"]
    assert cli_main(["search", str(index), "--pair", first["after"], "-k", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mode"] == "pair->text" and res["query"]["pair"]["pair_id"] == first["pair_id"]
    assert all("text" in h for h in res["results"])
    assert cli_main(["eval", str(arch), str(index), "--split", "all", "--out", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "eval.json").read_text())
    for row in ev["results"].values():
        assert 0.0 <= row["mR"] <= 1.0 and row["t2p_R@10"] >= row["t2p_R@1"]
    assert cli_main(["search", str(index), "--pair", "nope"]) != 0
    assert "pair 'nope' is not in this change index" in capsys.readouterr().err
