"""A tiny simulated archive with bitemporal pairs, a text-ITSR model, and both indexes (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def change_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(archive, single-image LSH index, change index)."""
    import torch

    from rsir.data.simulate import SimConfig, simulate
    from rsir.methods.text_itsr import ChangeOptions, train_text_itsr
    from rsir.pipeline import build_change_index, build_index
    from rsir.train.loop import TrainConfig

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("change")
    arch = simulate(SimConfig(n=40, seed=5, size=12, bitemporal=0.9, workers=1), root / "arch")
    model = train_text_itsr(arch, root / "model", TrainConfig(epochs=2, progress=False, batch_size=16),
                            ChangeOptions(fusion="gff", operator="diff", bits=16, width=4)).path
    index = build_index(arch, root / "index", method="lsh", bits=32, progress=False)
    change = build_change_index(arch, root / "change", model, progress=False)
    return arch, index, change
