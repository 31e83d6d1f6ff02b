"""A small simulated archive with a DUCH model and its index (image + caption codes), for the DUCH tests."""

from __future__ import annotations

from pathlib import Path


def make_duch_index(root: Path, n: int = 60) -> dict[str, Path]:
    """Simulate ``n`` captioned patches, save an untrained feature model, train DUCH 3 epochs (16 bits, hidden 32)
    through the CLI and index the archive with it and with LSH (no text model)."""
    import torch

    from rsir.cli import main
    from rsir.data.archive import open_archive
    from rsir.data.simulate import SimConfig, simulate
    from rsir.models.io import ModelMeta, save_model
    from rsir.models.net import NetConfig, RetrievalNet
    from rsir.models.resnet import ResNetConfig

    torch.set_num_threads(1)
    arch = simulate(SimConfig(n=n, size=12, bitemporal=0.0, difficulty="easy", seed=1), root / "sim")
    a = open_archive(arch)
    spec = a.spec("s2")
    mean, std = a.band_stats("s2")
    torch.manual_seed(0)
    net = RetrievalNet(NetConfig(ResNetConfig(len(spec.bands), 8, [1, 1]), n_classes=19, output="features"))
    feats = save_model(root / "cls", net.eval(), ModelMeta("s2", list(spec.bands), mean, std, 12,
                                                           list(a.nomenclature.classes)))
    model = root / "duch16"
    assert main(["train", str(arch), "--method", "duch", "--features", str(feats), "--bits", "16", "--epochs", "3",
                 "--hidden", "32", "--batch-size", "16", "--select-every", "1", "--quiet", "--out", str(model)]) == 0
    index = root / "idx"
    assert main(["index", str(arch), "--model", str(model), "--out", str(index), "--no-progress"]) == 0
    plain = root / "idx-lsh"
    assert main(["index", str(arch), "--method", "lsh", "--bits", "16", "--out", str(plain), "--no-progress"]) == 0
    return {"archive": arch, "features": feats, "model": model, "index": index, "plain": plain}
