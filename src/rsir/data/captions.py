"""Remote-sensing caption corpora (UCM-captions, Sydney-captions, RSICD, RSITMD) in their published layouts.

Three layouts are read:

* dataset JSON (``dataset_rsicd.json`` style, Karpathy's layout): ``{"images": [{"filename", "split",
  "sentences": [{"raw", "tokens", ...}]}]}``; split ``val`` becomes ``validation`` and ``restval`` ``train``.
* COCO caption JSON (e.g. ``data_train_UCM.json``): ``{"images": [{"id", "file_name"}], "annotations":
  [{"image_id", "caption"}]}``; the split is taken from the file name (``train``/``val``/``test`` token) or
  ``--option split=NAME``. A folder of such files is read file by file.
* AMFMN "precomp" text: ``<split>_caps.txt`` (one caption per line) with ``<split>_filename.txt``. Training
  files list each image once and caption i belongs to image line i // 5; test files list the file name once per
  caption (five equal consecutive lines). Both cases are handled by the ratio of the line counts. Sydney's
  alternative ``*_verify`` split (train/val re-split of its training images) is read with ``--option verify=true``.
  A folder holding several ``*_precomp`` folders needs ``--option dataset=ucm`` (or rsicd, sydney, rsitmd).

An item is one image, id = its file name without extension (the file name when stems collide), with its
captions (blank ones dropped) in the ``captions`` column. With ``--option images=DIR`` the archive declares an
``rgb`` modality (R, G, B uint8) and items whose picture is found carry it, resized to ``--option size`` (default
224) with PIL's bilinear filter (antialiased when shrinking); items without a picture keep their captions only.
The picture is looked up as DIR/<dataset>/<file> (when that folder exists), DIR/<file>, then anywhere under DIR
(an ambiguous name is an error). Without ``images`` the archive has no image modality. When every file name has
the form ``<class>_<n>.<ext>`` (RSICD, RSITMD) the class becomes the item's label (``--option labels=none``
turns this off).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsir.data.formats import Arrays, Source, SourceItem
from rsir.data.imageio import IMAGE_SUFFIXES, read_rgb, rgb_spec
from rsir.data.nomenclature import Nomenclature
from rsir.data.options import ReaderOption
from rsir.errors import FormatError

SPLIT_NAMES = {"train": "train", "restval": "train", "val": "validation", "validation": "validation",
               "test": "test", "": ""}
_CLASS_NAME = re.compile(r"^([A-Za-z]+)_\d+\.\w+$")
KNOWN = ("ucm", "sydney", "rsicd", "rsitmd")


@dataclass
class CaptionRecord:
    """One image of a caption corpus: file name, split, captions and where they were read."""

    filename: str
    split: str
    captions: list[str] = field(default_factory=list)
    source: str = ""


def _split(name: str, where: str) -> str:
    s = str(name).strip().lower()
    if s not in SPLIT_NAMES:
        raise FormatError(f"{where}: unknown split {name!r} (expected train, val, test or restval)")
    return SPLIT_NAMES[s]


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not valid JSON ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: unreadable ({e})") from None


def _split_from_filename(path: Path) -> str:
    for tok in re.split(r"[^a-z]+", path.stem.lower()):
        if tok in ("train", "val", "test", "restval"):
            return SPLIT_NAMES[tok]
    return ""


def parse_caption_json(path: Path, split: str | None = None) -> list[CaptionRecord]:
    """Records of a dataset JSON (Karpathy layout) or a COCO caption JSON."""
    d = _load_json(path)
    if not isinstance(d, dict) or not isinstance(d.get("images"), list):
        raise FormatError(f"{path}: not a caption JSON (expected an object with an 'images' list)")
    out: list[CaptionRecord] = []
    if "annotations" in d:
        default = _split(split, str(path)) if split else _split_from_filename(path)
        by_id: dict[Any, CaptionRecord] = {}
        for k, im in enumerate(d["images"]):
            if not isinstance(im, dict) or "file_name" not in im or "id" not in im:
                raise FormatError(f"{path}: images[{k}] lacks 'file_name' or 'id' (COCO layout)")
            rec = CaptionRecord(str(im["file_name"]), default, [], str(path))
            by_id[im["id"]] = rec
            out.append(rec)
        for k, an in enumerate(d["annotations"]):
            if not isinstance(an, dict) or "image_id" not in an or "caption" not in an:
                raise FormatError(f"{path}: annotations[{k}] lacks 'image_id' or 'caption'")
            if an["image_id"] not in by_id:
                raise FormatError(f"{path}: annotations[{k}] refers to unknown image id {an['image_id']!r}")
            by_id[an["image_id"]].captions.append(str(an["caption"]))
        return out
    for k, im in enumerate(d["images"]):
        if not isinstance(im, dict) or "filename" not in im or not isinstance(im.get("sentences"), list):
            raise FormatError(f"{path}: images[{k}] lacks 'filename' or a 'sentences' list (dataset JSON layout)")
        caps = []
        for j, s in enumerate(im["sentences"]):
            if isinstance(s, dict) and "raw" in s:
                caps.append(str(s["raw"]))
            elif isinstance(s, dict) and "tokens" in s:
                caps.append(" ".join(map(str, s["tokens"])))
            elif isinstance(s, str):
                caps.append(s)
            else:
                raise FormatError(f"{path}: images[{k}].sentences[{j}] has no 'raw' text")
        sp = _split(im.get("split", split or ""), f"{path}: images[{k}]")
        out.append(CaptionRecord(str(im["filename"]), sp, caps, str(path)))
    return out


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: unreadable ({e})") from None


def parse_precomp(folder: Path, verify: bool = False) -> list[CaptionRecord]:
    """Records of an AMFMN precomp folder (``<split>_caps.txt`` + ``<split>_filename.txt``)."""
    suffix = "_verify" if verify else ""
    out: list[CaptionRecord] = []
    found = False
    for sp in ("train", "val", "test"):
        caps_f, names_f = folder / f"{sp}_caps{suffix}.txt", folder / f"{sp}_filename{suffix}.txt"
        if verify and sp == "test" and not caps_f.exists():
            caps_f, names_f = folder / "test_caps.txt", folder / "test_filename.txt"
        if not caps_f.exists():
            continue
        if not names_f.exists():
            raise FormatError(f"{caps_f}: no matching {names_f.name} beside it")
        found = True
        caps, names = _read_lines(caps_f), _read_lines(names_f)
        while names and not names[-1].strip():
            names.pop()
        if not names or len(caps) % len(names):
            raise FormatError(f"{caps_f}: {len(caps)} captions do not divide evenly over the {len(names)} lines of "
                              f"{names_f.name}")
        div = len(caps) // len(names)
        recs: dict[str, CaptionRecord] = {}
        for i, cap in enumerate(caps):
            name = names[i // div].strip()
            if not name:
                raise FormatError(f"{names_f}: line {i // div + 1} is empty")
            rec = recs.get(name)
            if rec is None:
                rec = recs[name] = CaptionRecord(name, SPLIT_NAMES[sp], [], str(caps_f))
                out.append(rec)
            elif rec is not out[-1]:
                raise FormatError(f"{names_f}: {name!r} appears again at line {i // div + 1}, apart from its "
                                  f"first group of lines")
            rec.captions.append(cap)
    if not found:
        raise FormatError(f"{folder}: no <split>_caps{suffix}.txt files (precomp layout)")
    return out


def _dataset_name(path: Path, options: dict[str, Any]) -> str:
    if options.get("dataset"):
        return str(options["dataset"]).lower()
    s = path.name.lower()
    for k in KNOWN:
        if k in s:
            return k
    return ""


def collect_records(root: Path, options: dict[str, Any]) -> tuple[str, list[CaptionRecord]]:
    """(dataset name, records) of any of the supported layouts at ``root``."""
    verify = bool(options.get("verify", False))
    split = options.get("split")
    if root.is_file():
        return _dataset_name(root, options), parse_caption_json(root, split)
    if any(root.glob("*_caps*.txt")):
        return _dataset_name(root, options), parse_precomp(root, verify)
    subs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith("_precomp"))
    if subs:
        want = str(options.get("dataset") or "").lower()
        if not want and len(subs) == 1:
            return _dataset_name(subs[0], options), parse_precomp(subs[0], verify)
        pick = [p for p in subs if p.name.lower() in (want, f"{want}_precomp")]
        if not pick:
            names = ", ".join(p.name.removesuffix("_precomp") for p in subs)
            raise FormatError(f"{root}: holds several caption corpora ({names}); choose one with "
                              f"--option dataset=NAME")
        return _dataset_name(pick[0], options), parse_precomp(pick[0], verify)
    jsons = sorted(root.rglob("*.json"))
    if jsons:
        recs: list[CaptionRecord] = []
        for j in jsons:
            recs.extend(parse_caption_json(j, split))
        return _dataset_name(jsons[0].parent if len(jsons) > 1 else jsons[0], options), recs
    raise FormatError(f"{root}: no caption files found (expected a dataset JSON, COCO caption JSON or "
                      f"<split>_caps.txt precomp files)")


class ImageFinder:
    """Finds a corpus picture by file name under an image folder (see module docstring for the order)."""

    def __init__(self, folder: Path, dataset: str = "") -> None:
        if not folder.is_dir():
            raise FormatError(f"--option images={folder}: not a folder")
        self.base = folder / dataset if dataset and (folder / dataset).is_dir() else folder
        self.folder = folder
        self._index: dict[str, list[Path]] | None = None

    def find(self, filename: str) -> Path | None:
        """The picture's path, or None when it is not there."""
        p = self.base / filename
        if p.is_file():
            return p
        if self._index is None:
            self._index = {}
            for q in self.base.rglob("*"):
                if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file():
                    self._index.setdefault(q.name, []).append(q)
        hits = self._index.get(Path(filename).name, [])
        if len(hits) > 1:
            raise FormatError(f"image {filename!r} is ambiguous under {self.base}: "
                              f"{', '.join(str(h) for h in hits[:3])}; point --option images at one corpus folder")
        return hits[0] if hits else None


OPTIONS = (
    ReaderOption("dataset", "str", "which corpus (ucm, sydney, rsicd, rsitmd) when the folder holds several "
                 "*_precomp folders; also names the image subfolder"),
    ReaderOption("split", "choice", "split of every caption of a COCO caption JSON whose name has none",
                 choices=("train", "val", "validation", "test", "restval")),
    ReaderOption("verify", "bool", "read Sydney's alternative *_verify train/val split", False),
    ReaderOption("images", "dir", "folder with the pictures; without it the archive holds captions only"),
    ReaderOption("size", "int", "picture size in pixels (resized bilinear)", 224, minimum=1),
    ReaderOption("labels", "choice", "auto: the class in <class>_<n>.<ext> file names becomes the label; none: "
                 "no labels", "auto", choices=("auto", "none")),
)


def read_captions(root: Path, options: dict[str, Any]) -> Source:
    """Items of a caption corpus: one per image, captions in the catalog, pictures as ``rgb`` when found."""
    root = Path(root)
    dataset, records = collect_records(root, options)
    merged: dict[str, CaptionRecord] = {}
    for r in records:
        if r.filename in merged:
            raise FormatError(f"{r.source}: image {r.filename!r} is listed twice (also in {merged[r.filename].source})")
        merged[r.filename] = r
    stems = [Path(f).stem for f in merged]
    unique_stems = len(set(stems)) == len(stems)
    n_blank = sum(1 for r in merged.values() for c in r.captions if not c.strip())
    use_labels = str(options.get("labels") or "auto").lower() != "none"
    classes = [_CLASS_NAME.match(f) for f in merged]
    labelled = use_labels and bool(merged) and all(classes)
    nom = Nomenclature(f"{dataset or 'captions'}-classes",
                       tuple(sorted({m.group(1).lower() for m in classes if m}))) if labelled \
        else Nomenclature("none", ())
    size = int(options.get("size") or 224)
    finder = ImageFinder(Path(options["images"]).expanduser(), dataset) if options.get("images") else None
    specs = [rgb_spec(size, description="caption corpus picture, resized bilinear")] if finder else []

    def items() -> Iterator[SourceItem]:
        for (fname, rec), stem in zip(merged.items(), stems, strict=True):
            item_id = stem if unique_stems else fname
            meta: dict[str, Any] = {"split": rec.split, "captions": [c.strip() for c in rec.captions if c.strip()],
                                    "filename": fname, "source": rec.source}
            if labelled:
                m = _CLASS_NAME.match(fname)
                meta["labels"] = [m.group(1).lower()] if m else []
            path = finder.find(fname) if finder else None
            if path is not None:
                meta["source"] = str(path)
            meta["has_image"] = path is not None
            yield SourceItem(item_id, meta, _loader(item_id, path, size))

    return Source("captions", specs, nom, items(), len(merged),
                  info={"dataset": dataset, "n_captions": sum(len(r.captions) for r in merged.values()) - n_blank,
                        "blank_captions_dropped": n_blank, "image_size": size if finder else None,
                        "image_resampling": "bilinear (PIL)" if finder else None})


def _loader(item_id: str, path: Path | None, size: int):  # type: ignore[no-untyped-def]
    def load() -> Arrays:
        if path is None:
            return {}
        return {"rgb": read_rgb(path, size, item_id)}

    return load
