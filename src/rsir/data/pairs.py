"""Bitemporal pairs of an archive: which item is before, which after, and the sentences describing the change.

Two archive layouts hold pairs, both linked by the ``partner_id`` column:

* the simulator: ``<id>`` and its later partner ``<id>_t2``; the order comes from the ``date`` column and the
  change is described by the later item's ``change_captions`` (its ``captions`` describe its land cover);
* LEVIR-CD / DSIFN / LEVIR-CC (:mod:`rsir.data.bitemporal`): ``<name>_A`` and ``<name>_B`` with ``epoch`` A/B and
  ``pair_id``; the change captions of LEVIR-CC sit in the B item's ``captions``.

A pair is keyed by its ``pair_id`` (LEVIR) or by the earlier item's id (simulator). A pair whose order cannot be
told (no epoch, a date missing, unreadable or equal) is a :class:`PairError` naming it; so is a pair whose two
images differ in bands or size (:func:`check_pair_images`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir.errors import ItemError, RsirError

if TYPE_CHECKING:
    from rsir.data.archive import Archive


class PairError(ItemError):
    """A bitemporal pair that cannot be used (order unknown, images that do not match)."""

    def __init__(self, pair: str, problem: str) -> None:
        RsirError.__init__(self, f"pair {pair!r}: {problem}")
        self.item, self.pair, self.problem, self.path = pair, pair, problem, None


@dataclass(frozen=True)
class Pair:
    """One bitemporal pair: ids and archive positions of both dates, its split and its change captions."""

    pair_id: str
    before: str
    after: str
    before_pos: int
    after_pos: int
    split: str
    captions: tuple[str, ...] = ()
    has_images: bool = True
    info: dict[str, Any] = field(default_factory=dict, compare=False)


def _strings(v: Any) -> list[str]:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return []
    if isinstance(v, str):
        return [v] if v.strip() else []
    return [str(s) for s in v if s is not None and str(s).strip()]


def _date(v: Any) -> date | None:
    if v is None or (isinstance(v, float) and np.isnan(v)) or not str(v).strip():
        return None
    try:
        return date.fromisoformat(str(v)[:10])
    except ValueError:
        return None


def _order(pair: str, a: dict[str, Any], b: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(earlier, later) of two partner rows, by epoch A/B or else by date."""
    ea, eb = str(a.get("epoch") or "").upper(), str(b.get("epoch") or "").upper()
    if {ea, eb} == {"A", "B"}:
        return (a, b) if ea == "A" else (b, a)
    da, db = _date(a.get("date")), _date(b.get("date"))
    if da is None or db is None:
        missing = ", ".join(str(r["id"]) for r, d in ((a, da), (b, db)) if d is None)
        raise PairError(pair, f"cannot tell before from after: no epoch A/B and no readable date for {missing}")
    if da == db:
        raise PairError(pair, f"cannot tell before from after: both images are dated {da.isoformat()}")
    return (a, b) if da < db else (b, a)


def bitemporal_pairs(archive: Archive, split: str | None = None, modality: str | None = None) -> list[Pair]:
    """Every pair of the archive (of one split, if given), in the archive order of the earlier item.

    ``has_images`` tells whether both items hold ``modality`` (default: the archive's first image modality;
    caption-only LEVIR-CC pairs have none)."""
    cat = archive.catalog
    if "partner_id" not in cat.columns:
        return []
    mod = modality or (archive.primary_modality if archive.modalities else None)
    cols = [c for c in ("id", "split", "date", "epoch", "pair_id", "partner_id", "captions", "change_captions",
                        "change_kind", "prior_change", "modalities") if c in cat.columns]
    rows = cat[cols].to_dict("records")
    pos = {str(r["id"]): p for p, r in enumerate(rows)}
    out: list[Pair] = []
    seen: set[str] = set()
    for r in rows:
        iid, partner = str(r["id"]), str(r.get("partner_id") or "")
        if not partner or iid in seen:
            continue
        q = pos.get(partner)
        name = str(r.get("pair_id") or "") or iid
        if q is None:
            raise PairError(name, f"item {iid} names partner {partner}, which is not in the archive")
        seen.update((iid, partner))
        first, second = _order(name, r, rows[q])
        pair_id = str(first.get("pair_id") or "") or str(first["id"])
        sp = str(second.get("split") or "")
        if split is not None and sp != split:
            continue
        caps = _strings(second.get("change_captions")) if "change_captions" in cols else []
        if not caps and "change_captions" not in cols:
            caps = _strings(second.get("captions"))
        mods_a, mods_b = (set(_strings(x.get("modalities"))) for x in (first, second))
        has = mod is not None and mod in mods_a and mod in mods_b
        info = {"kind": str(second.get("change_kind") or ""), "prior": str(second.get("prior_change") or ""),
                "before_date": str(first.get("date") or ""),
                "after_date": str(second.get("date") or "")}
        out.append(Pair(pair_id, str(first["id"]), str(second["id"]), pos[str(first["id"])],
                        pos[str(second["id"])], sp, tuple(caps), has, info))
    out.sort(key=lambda x: x.before_pos)
    return out


def check_pair_images(pair: str, before: np.ndarray, after: np.ndarray) -> None:
    """Both dates of a pair must have the same bands and size: a PairError naming the pair otherwise."""
    if before.ndim != 3 or after.ndim != 3:
        raise PairError(pair, f"expected two C x H x W images, got shapes {before.shape} and {after.shape}")
    if before.shape[0] != after.shape[0]:
        raise PairError(pair, f"the images have {before.shape[0]} and {after.shape[0]} bands")
    if before.shape[1:] != after.shape[1:]:
        raise PairError(pair, f"the images differ in size: {before.shape[1]}x{before.shape[2]} and "
                              f"{after.shape[1]}x{after.shape[2]} pixels")
    for what, x in (("before", before), ("after", after)):
        if not np.isfinite(x).all():
            raise PairError(pair, f"the {what} image holds NaN or infinite values")
