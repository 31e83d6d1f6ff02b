"""Model selection on a seeded slice of the training split: the slice rule, and that training never scores
validation or test items (the evaluation queries)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

import rsir.methods.train_api as train_api
from rsir.data.archive import open_archive
from rsir.methods.train_api import MethodOptions, train_model
from rsir.train.loop import TrainConfig
from rsir.train.selection import ids_digest, selection_slice, split_for_selection
from tests.data.archive_helpers import write_tiny_archive


def _by_hand(ids, fraction, seed):
    # the documented rule written out: blake2b-64 of "seed\0id", the round(fraction*n) smallest keys
    keys = [(int.from_bytes(hashlib.blake2b(f"{seed}\x00{i}".encode(), digest_size=8).digest(), "big"), i)
            for i in ids]
    m = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    return {i for _, i in sorted(keys)[:m]}


def test_slice_follows_the_rule_and_ignores_order():
    ids = [f"S2A_patch_{i:05d}" for i in range(1000)]
    mask = selection_slice(ids, 0.1, seed=0)
    chosen = {i for i, m in zip(ids, mask, strict=True) if m}
    assert len(chosen) == 100 and chosen == _by_hand(ids, 0.1, 0)
    rev = ids[::-1]
    assert {i for i, m in zip(rev, selection_slice(rev, 0.1, 0), strict=True) if m} == chosen
    other = {i for i, m in zip(ids, selection_slice(ids, 0.1, seed=1), strict=True) if m}
    assert other != chosen and len(other) == 100
    # same ids, same slice in another call (no global random state involved)
    np.random.seed(123)
    assert (selection_slice(ids, 0.1, 0) == mask).all()


def test_slice_edges():
    assert not selection_slice([], 0.1).any()
    assert not selection_slice(["a"], 0.5).any()            # one item: nothing to hold out
    assert selection_slice(["a", "b"], 0.01).sum() == 1      # at least one with two or more items
    assert selection_slice(["a", "b", "c"], 0.9).sum() == 2  # never all of them
    assert not selection_slice(["a", "b", "c"], 0.0).any()
    with pytest.raises(ValueError, match="fraction"):
        selection_slice(["a", "b"], 1.0)
    mask, sel = split_for_selection(["x", "y", "z", "w"], "train", 0.5, 3)
    rec = sel.to_json()
    assert rec["n_fit"] == 2 and rec["n_selection"] == 2 and rec["seed"] == 3 and rec["split"] == "train"
    assert rec["selection_ids_sha256_16"] == ids_digest([i for i, m in zip("xyzw", mask, strict=True) if m])


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return open_archive(write_tiny_archive(tmp_path_factory.mktemp("sel") / "a", n=60, size=8, with_s1=False))


def test_splits_hold_out_training_items_only(archive):
    cfg = TrainConfig(selection_fraction=0.25, selection_seed=7)
    sp = train_api._splits(archive, "s2", MethodOptions(preload=True), cfg)
    train_pos = set(archive.split_positions("train").tolist())
    q = set(sp.queries.positions.tolist())
    fit_pos = set(sp.train.positions.tolist())
    assert q and q <= train_pos and fit_pos | q == train_pos and not fit_pos & q
    assert len(q) == round(0.25 * len(train_pos))
    assert {archive.ids[p] for p in q} == _by_hand([archive.ids[p] for p in sorted(train_pos)], 0.25, 7)
    db = {int(sp.database[i]["index"]) for i in range(len(sp.database))}
    assert db == train_pos  # the selection database is the training split; no validation/test item
    assert sp.selection is not None and sp.selection.n_selection == len(q)


def test_trained_model_records_its_slice_and_never_embeds_eval_items(archive, tmp_path, monkeypatch):
    seen: list[int] = []
    real = train_api.fit

    def spy(recipe, train, cfg, vq=None, vdb=None, *a, **kw):
        for ds in (train, vq, vdb):
            if ds is not None:
                seen.extend(int(ds[i]["index"]) for i in range(len(ds)))
        return real(recipe, train, cfg, vq, vdb, *a, **kw)

    monkeypatch.setattr(train_api, "fit", spy)
    cfg = TrainConfig(epochs=1, batch_size=8, progress=False, num_workers=0)
    res = train_model(archive, "classifier", tmp_path / "cls", replace(cfg, selection_seed=5),
                      MethodOptions(width=8, blocks=[1, 1]))
    assert set(seen) == set(archive.split_positions("train").tolist())
    info = json.loads((res.path / "config.json").read_text())["info"]
    sel = info["selection"]
    assert sel["seed"] == 5 and sel["fraction"] == 0.1 and sel["split"] == "train"
    assert sel["n_fit"] + sel["n_selection"] == len(archive.split_positions("train"))
    assert info["val_map@20_A"] is not None and "training slice" in info["validation"]
    # fraction 0: no selection, the last epoch is kept and the config says so
    res0 = train_model(archive, "classifier", tmp_path / "cls0", replace(cfg, selection_fraction=0.0),
                       MethodOptions(width=8, blocks=[1, 1]))
    info0 = json.loads((res0.path / "config.json").read_text())["info"]
    assert info0["selection"] is None and info0["val_map@20_A"] is None
