"""Diagnostic for the SS-CM hyperparameter selection of bench/sscm_bench.py --select: for each short selection run,
the label-BASED mAP@20 (A) of its codes within the same held-out slice of the TRAINING split, in the four
directions. It is written beside the label-free score that chose the weights, to show whether a labelled
criterion would have chosen differently. It chooses nothing: the selection is made before it runs, without labels.

Within the slice (about 360 training pairs, never trained on): every item queries the slice's other items (its
own entry and, across modalities, its own partner left out), Hamming distance on the sign codes, ties by position;
relevance = any shared label. No validation or test item is read.

Usage: PYTHONPATH=src python bench/sscm_select_diag.py --work /tmp/sscm-bench --json bench/results/sscm_select.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rsir.data.archive import Archive, open_archive  # noqa: E402
from rsir.eval.metrics import average_precision_at_k, relevance_any  # noqa: E402
from rsir.models.crossmodal import load_crossmodal  # noqa: E402
from rsir.train.pairs import PairDataset, paired_positions  # noqa: E402
from rsir.train.selection import split_for_selection  # noqa: E402


@torch.no_grad()
def slice_map(model: Path, archive: Archive) -> dict[str, float]:
    net, _, _ = load_crossmodal(model)
    info = json.loads((model / "config.json").read_text())["info"]
    mods = list(info["modalities"])
    sel = info["selection"]
    pos = paired_positions(archive, mods, archive.split_positions("train"))
    held, rec = split_for_selection([archive.ids[int(p)] for p in pos], "train", sel["fraction"], sel["seed"])
    assert rec.digest == sel["selection_ids_sha256_16"], "not the slice the model was selected on"
    sp = pos[held]
    ds = PairDataset(archive, mods, sp, False, False)
    items = [ds[i] for i in range(len(ds))]
    codes = {m: net(torch.stack([it[k] for it in items]), m).float().numpy() > 0
             for m, k in zip(mods, ("x", "x2"), strict=True)}
    labels = archive.labels[sp]
    out = {}
    for a in mods:
        for b in mods:
            d = (codes[a][:, None, :] != codes[b][None, :, :]).sum(2).astype(np.float64)
            np.fill_diagonal(d, np.inf)  # the query itself / its own partner
            order = np.argsort(d, axis=1, kind="stable")[:, :-1]
            rel = np.take_along_axis(relevance_any(labels, labels), order, axis=1)
            out[f"{a}->{b}"] = round(float(average_precision_at_k(rel, 20, "A").mean()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--json", required=True, help="the sscm_bench JSON whose 'selection' gets the diagnostic")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    doc = json.loads(Path(args.json).read_text())
    archive = open_archive(Path(doc["commands"][0]["cmd"].split("--out ")[1].split()[0]))
    for row in doc["selection"]["trials"]:
        slug = f"{row['objectives'].replace('+', '')}-t{row['tau']}" + \
            ("" if row["w_de"] is None else f"-de{row['w_de']}") + \
            ("" if row["w_intra"] is None else f"-in{row['w_intra']}")
        row["diagnostic_slice_map@20_A_labels"] = slice_map(work / "select" / f"model-{slug}", archive)
        print(slug, row["sel_partner_mrr"], row["diagnostic_slice_map@20_A_labels"], flush=True)
    doc["selection"]["diagnostic"] = (
        "diagnostic_slice_map@20_A_labels: label-based mAP@20 (A) within the same held-out training slice (query's "
        "own entry / partner left out), computed after the selection and NOT used by it (bench/sscm_select_diag.py)")
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
