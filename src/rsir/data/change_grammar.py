"""Change captions of the simulator's bitemporal pairs: a small compositional grammar (issue 15).

A caption is a FRAME wrapped around a CLAUSE. The clause states the event (or that nothing changed) with the land
covers filled in: ``{src}`` (before), ``{dst}`` (after; for an unchanged pair the patch's second land cover, or the
outcome of an earlier event) and ``{amt}`` (how much of ``{src}``, from the changed share). The frame adds where
the change lies (``{loc}``: a compass direction of the changed area, or "centre"), its size (``{pct}``) or the
time (between the dates); frames of unchanged pairs add the land covers that stayed (``{covers}``).

Every piece has a TRAIN part and a HELDOUT part: training and validation pairs are described with TRAIN frames,
clauses and amount words only. A test-split caption combines TRAIN and HELDOUT pieces so that it always holds
at least one HELDOUT frame or clause: its structure or its wording was never seen in training, while each piece
has training siblings that say the same thing (the held-out sentences lie within the span of the training ones).
The words are our own; the real LEVIR-CC corpus (../shared/data/levir-cc) was read for how people describe a
change (what appeared or disappeared, where, how much) and its absence, not copied.

Land-cover names come from the simulator's phrase lists (its training synonyms for every split).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# 1: five fixed sentences per kind (3 held out); 2: frames x clauses x amounts; 3: the simulator's events start from
# several earlier land covers each (rsir.data.simulate._change) and clauses name forest cleared for fields
GRAMMAR_VERSION = 3


@dataclass(frozen=True)
class Bank:
    """The TRAIN and HELDOUT pieces of one kind of piece."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]


# {amt}: how much of the earlier land cover changed, by the changed share of the patch in percent
AMOUNTS: tuple[tuple[int, Bank], ...] = (
    (10, Bank(("a small part of", "a little of", "a corner of"), ("a sliver of",))),
    (25, Bank(("some of", "part of", "a patch of"), ("a portion of",))),
    (50, Bank(("much of", "a large part of", "a big block of"), ("a sizeable share of",))),
    (101, Bank(("most of", "nearly all of", "almost the whole of"), ("the bulk of",))),
)

CLAUSES: dict[str, Bank] = {
    "deforestation": Bank(
        ("{amt} the {src} has been cleared", "{amt} the {src} was cut down", "trees were felled in the {src}",
         "a clearing has appeared in the {src}", "the {src} was logged and {dst} is left",
         "{dst} now grows where the {src} stood", "forest loss: {amt} the {src} is gone",
         "the {src} was thinned out by logging", "loggers removed {amt} the {src}",
         "the {src} was cleared to make room for {dst}"),
        ("{amt} the {src} was chopped down", "the woods were stripped, leaving {dst}",
         "timber harvesting opened a gap in the {src}", "the tree cover of the {src} vanished in places",
         "{dst} took over the felled {src}")),
    "urban growth": Bank(
        ("new buildings were constructed on the {src}", "{dst} has been built on {amt} the {src}",
         "houses appear on the former {src}", "the built-up area expanded into the {src}",
         "construction replaced {amt} the {src}", "a block of {dst} appeared where there was {src}",
         "new roads and buildings cover {amt} the {src}", "the {src} gave way to {dst}"),
        ("a housing development now occupies {amt} the {src}", "the town spread over the {src}",
         "buildings went up on the {src}", "the {src} was paved over for {dst}")),
    "flooding": Bank(
        ("the {src} has been flooded", "water now covers {amt} the {src}", "{amt} the {src} is under water",
         "a flood inundated the {src}", "the river burst its banks over the {src}",
         "standing water appeared on the {src}", "the {src} was flooded and became {dst}"),
        ("floodwater submerged {amt} the {src}", "the {src} is drowned by high water",
         "the low ground of the {src} filled with water")),
    "crop change": Bank(
        ("the {src} was turned into {dst}", "{src} became {dst}", "the fields changed from {src} to {dst}",
         "{amt} the {src} was converted to {dst}", "{dst} replaced {amt} the {src}",
         "a different land use: {dst} instead of {src}", "the farmland changed: {src} is now {dst}"),
        ("the farmers switched from {src} to {dst}", "{dst} is grown where {src} was before",
         "the {src} made way for {dst}")),
    "water loss": Bank(
        ("the {src} has shrunk", "{amt} the {src} dried out and became {dst}", "the water level of the {src} dropped",
         "the shore of the {src} moved inwards", "{dst} replaced {amt} the {src}",
         "the {src} lost water and {dst} appeared on its edge", "the {src} became smaller"),
        ("the {src} is receding", "drought left {amt} the {src} dry",
         "the water of the {src} retreated, exposing {dst}")),
    "none": Bank(
        ("nothing has changed", "no change took place", "the two images show the same scene",
         "the scene did not change", "both dates look the same", "there is no change at all",
         "the {src} is unchanged", "the {src} and the {dst} stayed the same",
         "the {src} and the {dst} look as before"),
        ("nothing was altered", "the {src} and the {dst} remain as they were", "no visible change",
         "the landscape is untouched")),
}

# frames of changed pairs ({c}: the clause)
FRAMES = Bank(
    ("{c}", "{c} in the {loc}", "in the {loc}, {c}", "{c}, about {pct} percent of the patch",
     "between the two dates {c}", "{c} in the {loc} of the image", "in the later image {c}"),
    ("{c} towards the {loc}", "compared with the first image, {c}", "{c}, roughly {pct} % of the scene",
     "looking at the {loc}: {c}"))
# frames of unchanged pairs: a clause naming no land cover gets the covers that stayed
FRAMES_NONE = Bank(
    ("{c}: {covers}", "{c} in this area of {covers}", "{covers}, {c}", "{covers} at both dates: {c}"),
    ("{c} across the {covers}", "{covers} just as before, {c}"))
FRAMES_NONE_NAMED = Bank(("{c}", "between the two dates {c}"), ("{c} since the first image",))


def amount(pct: int) -> Bank:
    """The amount words of a changed share in percent."""
    return next(b for top, b in AMOUNTS if pct < top)


def _fill(template: str, **kw: str) -> str:
    for k, v in kw.items():
        template = template.replace("{" + k + "}", v)
    return template


def change_captions(rng: np.random.Generator, kind: str, name: Callable[[int], str], src: int, dst: int,
                    pct: int, loc: str, heldout: bool, k: int) -> list[str]:
    """Up to k distinct captions of one pair's event.

    ``name(c)``: a land-cover phrase of class c without its article (a fresh synonym per call); src/dst < 0: none
    (an unchanged pair with one land cover: clauses and frames naming {dst} are left out). ``heldout``: the test
    split's wording (every caption holds a HELDOUT frame or clause), else TRAIN pieces only."""
    out: list[str] = []
    for _ in range(8 * k):
        if len(out) == k:
            break
        cap = _one(rng, kind, name, src, dst, pct, loc, heldout)
        if cap not in out:
            out.append(cap)
    return out


def _pick(rng: np.random.Generator, pool: tuple[str, ...], ok: Callable[[str], bool] = lambda t: True) -> str:
    cand = [t for t in pool if ok(t)]
    return cand[int(rng.integers(len(cand)))]


def _one(rng: np.random.Generator, kind: str, name: Callable[[int], str], src: int, dst: int, pct: int, loc: str,
         heldout: bool) -> str:
    # test captions: a held-out frame, a held-out clause, or both (one third each)
    part = int(rng.integers(3)) if heldout else -1
    held_clause, held_frame = part in (1, 2), part in (0, 2)
    has_dst = dst >= 0
    clauses = CLAUSES[kind]
    fits = [t for t in (clauses.heldout if held_clause else clauses.train) if has_dst or "{dst}" not in t]
    if not fits and held_clause:  # no held-out clause without {dst}: a training clause in a held-out frame
        held_clause, held_frame = False, True
        fits = [t for t in clauses.train if "{dst}" not in t]
    if not fits:
        raise ValueError(f"no {kind!r} clause names a single land cover")
    clause = _pick(rng, tuple(fits))
    amt = _pick(rng, amount(pct).heldout if held_clause and "{amt}" in clause else amount(pct).train)
    names = {"src": name(src) if src >= 0 else "", "dst": name(dst) if has_dst else ""}
    c = _fill(clause, amt=amt, **names)
    if kind == "none":
        if "{src}" in clause:
            bank = FRAMES_NONE_NAMED
        else:
            bank = FRAMES_NONE
        frame = _pick(rng, bank.heldout if held_frame else bank.train)
        covers = f"{name(src)} and {name(dst)}" if has_dst else f"{name(src)} only"
        return _fill(frame, c=c, covers=covers)
    frame = _pick(rng, FRAMES.heldout if held_frame else FRAMES.train)
    return _fill(frame, c=c, loc=loc, pct=str(pct))


def _pieces(held: bool) -> list[str]:
    banks = [*CLAUSES.values(), FRAMES, FRAMES_NONE, FRAMES_NONE_NAMED] + [b for _, b in AMOUNTS]
    return [t for b in banks for t in (b.heldout if held else b.train)]


def _fragments(template: str) -> list[str]:
    text = _fill(template, c="|", src="|", dst="|", amt="|", loc="|", pct="|", covers="|")
    return [f.strip(" ,:;") for f in text.split("|") if f.strip(" ,:;")]


def heldout_markers() -> list[str]:
    """Fixed text of the HELDOUT frames and clauses that no TRAIN piece contains (for tests: every test caption
    holds one, no training caption does)."""
    train = " | ".join(f for t in _pieces(False) for f in _fragments(t))
    return sorted({f for t in _pieces(True) for f in _fragments(t) if len(f) >= 6 and f not in train})


def grammar_size() -> dict[str, int]:
    """Number of (frame, clause) structures per wording, before land covers, amounts and places are filled in."""
    tr = sum(len(b.train) for k, b in CLAUSES.items() if k != "none") * len(FRAMES.train)
    ho = sum(len(list(itertools.product(*p))) for p in (
        (FRAMES.heldout, [t for k, b in CLAUSES.items() if k != "none" for t in b.train]),
        (FRAMES.train, [t for k, b in CLAUSES.items() if k != "none" for t in b.heldout]),
        (FRAMES.heldout, [t for k, b in CLAUSES.items() if k != "none" for t in b.heldout])))
    return {"train_structures": tr, "heldout_structures": ho}
