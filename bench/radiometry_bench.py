"""Simulator radiometry against real Sentinel-1/2 patches: per-band means, spreads, percentiles, inter-band
correlations and per-band histograms.

Real references:
- the reBEN sample in ../shared/data/reben-sample (24 Sentinel-2 L2A / Sentinel-1 pairs, BigEarthNet v2.0);
- the BigEarthNet raw GeoTIFFs in ../shared/data/rico-hdl-tiffs/BigEarthNet (1 S2 patch, 1 S1 patch);
- the published BigEarthNet v1 training statistics (BigEarthNet-S2 band means and standard deviations of the
  bigearthnet-models code, the ones most BigEarthNet training code normalises with; BigEarthNet-S1 VV/VH).

Simulated: ``simulate.iter_items`` at each difficulty (the same generator `rsir simulate` writes), pixels of all
items pooled per band at each band's native resolution (uint16 reflectance * 10000, S1 in dB).

Usage: python bench/radiometry_bench.py [--n 256] [--out bench/results/radiometry.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from train_bench import machine  # noqa: E402

S2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
S1 = ["VV", "VH"]
# bigearthnet-models (BigEarthNet v1 training split): S2 L2A in reflectance * 10000, S1 in dB
PUBLISHED_MEAN = {"B01": 340.77, "B02": 429.94, "B03": 614.22, "B04": 590.24, "B05": 950.68, "B06": 1792.46,
                  "B07": 2075.47, "B08": 2218.95, "B8A": 2266.46, "B09": 2246.06, "B11": 1594.43, "B12": 1009.33,
                  "VV": -12.62, "VH": -19.29}
PUBLISHED_STD = {"B01": 554.81, "B02": 572.42, "B03": 582.88, "B04": 675.89, "B05": 729.90, "B06": 1096.01,
                 "B07": 1273.45, "B08": 1365.46, "B8A": 1356.14, "B09": 1302.33, "B11": 1079.19, "B12": 818.87,
                 "VV": 5.12, "VH": 5.46}
SHARED = ROOT.parent / "shared" / "data"


def reben_flagged(root: Path) -> set[str]:
    """Keys (S2 patch ids and S1 names) of the reBEN patches flagged for seasonal snow, cloud or shadow."""
    import pandas as pd

    f = pd.read_parquet(root / "metadata_for_patches_with_snow_cloud_or_shadow.parquet")
    return set(f["patch_id"].astype(str)) | set(f["s1_name"].astype(str))


def reben_bands(root: Path, skip: set[str] | None = None) -> tuple[dict[str, list[np.ndarray]], list[np.ndarray]]:
    """Per band, the native-resolution arrays of the reBEN sample; and per item the 12-band 20 m stack."""
    import lmdb
    from safetensors.numpy import load

    lm = next(p for p in root.rglob("*") if p.is_dir() and (p / "data.mdb").exists())
    env = lmdb.open(str(lm), readonly=True, lock=False)
    bands: dict[str, list[np.ndarray]] = {b: [] for b in S2 + S1}
    stacks = []
    with env.begin() as txn:
        for key, v in txn.cursor():
            if skip and bytes(key).decode() in skip:
                continue
            d = load(bytes(v))
            for b, a in d.items():
                if b in bands:
                    bands[b].append(np.asarray(a, dtype=np.float64))
            if all(b in d for b in S2):
                stacks.append(_stack20(d))
    return bands, stacks


def _stack20(d: dict[str, np.ndarray]) -> np.ndarray:
    """12 bands on the 60 x 60 (20 m) grid: 10 m bands 2x2-averaged, 60 m bands repeated 3x3."""
    out = []
    for b in S2:
        a = np.asarray(d[b], dtype=np.float64)
        f = a.shape[0] / 60
        if f > 1:
            k = int(f)
            a = a.reshape(60, k, 60, k).mean((1, 3))
        elif f < 1:
            a = np.kron(a, np.ones((int(60 / a.shape[0]),) * 2))
        out.append(a)
    return np.stack(out)


def tiff_bands(root: Path) -> dict[str, list[np.ndarray]]:
    from rsir.data.tiffio import read_band

    bands: dict[str, list[np.ndarray]] = {b: [] for b in S2 + S1}
    for b in S2 + S1:
        for p in root.rglob(f"*_{b}.tif"):
            bands[b].append(np.asarray(read_band(p), dtype=np.float64))
    return bands


def sim_bands(difficulty: str, n: int) -> tuple[dict[str, list[np.ndarray]], list[np.ndarray]]:
    from rsir.data.simulate import SimConfig, iter_items

    bands: dict[str, list[np.ndarray]] = {b: [] for b in S2 + S1}
    stacks = []
    cfg = SimConfig(n=n, seed=0, difficulty=difficulty, bitemporal=0.0, workers=1)
    for it in iter_items(cfg):
        for b, a in it.s2.items():
            bands[b].append(np.asarray(a, dtype=np.float64))
        for i, b in enumerate(S1):
            s1 = it.s1
            bands[b].append(np.asarray(s1[b] if isinstance(s1, dict) else s1[i], dtype=np.float64))
        stacks.append(_stack20(it.s2))
    return bands, stacks


def stats(bands: dict[str, list[np.ndarray]]) -> dict[str, dict[str, float]]:
    out = {}
    for b, arrs in bands.items():
        if not arrs:
            continue
        v = np.concatenate([a.ravel() for a in arrs])
        out[b] = {"mean": float(v.mean()), "std": float(v.std()), "p2": float(np.percentile(v, 2)),
                  "p50": float(np.percentile(v, 50)), "p98": float(np.percentile(v, 98)),
                  "patch_mean_std": float(np.std([a.mean() for a in arrs]))}
    return out


def correlations(stacks: list[np.ndarray]) -> np.ndarray:
    """12 x 12 Pearson correlation of the bands over all pixels (20 m grid)."""
    x = np.concatenate([s.reshape(12, -1) for s in stacks], axis=1)
    return np.corrcoef(x)


def histograms(refs: dict[str, dict[str, list[np.ndarray]]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 7, figsize=(24, 7))
    for ax, b in zip(axes.ravel(), S2 + S1, strict=True):
        vals = {k: np.concatenate([a.ravel() for a in d[b]]) for k, d in refs.items() if d.get(b)}
        lo = min(np.percentile(v, 0.5) for v in vals.values())
        hi = max(np.percentile(v, 99.5) for v in vals.values())
        for k, v in vals.items():
            ax.hist(v, bins=80, range=(lo, hi), density=True, histtype="step", label=k)
        ax.set_title(b + (" (dB)" if b in S1 else " (reflectance x 1e4)"), fontsize=9)
        ax.tick_params(labelsize=7)
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle("per-band pixel histograms: real (reBEN sample, BigEarthNet TIFFs) vs simulated")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256, help="simulated items per difficulty")
    ap.add_argument("--difficulties", nargs="+", default=["medium", "hard"])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "radiometry.json"))
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    t0 = time.perf_counter()
    flagged = reben_flagged(SHARED / "reben-sample")
    rb, rstacks = reben_bands(SHARED / "reben-sample", flagged)
    ra, _ = reben_bands(SHARED / "reben-sample")
    tb = tiff_bands(SHARED / "rico-hdl-tiffs" / "BigEarthNet")
    refs: dict[str, dict[str, list[np.ndarray]]] = {"real reBEN sample (18 clear)": rb}
    doc: dict[str, Any] = {"machine": machine(), "n_sim": args.n,
                           "published": {"source": "BigEarthNet v1 training statistics (bigearthnet-models)",
                                         "mean": PUBLISHED_MEAN, "std": PUBLISHED_STD},
                           "real": {"reben_sample": stats(rb), "reben_sample_all24": stats(ra),
                                    "bigearthnet_tiffs": stats(tb),
                                    "note": "reben_sample: the 18 patches not flagged for snow, cloud or shadow"},
                           "correlation": {"reben_sample": correlations(rstacks).round(3).tolist()}, "sim": {}}
    for d in args.difficulties:
        sb, sstacks = sim_bands(d, args.n)
        refs[f"simulated {d} ({args.n})"] = sb
        doc["sim"][d] = stats(sb)
        doc["correlation"][f"sim_{d}"] = correlations(sstacks).round(3).tolist()
    png = Path(args.out).with_name(Path(args.out).stem + "_histograms.png")
    histograms(refs, png)
    doc["plot"] = str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png)
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).write_text(json.dumps(doc, indent=2))
    print(markdown(doc))


def markdown(doc: dict[str, Any]) -> str:
    sims = list(doc["sim"])
    head = ("| band | published mean (std) | reBEN sample, 18 clear: mean (std) | all 24: mean | BigEarthNet TIFF mean | "
            + " | ".join(f"sim {d} mean (std)" for d in sims) + " |")
    lines = [head, "|---|" + "---:|" * (4 + len(sims))]
    rb, tb = doc["real"]["reben_sample"], doc["real"]["bigearthnet_tiffs"]
    ra = doc["real"].get("reben_sample_all24", {})
    for b in S2 + S1:
        fmt = "{:.1f}" if b in S1 else "{:.0f}"
        def ms(s: dict[str, float] | None, fmt: str = fmt) -> str:
            return "-" if not s else f"{fmt.format(s['mean'])} ({fmt.format(s['std'])})"
        lines.append(f"| {b} | {fmt.format(doc['published']['mean'][b])} ({fmt.format(doc['published']['std'][b])}) "
                     f"| {ms(rb.get(b))} | {fmt.format(ra[b]['mean']) if b in ra else '-'} | "
                     f"{fmt.format(tb[b]['mean']) if b in tb else '-'} | "
                     + " | ".join(ms(doc["sim"][d].get(b)) for d in sims) + " |")
    out = "\n".join(lines)
    corr = doc["correlation"]
    pairs = [("B02", "B04"), ("B04", "B08"), ("B03", "B11"), ("B08", "B11"), ("B11", "B12"), ("B05", "B8A")]
    rows = ["| band pair | " + " | ".join(corr) + " |", "|---|" + "---:|" * len(corr)]
    for a, b in pairs:
        i, j = S2.index(a), S2.index(b)
        rows.append(f"| {a}-{b} | " + " | ".join(f"{np.asarray(c)[i, j]:.2f}" for c in corr.values()) + " |")
    return out + "\n\n" + "\n".join(rows)


if __name__ == "__main__":
    main()
