"""The change-caption grammar of the simulator's bitemporal pairs: held-out wording never reaches training."""

from __future__ import annotations

import numpy as np

from rsir.cli import main as cli_main
from rsir.data.archive import open_archive
from rsir.data.change_grammar import (
    AMOUNTS,
    CLAUSES,
    FRAMES,
    FRAMES_NONE,
    FRAMES_NONE_NAMED,
    GRAMMAR_VERSION,
    _fragments,
    amount,
    change_captions,
    grammar_size,
    heldout_markers,
)
from rsir.data.simulate import CHANGE_KINDS, PHRASES, SimConfig, generate_block, n_blocks

NAMES = [p[0].removeprefix("a ") for p in PHRASES]


def _sample(held: bool, seed: int, n: int = 400) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = CHANGE_KINDS[i % len(CHANGE_KINDS)]
        dst = -1 if kind == "none" and i % 4 == 0 else int(rng.integers(len(PHRASES)))
        out += change_captions(rng, kind, lambda c: NAMES[c], int(rng.integers(len(PHRASES))), dst,
                               int(rng.integers(1, 90)), "north-east", held, 5)
    return out


def test_every_heldout_piece_has_words_no_training_piece_has():
    markers = heldout_markers()
    banks = [*CLAUSES.values(), FRAMES, FRAMES_NONE, FRAMES_NONE_NAMED]
    for b in banks:  # clauses and frames: each held-out one is recognisable
        for t in b.heldout:
            assert any(m in _fragments(t) for m in markers), t
        assert not set(b.train) & set(b.heldout)
    for _, b in AMOUNTS:
        assert not set(b.train) & set(b.heldout)
    assert set(CLAUSES) == set(CHANGE_KINDS)
    size = grammar_size()
    assert size["train_structures"] > 200 and size["heldout_structures"] > 200


def test_heldout_captions_never_appear_in_training_captions():
    train, held = _sample(False, 1), _sample(True, 2)
    assert len(set(train)) > 1000 and len(set(held)) > 1000  # compositional: many distinct sentences
    assert not set(train) & set(held)
    markers = heldout_markers()
    assert not [c for c in train if any(m in c for m in markers)]
    assert all(any(m in c for m in markers) for c in held)


def test_captions_are_distinct_per_pair_reproducible_by_seed_and_follow_the_slots():
    assert _sample(True, 5, 60) == _sample(True, 5, 60)
    assert _sample(True, 5, 60) != _sample(True, 6, 60)
    rng = np.random.default_rng(0)
    caps = change_captions(rng, "deforestation", lambda c: NAMES[c], 9, 13, 37, "south-west", False, 5)
    assert len(caps) == 5 == len(set(caps))
    assert all("{" not in c and "}" not in c for c in caps)
    assert amount(5).train != amount(37).train != amount(80).train
    # one land cover only: nothing names a second one
    one = change_captions(np.random.default_rng(1), "none", lambda c: NAMES[c], 2, -1, 0, "centre", True, 5)
    assert one and all(" and the  " not in c and not c.endswith(" and ") for c in one)


def test_archive_test_split_wording_is_disjoint_from_training_and_seeded(tmp_path):
    cfg = SimConfig(n=96, seed=21, size=12, bitemporal=1.0)
    items = [it for b in range(n_blocks(cfg)) for it in generate_block(cfg, b)]
    by_split: dict[str, set[str]] = {}
    for it in items:
        by_split.setdefault(it.meta["split"], set()).update(it.meta["change_captions"])
    assert by_split["test"] and by_split["train"]
    assert not by_split["test"] & (by_split["train"] | by_split.get("validation", set()))
    again = [it.meta["change_captions"] for b in range(n_blocks(cfg)) for it in generate_block(cfg, b)]
    assert again == [it.meta["change_captions"] for it in items]
    out = tmp_path / "a"
    assert cli_main(["simulate", "--n", "12", "--size", "12", "--out", str(out), "--bitemporal", "1",
                     "--change-captions", "2", "--workers", "1", "--quiet"]) == 0
    arch = open_archive(out)
    later = arch.catalog[arch.catalog["id"].str.endswith("_t2")]
    assert len(later) and all(len(c) == 2 for c in later["change_captions"])
    assert arch.manifest["info"]["change_grammar"] == GRAMMAR_VERSION == 3
