"""rsir info: counts per split, label and modality, band shapes and statistics of an archive."""

from __future__ import annotations

import argparse
import json

NAME = "info"
HELP = "summarise an archive: counts per split, label and modality, band shapes and statistics"
EXAMPLE = "rsir info archives/reben"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("archive", help="archive directory")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def format_summary(s: dict) -> str:
    """Human-readable text of Archive.summary()."""
    lines = [f"archive   {s['path']}  (from {s['source_format']})",
             f"items     {s['n_items']}   with more than one modality: {s['multi_modal_items']}"]
    lines.append("splits    " + ", ".join(f"{k or '(none)'}: {v}" for k, v in sorted(s["splits"].items())))
    for m, d in s["modalities"].items():
        shapes: dict[str, list[str]] = {}
        for b, sh in d["shapes"].items():
            shapes.setdefault(f"{sh[0]}x{sh[1]}", []).append(b)
        lines.append(f"modality  {m}: {d['items']} items, {len(d['bands'])} bands ({d['dtype']}, {d['unit']}), "
                     f"grid {d['grid'][0]}x{d['grid'][1]}")
        for shape, bands in shapes.items():
            lines.append(f"            {shape}: {' '.join(bands)}")
        comp = s.get("compressed", {}).get(m)
        if comp:
            lines.append(f"            stored as {comp['method']} bitstreams ({comp['bits']}-bit codes from the "
                         f"latent; codec in {comp['dir']}/)")
    lines.append(f"labels    {s['nomenclature']} ({s['n_classes']} classes); items with labels: "
                 f"{s['items_with_labels']}")
    for lab, c in sorted(s["label_counts"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {c:8d}  {lab}")
    if s["items_with_captions"]:
        lines.append(f"captions  {s['items_with_captions']} items with captions")
    if s["items_with_partner"]:
        lines.append(f"pairs     {s['items_with_partner']} items with a bitemporal partner")
    lines.append(f"band statistics (split: {s['stats_split']})")
    for m, st in s["stats"].items():
        for b, v in st.items():
            lines.append(f"  {m:4s} {b:5s} mean {v['mean']:11.3f}  std {v['std']:10.3f}  "
                         f"min {v['min']:10.2f}  max {v['max']:10.2f}")
    if s["skipped"]:
        lines.append(f"skipped at ingest: {len(s['skipped'])}")
    for c in s.get("conversions", []):
        lines.append(f"converted at ingest: {c['modality']} {c['band']} of {c['items']} items from {c['from']} to "
                     f"{c['to']}: {c['rule']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from rsir.data.archive import open_archive

    s = open_archive(args.archive).summary()
    print(json.dumps(s, indent=2) if args.json else format_summary(s))
    return 0
