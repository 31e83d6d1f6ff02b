"""The learned codec: entropy model, bit-exact coding, damaged streams, compressed archives indexed from their
bitstreams without the synthesis transform, decoding on demand, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rsir.compression.codec import CodecConfig, CodecError, CodecMeta, JointNet, load_codec
from rsir.compression.entropy import TOTAL, BitstreamError, FactorizedDensity, LatentCoder
from rsir.compression.train import CodecTrainConfig, train_codec
from rsir.data.archive import open_archive
from rsir.errors import ItemError
from tests.data.archive_helpers import write_tiny_archive


def _density(seed: int = 0, channels: int = 4) -> FactorizedDensity:
    torch.manual_seed(seed)
    d = FactorizedDensity(channels)
    with torch.no_grad():  # different widths per channel
        d.matrices[0].mul_(torch.linspace(0.3, 1.0, channels).reshape(-1, 1, 1))
    d.update_tables()
    return d


def test_density_is_a_pmf_and_tables_are_exact() -> None:
    d = _density()
    grid = torch.arange(-300, 301, dtype=torch.float32).reshape(1, 1, 1, -1).expand(1, 4, 1, -1).contiguous()
    mass = d.likelihood(grid).sum(-1).flatten()
    assert torch.allclose(mass, torch.ones(4), atol=1e-3)
    for c in range(4):
        k = int(d.size[c]) + 1
        row = d.table[c].numpy()
        assert int(row[:k].sum()) == TOTAL and (row[:k] >= 1).all() and (row[k:] == 0).all()


def test_round_trip_is_bit_exact_with_escapes_and_near_the_entropy() -> None:
    d = _density(1)
    coder = LatentCoder(d)
    rng = np.random.default_rng(0)
    sym = np.rint(rng.laplace(0, 2.0, (4, 6, 5))).astype(np.int32)
    sym[0, 0, 0], sym[3, 5, 4], sym[2, 1, 1] = 20000, -32768, 32767  # far outside the tables: escapes
    data = coder.encode(sym)
    assert np.array_equal(coder.decode(data), sym)
    # a typical latent codes at close to its information content under the model
    typ = np.rint(rng.laplace(0, 1.0, (4, 32, 32))).astype(np.int32)
    lik = d.likelihood(torch.from_numpy(typ[None].astype(np.float32)))
    info_bits = float(-torch.log2(lik.detach()).sum())
    coded_bits = 8 * (len(coder.encode(typ)) - 20)
    assert np.array_equal(coder.decode(coder.encode(typ)), typ)
    assert coded_bits < 1.05 * info_bits + 64


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic", "pad", "header"])
def test_damaged_streams_are_refused(damage: str) -> None:
    coder = LatentCoder(_density(2))
    data = bytearray(coder.encode(np.zeros((4, 3, 3), np.int32) + 1))
    if damage == "truncate":
        data = data[:-3]
    elif damage == "flip":
        data[-1] ^= 0x10
    elif damage == "magic":
        data[0:4] = b"XXXX"
    elif damage == "pad":
        data += b"\0\0\0\0"
    else:
        data = data[:10]
    with pytest.raises(BitstreamError):
        coder.decode(bytes(data))
    with pytest.raises(BitstreamError, match="latent is 3x3, expected 2x2"):
        coder.decode(coder.encode(np.zeros((4, 3, 3), np.int32)), (2, 2))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("codec")
    arch = write_tiny_archive(root / "arch", n=18, size=24)
    torch.manual_seed(0)
    cfg = CodecTrainConfig(bits=16, codec_epochs=1, joint_epochs=1, batch_size=6, n_filters=8, latent=4)
    codec = train_codec(arch, root / "codec", cfg)
    return arch, codec


def test_training_records_both_stages_and_learned_weights(trained: tuple[Path, Path]) -> None:
    _, codec_dir = trained
    cfg = json.loads((codec_dir / "config.json").read_text())
    stages = [h["stage"] for h in cfg["info"]["history"]]
    assert stages == ["codec", "joint"]
    joint = cfg["info"]["history"][1]
    assert set(joint["weights"]) == {"rd", "pairwise", "balance", "classification"}
    assert {"pairwise", "balance", "classification", "bpp", "mse"} <= set(joint)
    c = load_codec(codec_dir)
    assert c.net.entropy.has_tables and c.bits == 16 and c.meta.grid == (24, 24)


@pytest.mark.parametrize("weighting", ["pcgrad", "mgda"])
def test_joint_stage_with_gradient_manipulation(weighting: str, trained: tuple[Path, Path], tmp_path: Path) -> None:
    arch, first = trained
    cfg = CodecTrainConfig(bits=16, codec_epochs=0, joint_epochs=1, batch_size=6, n_filters=8, latent=4,
                           init=str(first), weighting=weighting, quantisation=0.1 if weighting == "mgda" else 0.0)
    codec = train_codec(arch, tmp_path / "codec", cfg)
    info = json.loads((codec / "config.json").read_text())["info"]
    (joint,) = info["history"]
    assert joint["stage"] == "joint" and weighting in info["weighting"].lower() and 0 < joint["h_abs"] <= 1
    if weighting == "mgda":
        assert abs(sum(joint["weights"].values()) - 1) < 1e-3 and "quantisation" in joint["weights"]
        assert "rsir's own quantisation term" in info["weighting"]
    else:
        assert 0 <= joint["conflicting_pairs"] <= 6
    with pytest.raises(CodecError, match="unknown weighting"):
        train_codec(arch, tmp_path / "x", CodecTrainConfig(weighting="fixed"))


def test_compress_index_from_streams_without_synthesis(trained: tuple[Path, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from rsir.compression.archive import compress_archive
    from rsir.compression.encoder import load_codec_encoder
    from rsir.pipeline import IndexDir, build_index

    arch_dir, codec_dir = trained
    rep = compress_archive(arch_dir, codec_dir, tmp_path / "c", progress=False)
    src, comp = open_archive(arch_dir), open_archive(tmp_path / "c")
    assert rep.n_items == len(src) == len(comp) and rep.compressed_bytes < rep.raw_bytes
    assert comp.compressed("s2")["method"] == "sci-cbir" and comp.compressed("s1") is None
    assert comp.get(0, "s1")["VV"].tobytes() == src.get(0, "s1")["VV"].tobytes()  # other modality copied
    codec = load_codec(codec_dir)
    # codes from pixels of the source archive (the latent a bitstream holds) ...
    raw = np.concatenate([x for _, x in src.batches(64, modality="s2", normalized=False)])
    from_pixels = codec.hash_images(codec.normalise(raw))

    # ... equal the codes read from the compressed stream, and indexing never runs the synthesis transform
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("synthesis transform called while indexing")

    monkeypatch.setattr(torch.nn.ConvTranspose2d, "forward", boom)
    out = build_index(comp, tmp_path / "idx", encoder=load_codec_encoder(codec_dir), progress=False)
    d = IndexDir.open(out)
    assert d.manifest["from_stream"] is True and d.manifest["encoder_type"] == "codec"
    assert np.array_equal(d.vectors(comp.ids), from_pixels)
    monkeypatch.undo()
    # decoding on demand: quicklooks and pixels of the compressed archive
    bands = comp.get(0, "s2")
    assert set(bands) == set(src.spec("s2").bands) and bands["B02"].shape == (24, 24)
    assert bands["B02"].dtype == np.uint16 and comp.quicklook(0).shape == (24, 24, 3)
    assert comp.image(1).shape == (12, 24, 24)


def test_cli_compress_index_search_and_damaged_item(trained: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import lmdb

    from rsir.cli import main

    arch_dir, codec_dir = trained
    assert main(["compress", str(arch_dir), "--codec", str(codec_dir), "--out", str(tmp_path / "c"),
                 "--no-progress"]) == 0
    assert "bits per pixel per band" in capsys.readouterr().out
    assert main(["index", str(tmp_path / "c"), "--out", str(tmp_path / "idx"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["from_stream"] is True
    assert main(["search", str(tmp_path / "idx"), "--id", "item003", "-k", "3"]) == 0
    # damage one item's bitstream: indexing and decoding name it
    comp = tmp_path / "c"
    env = lmdb.open(str(comp / "patches.lmdb"), subdir=True)
    with env.begin(write=True) as txn:
        v = bytearray(txn.get(b"s2/item005"))
        txn.put(b"s2/item005", bytes(v[:-2]))
    env.close()
    from rsir.compression.encoder import load_codec_encoder
    from rsir.pipeline import build_index

    with pytest.raises(ItemError, match="s2/item005.*truncated"):
        build_index(open_archive(comp), tmp_path / "idx2", encoder=load_codec_encoder(codec_dir), progress=False)
    with pytest.raises(ItemError, match="s2/item005.*truncated"):
        open_archive(comp).quicklook("item005")
    assert main(["index", str(comp), "--out", str(tmp_path / "idx3"), "--no-progress"]) == 2
    assert "item005" in capsys.readouterr().err


def test_mismatching_codec_is_refused_before_writing(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from rsir.compression.archive import compress_archive

    _, codec_dir = trained
    other = write_tiny_archive(tmp_path / "small", n=6, size=12)  # 12 x 12 grid
    with pytest.raises(CodecError, match="24x24 patches.*12x12"):
        compress_archive(other, codec_dir, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "codec-bands"
    shutil.copytree(codec_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["bands"] = cfg["bands"][::-1]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CodecError, match="trained on bands"):
        compress_archive(trained[0], bad, tmp_path / "out2", progress=False)
    assert not (tmp_path / "out2").exists()


def test_untrained_tables_are_required() -> None:
    net = JointNet(CodecConfig(in_channels=3, n_filters=4, latent=2, bits=8, n_classes=2))
    with pytest.raises(BitstreamError, match="no coding tables"):
        LatentCoder(net.entropy)
    assert CodecMeta().method == "sci-cbir"


def test_init_reuses_stage_one_for_another_code_length(trained: tuple[Path, Path], tmp_path: Path) -> None:
    arch_dir, codec_dir = trained
    cfg = CodecTrainConfig(bits=8, codec_epochs=0, joint_epochs=0, batch_size=6, n_filters=8, latent=4,
                           init=str(codec_dir))
    out = train_codec(arch_dir, tmp_path / "c8", cfg)
    a, b = load_codec(codec_dir), load_codec(out)
    assert b.bits == 8
    for k, v in a.net.g_a.state_dict().items():
        assert torch.equal(v, b.net.g_a.state_dict()[k])
    assert torch.equal(a.net.entropy.table, b.net.entropy.table)
    with pytest.raises(CodecError, match="latent channels"):
        train_codec(arch_dir, tmp_path / "bad", CodecTrainConfig(bits=8, codec_epochs=0, joint_epochs=0,
                                                                 n_filters=8, latent=6, init=str(codec_dir)))


def test_epoch_hook_scores_held_out_items_into_the_history(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from rsir.compression.train import training_positions

    arch_dir, codec_dir = trained
    arch = open_archive(arch_dir)
    used = training_positions(arch, max_items=4, seed=0)
    held = np.setdiff1d(arch.split_positions("train"), used)
    assert len(used) == 4 and len(held) > 0 and set(used) <= set(arch.split_positions("train").tolist())
    calls: list[tuple[str, int, bool]] = []

    def hook(stage: str, epoch: int, net: JointNet) -> dict[str, float]:
        calls.append((stage, epoch, net.training))
        return {"held_out": float(epoch)}

    cfg = CodecTrainConfig(bits=8, codec_epochs=0, joint_epochs=2, batch_size=2, n_filters=8, latent=4,
                           max_items=4, init=str(codec_dir), weighting="pcgrad")
    out = train_codec(arch, tmp_path / "c", cfg, on_epoch=hook)
    assert calls == [("joint", 1, False), ("joint", 2, False)]  # after each epoch, the net in eval mode
    hist = json.loads((out / "config.json").read_text())["info"]["history"]
    assert [r["held_out"] for r in hist] == [1.0, 2.0]


def test_engine_on_a_compressed_archive_answers_pixel_queries(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from rsir.compression.archive import compress_archive
    from rsir.query.engine import SearchEngine

    arch_dir, codec_dir = trained
    compress_archive(arch_dir, codec_dir, tmp_path / "c", progress=False)
    from rsir.cli import main

    assert main(["index", str(tmp_path / "c"), "--out", str(tmp_path / "idx"), "--no-progress"]) == 0
    engine = SearchEngine.open(tmp_path / "idx", archive=tmp_path / "c")
    src = open_archive(arch_dir)
    # a query by the source item's raw bands (native resolutions) finds the item: same latent, same code
    from rsir.bits import popcount
    from rsir.pipeline import IndexDir

    q = engine.encode_bands(src.get("item004", "s2"))
    stored = IndexDir.open(tmp_path / "idx").vectors(["item004"])
    assert int(popcount(np.bitwise_xor(q.reshape(1, -1), stored)).sum()) <= 1  # float rounding may flip a bit
    hits = {h["id"]: h["distance"] for h in engine.search_bands(src.get("item004", "s2"), k=18).to_json()["results"]}
    assert hits["item004"] == min(hits.values())
    # and by the decoded pixels of the compressed archive (what an upload of a quicklook's source would be)
    assert len(engine.search_bands(open_archive(tmp_path / "c").get("item004", "s2"), k=3).to_json()["results"]) == 3


def test_ingest_decodes_a_compressed_archive_back_to_raw_bands(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from rsir.compression.archive import compress_archive
    from rsir.data.formats import ingest

    arch_dir, codec_dir = trained
    compress_archive(arch_dir, codec_dir, tmp_path / "c", progress=False)
    rep = ingest(tmp_path / "c", "rsir-archive", tmp_path / "raw", {"modalities": "s2"}, progress=False)
    raw, comp, src = open_archive(rep.path), open_archive(tmp_path / "c"), open_archive(arch_dir)
    assert raw.compressed("s2") is None and raw.ids == src.ids and list(raw.modalities) == ["s2"]
    assert raw.item("item007")["labels"] == src.item("item007")["labels"]
    assert np.array_equal(raw.get("item007", "s2")["B04"], comp.get("item007", "s2")["B04"])
    assert any("decoded" in n for n in rep.notes)


def test_ingest_with_codec_writes_what_compress_writes(trained: tuple[Path, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from rsir.cli import main
    from rsir.compression.archive import compress_archive, ingest_with_codec

    arch_dir, codec_dir = trained
    compress_archive(arch_dir, codec_dir, tmp_path / "c", progress=False)
    rep = ingest_with_codec(arch_dir, "rsir-archive", tmp_path / "i", codec_dir, progress=False)
    comp, ing = open_archive(tmp_path / "c"), open_archive(rep.path)
    assert rep.compressed is not None and rep.compressed.n_items == len(ing) == len(comp)
    assert 0 < rep.compressed.compressed_bytes < rep.compressed.raw_bytes
    assert ing.ids == comp.ids and ing.compressed("s2") == comp.compressed("s2")
    assert ing.spec("s2").to_json() == comp.spec("s2").to_json()
    assert ing.manifest["stats"] == comp.manifest["stats"]
    for i in ing.ids:  # the same bitstreams, and the other modality stored as it was
        assert ing.stored(i, "s2") == comp.stored(i, "s2")
        assert ing.get(i, "s1")["VV"].tobytes() == comp.get(i, "s1")["VV"].tobytes()
    assert (rep.path / "codec" / "config.json").exists()
    # the CLI: ingest straight into a compressed archive, then index it from the streams
    assert main(["ingest", str(arch_dir), "--format", "rsir-archive", "--out", str(tmp_path / "cli"), "--quiet",
                 "--codec", str(codec_dir)]) == 0
    assert "bits per pixel per band" in capsys.readouterr().out
    assert main(["index", str(tmp_path / "cli"), "--out", str(tmp_path / "idx"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["from_stream"] is True


def test_ingest_refuses_a_codec_of_other_bands_before_writing(trained: tuple[Path, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from rsir.cli import main
    from rsir.compression.archive import ingest_with_codec

    arch_dir, codec_dir = trained
    bad = tmp_path / "codec-bands"
    shutil.copytree(codec_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["bands"] = cfg["bands"][::-1]
    (bad / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out" / "arch"
    with pytest.raises(CodecError, match="trained on bands"):
        ingest_with_codec(arch_dir, "rsir-archive", out, bad, progress=False)
    assert not out.parent.exists()  # nothing written, not even the folder or a hidden partial copy
    assert main(["ingest", str(arch_dir), "--format", "rsir-archive", "--out", str(out), "--quiet",
                 "--codec", str(bad)]) == 2
    assert "trained on bands" in capsys.readouterr().err and not out.parent.exists()
    cfg["modality"] = "s9"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CodecError, match="codes 's9'"):
        ingest_with_codec(arch_dir, "rsir-archive", out, bad, progress=False)
    assert not out.parent.exists()


def test_a_diverging_stage_stops_with_its_best_epochs_weights(trained: tuple[Path, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import rsir.compression.train as ct

    real, epochs_done = ct.rate_distortion_loss, [0]

    def exploding(*a: object, **k: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rd, r, d = real(*a, **k)  # type: ignore[arg-type]
        return (rd * 1e4 if epochs_done[0] >= 2 else rd), r, d  # from epoch 3 on the loss explodes (finite)

    monkeypatch.setattr(ct, "rate_distortion_loss", exploding)
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def keep(stage: str, epoch: int, net: JointNet) -> None:
        seen[epoch] = {k: v.clone() for k, v in net.g_a.state_dict().items()}
        epochs_done[0] = epoch

    arch, _ = trained
    cfg = CodecTrainConfig(bits=16, codec_epochs=6, joint_epochs=0, batch_size=6, n_filters=8, latent=4)
    out = train_codec(arch, tmp_path / "c", cfg, on_epoch=keep)
    hist = json.loads((out / "config.json").read_text())["info"]["history"]
    assert [r["epoch"] for r in hist] == [1, 2, 3] and "diverged" in hist[-1] and "diverged" not in hist[1]
    best = min((1, 2), key=lambda e: hist[e - 1]["rd"])
    assert f"epoch {best}'s weights" in hist[-1]["diverged"]
    for k, v in load_codec(out).net.g_a.state_dict().items():
        assert torch.equal(v, seen[best][k])


def test_residual_head_codes_survive_save_and_load(tmp_path: Path) -> None:
    from rsir.compression.codec import save_codec

    torch.manual_seed(0)
    cfg = CodecConfig(in_channels=3, n_filters=8, latent=4, bits=16, n_classes=2, head="resnet", head_width=8,
                      head_blocks=[1, 1])
    net = JointNet(cfg)
    y = torch.randn(5, 4, 3, 3) * 3
    net.train()
    net.hash(y)  # moves the batch-norm running statistics away from their initial values
    net.eval()
    with torch.no_grad():
        h = net.hash(y)
    assert h.shape == (5, 16) and float(h.abs().max()) <= 1.0
    assert net.head[0][1].conv1.stride == (2, 2)  # the second stage halves the resolution, as in rsir's ResNet
    meta = CodecMeta(bands=["a", "b", "c"], dtype="float32", grid=(24, 24), mean=[0.0] * 3, std=[1.0] * 3,
                     classes=["x", "y"])
    codec = load_codec(save_codec(tmp_path / "c", net, meta))
    assert codec.net.cfg.head == "resnet" and codec.net.cfg.head_blocks == [1, 1]
    with torch.no_grad():
        assert torch.equal(codec.net.hash(y), h)
    with pytest.raises(CodecError, match="unknown hashing head"):
        JointNet(CodecConfig(in_channels=3, latent=4, bits=8, head="mlp"))


def test_selection_slice_chooses_the_joint_epoch_and_is_never_trained_on(trained: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    from rsir.compression.train import training_positions
    from rsir.train.selection import selection_slice
    from rsir.train.validation import validation_map

    arch_dir, codec_dir = trained
    arch = open_archive(arch_dir)
    train = arch.split_positions("train")
    sel = train[selection_slice([arch.ids[int(p)] for p in train], 0.25)]
    fit = training_positions(arch, selection_fraction=0.25)
    assert len(sel) > 0 and not set(sel.tolist()) & set(fit.tolist())
    assert sorted(sel.tolist() + fit.tolist()) == sorted(train.tolist())
    cfg = CodecTrainConfig(bits=8, codec_epochs=0, joint_epochs=4, batch_size=2, n_filters=8, latent=4,
                           init=str(codec_dir), weighting="pcgrad", head="resnet", head_width=8,
                           selection_fraction=0.25, augment=True, patience=10)
    out = train_codec(arch, tmp_path / "c", cfg)
    info = json.loads((out / "config.json").read_text())["info"]
    scores = {r["epoch"]: r["selection_map20"] for r in info["history"] if r["stage"] == "joint"}
    assert list(scores) == [1, 2, 3, 4] and info["train_items"] == len(fit)
    best = max(scores, key=lambda e: (scores[e], -e))
    assert info["chosen_joint_epoch"] == best and info["selection_map20"] == scores[best]
    # the saved codec holds the chosen epoch's weights: its codes give the recorded selection score again
    codec = load_codec(out)
    codes = lambda pos: np.unpackbits(codec.hash_images(np.concatenate(  # noqa: E731
        [x for _, x in arch.batches(64, modality="s2", positions=pos.tolist())])), axis=1).astype(np.float32)
    db_pos = np.concatenate([fit, sel])
    db = np.concatenate([codes(fit), codes(sel)])
    got = validation_map(codes(sel), arch.labels[sel], sel, db, arch.labels[db_pos], db_pos, "hamming")
    assert round(got, 5) == info["selection_map20"]
