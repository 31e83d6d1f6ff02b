"""Text queries: match a sentence against the label nomenclature with synonyms, and choose who answers it.

A sentence is lower-cased and tokenised; phrases from the synonym table (and the class names themselves) are
matched longest first without overlap, so "coniferous forest" is one concept (Coniferous forest) while a bare
"forest" is a concept satisfied by any of the three forest classes. Items are ranked by the number of concepts
their labels satisfy, then by the Jaccard index between their labels and the union of matched labels, then by
archive position (the deterministic tie rule of the project).

With a text-image model (DUCH) the index can also rank by learned codes; :func:`text_route` decides, for one
sentence, which of the two answers (the hybrid: the matcher when it finds a class, the learned codes otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rsir.data.nomenclature import Nomenclature

# Synonyms of the BigEarthNet-19 classes. Each phrase maps to the classes it can mean; a phrase naming
# several classes is one concept that any of them satisfies.
_FORESTS = ("Broad-leaved forest", "Coniferous forest", "Mixed forest")
_SYNONYMS: dict[str, tuple[str, ...]] = {}


def _syn(classes: str | tuple[str, ...], *phrases: str) -> None:
    cls = (classes,) if isinstance(classes, str) else classes
    for p in phrases:
        _SYNONYMS[p] = cls


_syn("Urban fabric", "urban fabric", "urban", "city", "cities", "town", "towns", "village", "villages",
     "settlement", "settlements", "residential", "houses", "housing", "buildings", "suburb", "suburbs",
     "built-up", "built up area")
_syn("Industrial or commercial units", "industrial", "industry", "factory", "factories", "commercial",
     "warehouse", "warehouses", "industrial area", "industrial zone", "shopping", "port", "harbour", "harbor")
_syn("Arable land", "arable land", "arable", "farmland", "farm land", "cropland", "crop land", "crops",
     "fields", "field", "agricultural fields", "wheat", "maize", "corn", "cereal", "cereals", "ploughed",
     "plowed", "rice")
_syn("Permanent crops", "permanent crops", "vineyard", "vineyards", "vines", "orchard", "orchards",
     "olive grove", "olive groves", "olives", "fruit trees", "plantation", "plantations")
_syn("Pastures", "pastures", "pasture", "meadow", "meadows", "grazing", "grazing land", "pastureland")
_syn("Complex cultivation patterns", "complex cultivation patterns", "complex cultivation", "patchwork of fields",
     "mixed farming", "small fields", "allotments")
_syn("Land principally occupied by agriculture, with significant areas of natural vegetation",
     "agriculture with natural vegetation", "farmland with natural vegetation",
     "agriculture and natural vegetation", "farms and natural vegetation")
_syn("Agro-forestry areas", "agro-forestry", "agroforestry", "agro forestry", "dehesa", "montado")
_syn("Broad-leaved forest", "broad-leaved forest", "broad leaved forest", "broadleaf forest", "broadleaved",
     "broad-leaved", "broadleaf", "deciduous forest", "deciduous", "oak", "oaks", "beech", "birch",
     "oak forest", "beech forest", "deciduous woods")
_syn("Coniferous forest", "coniferous forest", "coniferous", "conifer", "conifers", "conifer forest", "pine",
     "pines", "pine woods", "pine forest", "spruce", "fir", "firs", "evergreen forest", "taiga")
_syn("Mixed forest", "mixed forest", "mixed woods", "mixed woodland")
_syn(_FORESTS, "forest", "forests", "woods", "wood", "woodland", "woodlands", "trees", "tree")
_syn("Natural grassland and sparsely vegetated areas", "natural grassland", "grassland", "grasslands",
     "steppe", "sparse vegetation", "sparsely vegetated", "bare rock", "rocks", "rocky", "prairie")
_syn("Moors, heathland and sclerophyllous vegetation", "moors", "moor", "moorland", "heath", "heaths",
     "heathland", "sclerophyllous", "maquis", "garrigue", "scrubland")
_syn("Transitional woodland, shrub", "transitional woodland", "shrub", "shrubs", "shrubland", "bushes",
     "bush", "scrub", "clear-cut", "clearcut", "young forest")
_syn("Beaches, dunes, sands", "beaches", "beach", "dunes", "dune", "sands", "sand", "sandy")
_syn("Inland wetlands", "inland wetlands", "inland wetland", "wetland", "wetlands", "marsh", "marshes",
     "swamp", "swamps", "bog", "bogs", "peat", "peatland", "peat bog", "fen", "fens", "mire")
_syn("Coastal wetlands", "coastal wetlands", "coastal wetland", "salt marsh", "salt marshes", "saltmarsh",
     "tidal flats", "tidal flat", "mudflats", "mudflat", "intertidal", "salines")
_syn("Inland waters", "inland waters", "inland water", "lake", "lakes", "river", "rivers", "reservoir",
     "reservoirs", "pond", "ponds", "stream", "streams", "canal", "canals", "freshwater")
_syn("Marine waters", "marine waters", "marine", "sea", "seas", "ocean", "oceans", "open water", "bay",
     "seawater", "offshore")
_syn(("Inland waters", "Marine waters"), "water", "waters", "water body", "water bodies")

_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


@dataclass
class Concept:
    """One matched phrase of the sentence and the classes that satisfy it."""

    phrase: str
    labels: list[str]


@dataclass
class TextMatch:
    """Result of matching a sentence: the concepts found and the union of their labels."""

    text: str
    concepts: list[Concept] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Union of the matched labels, in order of first mention."""
        out: list[str] = []
        for c in self.concepts:
            out.extend(lab for lab in c.labels if lab not in out)
        return out


class TextMatcher:
    """Matches sentences against one nomenclature (synonyms for the classes it has, plus the class names)."""

    def __init__(self, nomenclature: Nomenclature) -> None:
        self.nomenclature = nomenclature
        classes = set(nomenclature.classes)
        table: dict[tuple[str, ...], tuple[str, ...]] = {}
        for phrase, labs in _SYNONYMS.items():
            keep = tuple(lab for lab in labs if lab in classes)
            if keep:
                table[tuple(_tokens(phrase))] = keep
        # the class names themselves always match (also for nomenclatures other than BigEarthNet-19)
        for c in nomenclature.classes:
            toks = tuple(_tokens(c))
            if toks:
                table.setdefault(toks, (c,))
        self._table = table
        self._max_len = max((len(k) for k in table), default=1)

    def match(self, text: str) -> TextMatch:
        """Concepts in ``text``, longest phrases first, left to right, without overlapping tokens."""
        toks = _tokens(text)
        out = TextMatch(text)
        i = 0
        while i < len(toks):
            for n in range(min(self._max_len, len(toks) - i), 0, -1):
                labs = self._table.get(tuple(toks[i:i + n]))
                if labs is not None:
                    if not any(c.labels == list(labs) for c in out.concepts):
                        out.concepts.append(Concept(" ".join(toks[i:i + n]), list(labs)))
                    i += n
                    break
            else:
                i += 1
        return out

    def rank(self, match: TextMatch, label_matrix: np.ndarray, candidates: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions with at least one satisfied concept, best first: (positions, concepts satisfied, jaccard)."""
        n = label_matrix.shape[0]
        if not match.concepts or n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
        lab = label_matrix.astype(bool)
        satisfied = np.zeros(n, dtype=np.int64)
        for c in match.concepts:
            idx = [self.nomenclature.index(x) for x in c.labels]
            satisfied += lab[:, idx].any(axis=1)
        qvec = self.nomenclature.encode(match.labels).astype(bool)
        inter = (lab & qvec).sum(1)
        union = (lab | qvec).sum(1)
        jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        keep = satisfied > 0
        if candidates is not None:
            keep &= candidates
        pos = np.flatnonzero(keep)
        # lexsort: last key is primary -> concepts desc, jaccard desc, position asc
        order = np.lexsort((pos, -jac[pos], -satisfied[pos]))
        pos = pos[order]
        return pos, satisfied[pos], jac[pos]


def match_labels(text: str, nomenclature: Nomenclature) -> list[str]:
    """Labels named (directly or by a synonym) in a sentence."""
    return TextMatcher(nomenclature).match(text).labels


def known_phrases(nomenclature: Nomenclature) -> dict[str, Sequence[str]]:
    """Phrase -> labels table in use for a nomenclature (shown by the API for transparency)."""
    m = TextMatcher(nomenclature)
    return {" ".join(k): list(v) for k, v in sorted(m._table.items())}


TEXT_MODES = ("hybrid", "learned", "matcher")
"""How a text query is answered: ``hybrid`` (default) the label matcher when it finds a class name or synonym in
the sentence, else the learned codes; ``learned`` always the learned codes; ``matcher`` always the label matcher."""


def text_route(match: TextMatch, mode: str | None, has_model: bool) -> str:
    """Which part answers a sentence: ``"matcher"`` or ``"learned"``. ``mode`` is one of TEXT_MODES (None:
    hybrid). Without a text-image model the matcher answers in hybrid mode (the fallback); asking for ``learned``
    there is an error (ValueError), as is an unknown mode."""
    mode = mode or "hybrid"
    if mode not in TEXT_MODES:
        raise ValueError(f"unknown text mode {mode!r} (known: {', '.join(TEXT_MODES)})")
    if mode == "learned" and not has_model:
        raise ValueError("text mode 'learned' needs an index built with a text-image model "
                         "(rsir index --model DUCH_MODEL); this one has none")
    if mode == "matcher" or not has_model:
        return "matcher"
    return "matcher" if mode == "hybrid" and match.labels else "learned"
