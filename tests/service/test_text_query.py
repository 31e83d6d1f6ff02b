"""Sentence -> label matching with synonyms, and the label-overlap ranking."""

from __future__ import annotations

import numpy as np

from rsir.data.nomenclature import BEN19, Nomenclature
from rsir.query.text import TextMatcher, match_labels


def test_examples_from_the_brief() -> None:
    assert match_labels("coniferous forest next to inland waters", BEN19) == ["Coniferous forest", "Inland waters"]
    assert match_labels("pine woods", BEN19) == ["Coniferous forest"]
    assert match_labels("A LAKE", BEN19) == ["Inland waters"]
    assert match_labels("river", BEN19) == ["Inland waters"]
    assert match_labels("city by the sea", BEN19) == ["Urban fabric", "Marine waters"]
    assert match_labels("farmland", BEN19) == ["Arable land"]
    assert match_labels("wetland", BEN19) == ["Inland wetlands"]
    assert match_labels("vineyard", BEN19) == ["Permanent crops"]
    assert match_labels("salt marsh", BEN19) == ["Coastal wetlands"]  # longest phrase wins over "marsh"
    assert match_labels("nothing useful here", BEN19) == []


def test_ambiguous_word_is_one_concept() -> None:
    m = TextMatcher(BEN19).match("forest and a lake")
    assert [c.phrase for c in m.concepts] == ["forest", "lake"]
    assert m.concepts[0].labels == ["Broad-leaved forest", "Coniferous forest", "Mixed forest"]


def test_rank_by_concepts_then_jaccard_then_position() -> None:
    nom = Nomenclature("toy", ("Coniferous forest", "Inland waters", "Arable land", "Urban fabric"))
    lab = np.array([
        [0, 0, 1, 0],  # 0: no concept
        [1, 0, 1, 1],  # 1: 1 concept, jaccard |{C}| / |{C,A,U,I}| = 1/4
        [1, 0, 0, 0],  # 2: 1 concept, jaccard 1/2
        [1, 1, 1, 0],  # 3: 2 concepts, jaccard 2/3
        [1, 1, 0, 0],  # 4: 2 concepts, jaccard 2/2
        [0, 1, 0, 0],  # 5: 1 concept, jaccard 1/2 (ties with 2: position decides)
    ], np.uint8)
    m = TextMatcher(nom)
    match = m.match("coniferous forest near inland waters")
    pos, sat, jac = m.rank(match, lab)
    assert pos.tolist() == [4, 3, 2, 5, 1]
    assert sat.tolist() == [2, 2, 1, 1, 1]
    np.testing.assert_allclose(jac, [1.0, 2 / 3, 0.5, 0.5, 0.25])
    cand = np.array([True, True, True, False, True, True])
    assert m.rank(match, lab, cand)[0].tolist() == [4, 2, 5, 1]


def test_other_nomenclature_matches_class_names_only_for_classes_it_has() -> None:
    nom = Nomenclature("eurosat", ("AnnualCrop", "Forest", "River", "SeaLake"))
    # synonyms of BigEarthNet classes not in this nomenclature are not used; class names are
    assert match_labels("a river near a forest", nom) == ["River", "Forest"]
    assert match_labels("farmland", nom) == []
