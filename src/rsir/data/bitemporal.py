"""Bitemporal image pairs: LEVIR-CD / DSIFN change detection (A/ B/ label/) and LEVIR-CC change captions.

Every pair ``<name>`` becomes two items, ``<name>_A`` (earlier image) and ``<name>_B`` (later image), whose
``partner_id`` columns point at each other; both carry ``pair_id`` = <name>, ``epoch`` = A or B and the split.
The change itself -- the mask of LEVIR-CD / DSIFN and the five change captions of LEVIR-CC -- is stored once, on
the B item: the ``mask`` modality (band ``change``, uint8 0/1, any non-zero label pixel is change) and the
``captions`` column. A text query thus finds one item per pair and reaches the earlier image through
``partner_id``. Both items carry the ``change_fraction`` column (share of changed pixels; NaN without a mask).

Pictures are ``rgb`` (R, G, B uint8) at ``--option size`` pixels (default 256, the LEVIR tiles' size); a picture
of another size is resized with PIL's bilinear filter and its mask with nearest neighbour, and ``native_height`` /
``native_width`` record the original size. RGBA pictures lose their alpha channel.

LEVIR-CD / DSIFN: ``<root>/{A,B,label}/<name>.png`` and optionally ``list/<split>.txt``; the split comes from
``list/train.txt``, ``val.txt``, ``test.txt`` when present, else from a ``train_``/``val_``/``test_`` name
prefix (LEVIR-CD crops), else it is empty. ``--option list=NAME`` keeps only the pairs named in list/NAME.txt.
A pair whose B picture is missing, or whose pictures are unreadable, is an item error naming the file.

LEVIR-CC: ``levir_cc_captions.json`` (``{"<name>.png": {"split", "sentences": [...]}}``), the split lists
``train.txt``/``val.txt``/``test.txt`` and ``vocab.json``. Pictures are looked for in ``--option images=DIR``,
``<root>/images``, ``<root>/example_pair`` and ``<root>`` itself, as ``A/<name>`` and ``B/<name>`` or
``<split>/A/<name>`` (the published Levir-CC-dataset/images layout); pairs without pictures are caption-only
(no arrays).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rsir.data.formats import Arrays, Source, SourceItem
from rsir.data.imageio import IMAGE_SUFFIXES, image_size, mask_spec, read_mask, read_rgb, rgb_spec
from rsir.data.nomenclature import Nomenclature
from rsir.data.options import ReaderOption
from rsir.errors import FormatError, ItemError

UNLABELLED = Nomenclature("none", ())
SPLITS = {"train": "train", "val": "validation", "test": "test"}


def _images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.name: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def _read_list(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: unreadable ({e})") from None


_SIZE = ReaderOption("size", "int", "picture size in pixels (resized bilinear, masks nearest)", 256, minimum=1)
CD_OPTIONS = (_SIZE, ReaderOption("list", "str", "keep only the pairs named in list/NAME.txt"),
              ReaderOption("captions", "str", "mask: describe each pair's change in sentences derived from its "
                           "change mask (how much changed), for text <-> pair search without human captions"),
              ReaderOption("what", "str", "what changes, for captions=mask (e.g. buildings for LEVIR-CD)"))


def mask_captions(fraction: float, what: str = "") -> list[str]:
    """Sentences derived from a change mask's changed share (NOT human captions; ``--option captions=mask``)."""
    pct = int(round(100 * fraction))
    thing = what.strip() or "land cover"
    if fraction <= 0.0:
        return ["no change between the two images", "the two images show the same scene",
                f"the {thing} did not change"]
    size = "small" if fraction < 0.05 else ("large" if fraction >= 0.25 else "moderate")
    return [f"{size} changes in the {thing}", f"the {thing} changed on about {pct} percent of the image",
            f"{'a few' if size == 'small' else 'many'} changed areas, about {pct} percent of the image"]
CC_OPTIONS = (_SIZE, ReaderOption("images", "dir", "folder with the pictures (A/ and B/, or <split>/A/ ...); "
                                  "default: images/ or example_pair/ beside the captions"))


def _size(options: dict[str, Any]) -> int:
    return int(options.get("size") or 256)


def _pair_items(name: str, split: str, a: Path | None, b: Path | None, label: Path | None, size: int,
                extra: dict[str, Any], captions: list[str] | None = None, mask_what: str | None = None
                ) -> Iterator[SourceItem]:
    """The A and B items of one pair; pixels (and the mask) are read when the B item loads."""
    stem = Path(name).stem
    ida, idb = f"{stem}_A", f"{stem}_B"
    state: dict[str, Any] = {}

    def load_pair() -> dict[str, Any]:
        if not state:
            if a is None or b is None:
                missing = "A" if a is None else "B"
                raise ItemError(idb if a is not None else ida, f"pair {stem!r} has no {missing} picture",
                                str(a or b))
            state["A"] = read_rgb(a, size, ida)
            state["B"] = read_rgb(b, size, idb)
            state["native_A"] = image_size(a, ida)
            state["native_B"] = image_size(b, idb)
            state["mask"] = read_mask(label, size, idb) if label is not None else None
        return state

    base = {"split": split, "pair_id": stem, **extra}

    def meta(epoch: str, partner: str, path: Path | None) -> dict[str, Any]:
        m = {**base, "epoch": epoch, "partner_id": partner, "source": str(path) if path else "",
             "has_image": path is not None, "change_fraction": math.nan, "native_height": 0, "native_width": 0}
        if epoch == "B":
            m["captions"] = list(captions or [])
        return m

    meta_a, meta_b = meta("A", idb, a), meta("B", ida, b)
    images = a is not None or b is not None

    def finish(m: dict[str, Any], st: dict[str, Any], epoch: str) -> None:
        # ingest writes meta after load(), so the values known only from the pixels are filled in here
        m["native_height"], m["native_width"] = st[f"native_{epoch}"]
        if st["mask"] is not None:
            m["change_fraction"] = float(st["mask"].mean())
            if mask_what is not None and epoch == "B":
                m["captions"] = mask_captions(m["change_fraction"], mask_what)

    def load_a() -> Arrays:
        if not images:
            return {}
        st = load_pair()
        finish(meta_a, st, "A")
        return {"rgb": st["A"]}

    def load_b() -> Arrays:
        if not images:
            return {}
        st = load_pair()
        finish(meta_b, st, "B")
        out: Arrays = {"rgb": st["B"]}
        if st["mask"] is not None:
            out["mask"] = {"change": st["mask"]}
        return out

    yield SourceItem(ida, meta_a, load_a)
    yield SourceItem(idb, meta_b, load_b)


def read_levir_cd(root: Path, options: dict[str, Any]) -> Source:
    """Items of a LEVIR-CD / DSIFN folder (A/, B/, label/, optional list/): two per pair."""
    root = Path(root)
    if not (root / "A").is_dir() or not (root / "B").is_dir():
        raise FormatError(f"{root}: not a change-detection folder (expected subfolders A/ and B/ of pictures)")
    size = _size(options)
    a_imgs, b_imgs, labels = _images(root / "A"), _images(root / "B"), _images(root / "label")
    names = sorted(set(a_imgs) | set(b_imgs))
    split_of: dict[str, str] = {}
    for sp, norm in SPLITS.items():
        lp = root / "list" / f"{sp}.txt"
        if lp.exists():
            for n in _read_list(lp):
                split_of[n] = norm
    if options.get("list"):
        lp = root / "list" / f"{options['list']}.txt"
        if not lp.exists():
            raise FormatError(f"--option list={options['list']}: {lp} not found")
        keep = set(_read_list(lp))
        unknown = sorted(keep - set(names))
        if unknown:
            raise FormatError(f"{lp}: lists pairs with no picture in A/ or B/: {unknown[:5]}")
        names = [n for n in names if n in keep]
    if not names:
        raise FormatError(f"{root}: no pictures in A/ or B/")

    cap = options.get("captions")
    if cap not in (None, "", "mask"):
        raise FormatError(f"--option captions={cap}: the only caption source of a change-detection folder is "
                          "'mask' (sentences derived from the change masks)")
    mask_what = str(options.get("what") or "") if cap == "mask" else None

    def split(n: str) -> str:
        if n in split_of:
            return split_of[n]
        head = n.split("_", 1)[0].lower()
        return SPLITS.get(head, "") if "_" in n else ""

    def items() -> Iterator[SourceItem]:
        for n in names:
            yield from _pair_items(n, split(n), a_imgs.get(n), b_imgs.get(n), labels.get(n), size, {},
                                   mask_what=mask_what)

    specs = [rgb_spec(size, description="bitemporal picture"), mask_spec(size)]
    return Source("levir-cd", specs, UNLABELLED, items(), 2 * len(names),
                  info={"image_size": size, "pairs": len(names), "change_stored_on": "B item",
                        "captions": "derived from the change masks (not human)" if mask_what is not None else "none",
                        "with_label": sum(1 for n in names if n in labels)})


def _find_pair_images(bases: list[Path]) -> dict[str, tuple[Path | None, Path | None]]:
    found: dict[str, tuple[Path | None, Path | None]] = {}
    for base in bases:
        for sub in [base] + [base / s for s in SPLITS]:
            a, b = _images(sub / "A"), _images(sub / "B")
            for n in set(a) | set(b):
                found.setdefault(n, (a.get(n), b.get(n)))
    return found


def read_levir_cc(root: Path, options: dict[str, Any]) -> Source:
    """Items of LEVIR-CC: two per pair, the five change captions on the B item, pictures when present."""
    root = Path(root)
    jpath = root / "levir_cc_captions.json" if root.is_dir() else root
    folder = jpath.parent
    if not jpath.exists():
        raise FormatError(f"{root}: levir_cc_captions.json not found (LEVIR-CC layout)")
    try:
        data = json.loads(jpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(f"{jpath}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{jpath}: expected an object mapping pair file names to {{split, sentences}}")
    split_of: dict[str, str] = {}
    for sp, norm in SPLITS.items():
        lp = folder / f"{sp}.txt"
        if lp.exists():
            for n in _read_list(lp):
                split_of[n] = norm
    records: list[tuple[str, str, list[str]]] = []
    for name, rec in data.items():
        if not isinstance(rec, dict) or not isinstance(rec.get("sentences"), list):
            raise FormatError(f"{jpath}: entry {name!r} lacks a 'sentences' list")
        sp = str(rec.get("split", "")).lower()
        json_split = SPLITS.get(sp, sp)
        if name in split_of and json_split and split_of[name] != json_split:
            raise FormatError(f"{jpath}: {name!r} is in split {sp!r} but listed in "
                              f"{[k for k, v in SPLITS.items() if v == split_of[name]][0]}.txt")
        caps = [str(s).strip() for s in rec["sentences"] if str(s).strip()]
        records.append((str(name), split_of.get(name, json_split), caps))
    vocab_size = 0
    if (folder / "vocab.json").exists():
        try:
            vocab_size = len(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise FormatError(f"{folder / 'vocab.json'}: not valid JSON ({e})") from None
    size = _size(options)
    bases = ([Path(options["images"]).expanduser()] if options.get("images") else []) + \
        [folder / "images", folder / "example_pair", folder]
    pics = _find_pair_images([b for b in bases if b.is_dir()])

    def items() -> Iterator[SourceItem]:
        for name, sp, caps in records:
            a, b = pics.get(name, (None, None))
            yield from _pair_items(name, sp, a, b, None, size, {}, caps)

    with_pics = sum(1 for n, _, _ in records if n in pics)
    return Source("levir-cc", [rgb_spec(size, description="bitemporal picture")], UNLABELLED, items(),
                  2 * len(records), info={"image_size": size, "pairs": len(records), "pairs_with_images": with_pics,
                                          "vocab_size": vocab_size, "captions_stored_on": "B item"})

