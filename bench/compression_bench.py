"""Joint compression and hashing (SCI-CBIR) benchmark: storage, rate-distortion, retrieval, indexing throughput.

On a simulated hard archive (default 6,000 patches of 24 x 24 pixels, so that training fits a loaded 2-core
machine) and, with --reben, on the real reBEN sample:

1. ``rsir train-codec`` stage 1 (rate-distortion only) at several lambdas: the rate-distortion curve; the main
   lambda's stage-1 codec then starts stage 2 (joint, automatic weighting) at 32 and 64 bits (``--init``);
2. ``rsir compress`` with each joint codec: stored bytes of the S2 modality, raw (safetensors at native
   resolution, as ingested) against bitstreams; lossless baselines zstd (of the stored values) and JPEG 2000
   reversible, lossy JPEG 2000 (OpenJPEG through imagecodecs) swept over quality: bits per pixel per band,
   PSNR (peak 10000 = reflectance 1) and spectral angle (degrees) on the test split, on the 12-band grid;
3. retrieval, RSiM protocol (validation queries, test archive), ``rsir eval --k 20``: codes read from the
   compressed stream against MiLAN (classifier + MiLAN head trained on the raw pixels) indexing the decoded
   pixels of the same compressed archive, and on the raw pixels;
4. indexing throughput on the same compressed archive in one process, one torch thread: codes from the
   bitstreams (entropy decoding + hashing head) against decoding first (entropy decoding + synthesis) and then
   encoding the pixels (the codec's own analysis + head, and MiLAN).

Everything runs through the CLI where a command exists; the commands are stored in the JSON. Numbers are from a
simulator (labelled so) except the reBEN rows. ``--weighting`` picks how the joint stage combines the objectives;
``--retrieval-only`` runs only what the retrieval table needs (the main lambda's stage 1, the joint codecs, their
compressed archives, MiLAN, index and eval) and adds the statistics of the hash outputs |h| on the test split
(the collapse towards h = 0 shows there). Usage:
  python bench/compression_bench.py [--work /tmp/compression-bench] [--n 6000] [--reben]
  python bench/compression_bench.py --retrieval-only --weighting pcgrad --out bench/results/compression_pcgrad.json
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

from milan_bench import Runner, eval_metrics  # noqa: E402
from train_bench import machine  # noqa: E402

PEAK = 10000.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(PEAK ** 2 / max(mse, 1e-12)))


def sam_degrees(a: np.ndarray, b: np.ndarray) -> float:
    """Mean spectral angle between N x C x H x W spectra (degrees)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    dot = (a * b).sum(1)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    cos = np.clip(dot / np.maximum(den, 1e-12), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


def grid_pixels(arch: Any, positions: np.ndarray) -> np.ndarray:
    """uint16 N x C x H x W raw bands on the grid (the reference every codec is measured against)."""
    xs = [x for _, x in arch.batches(128, modality="s2", positions=positions.tolist(), normalized=False)]
    return np.clip(np.rint(np.concatenate(xs)), 0, 65535).astype(np.uint16)


def rd_codec(codec_dir: Path, ref: np.ndarray) -> dict[str, float]:
    from rsir.compression.codec import load_codec

    codec = load_codec(codec_dir)
    streams = codec.compress(codec.normalise(ref.astype(np.float32)))
    dec = codec.denormalise(codec.synthesise(codec.latents(streams)))
    n, c, h, w = ref.shape
    return {"bpppb": 8.0 * sum(len(s) for s in streams) / (n * c * h * w), "psnr": psnr(ref, dec),
            "sam_deg": sam_degrees(ref, dec)}


def rd_jpeg2000(ref: np.ndarray, levels: list[float | None]) -> list[dict[str, Any]]:
    import imagecodecs

    rows = []
    n, c, h, w = ref.shape
    for level in levels:
        size, dec = 0, np.empty_like(ref)
        for i in range(n):
            img = np.ascontiguousarray(ref[i].transpose(1, 2, 0))
            data = imagecodecs.jpeg2k_encode(img, level=level, reversible=level is None)
            size += len(data)
            dec[i] = imagecodecs.jpeg2k_decode(data).transpose(2, 0, 1)
        rows.append({"level": level, "lossless": level is None, "bpppb": 8.0 * size / (n * c * h * w),
                     "psnr": psnr(ref, dec) if level is not None else float("inf"),
                     "sam_deg": sam_degrees(ref, dec)})
    return rows


def storage(arch: Any, positions: np.ndarray) -> dict[str, float]:
    """Stored S2 bytes (safetensors at native resolution) and their zstd-19 size, per grid pixel and band."""
    import imagecodecs

    raw = [arch.stored(int(p), "s2") for p in positions]
    n_px = len(positions) * arch.spec("s2").grid[0] * arch.spec("s2").grid[1] * len(arch.spec("s2").bands)
    return {"raw_bytes": int(sum(map(len, raw))), "raw_bpppb": 8.0 * sum(map(len, raw)) / n_px,
            "zstd19_bpppb": 8.0 * sum(len(imagecodecs.zstd_encode(r, level=19)) for r in raw) / n_px}


def hash_stats(codec_dir: Path, comp_dir: Path, split: str = "test") -> dict[str, Any]:
    """Magnitudes of the tanh hash outputs of a split's latents read from the streams, and how balanced the bits are."""
    import torch

    from rsir.compression.codec import load_codec
    from rsir.data.archive import open_archive

    codec, arch = load_codec(codec_dir), open_archive(comp_dir)
    pos = arch.split_positions(split)
    sym = codec.latents([arch.stored(int(p), codec.meta.modality) for p in pos])
    with torch.inference_mode():
        h = codec.net.hash(torch.as_tensor(sym, dtype=torch.float32)).numpy()
    a = np.abs(h)
    return {"items": int(len(pos)), "mean_abs_h": round(float(a.mean()), 5),
            "abs_h_percentiles": {str(q): round(float(np.percentile(a, q)), 5) for q in (10, 50, 90)},
            "fraction_abs_h_over_0.5": round(float((a > 0.5).mean()), 4),
            "bits_plus_fraction_min_max": [round(float((h > 0).mean(0).min()), 3),
                                           round(float((h > 0).mean(0).max()), 3)],
            "distinct_codes": int(len({row.tobytes() for row in (h > 0)}))}


def throughput(comp_dir: Path, codec_dir: Path, milan_dir: Path | None, repeat: int = 1) -> dict[str, Any]:
    """Items per second indexing the compressed archive: from streams vs decode + encode (one torch thread)."""
    import torch

    from rsir.compression.encoder import load_codec_encoder
    from rsir.data.archive import open_archive
    from rsir.encoding import load_encoder

    torch.set_num_threads(1)
    arch = open_archive(comp_dir)
    enc = load_codec_encoder(codec_dir)
    n = len(arch)

    def timed(fn: Any) -> float:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    def from_streams() -> None:
        for ids, streams in arch.stored_batches(64, "s2"):
            enc.encode_stored(ids, streams)

    def decode_then(encoder: Any) -> Any:
        def run() -> None:
            for _, x in arch.batches(64, modality="s2"):
                encoder.encode(x)
        return run

    def decode_only() -> None:
        for _ in arch.batches(64, modality="s2"):
            pass

    out: dict[str, Any] = {"items": n, "torch_threads": 1}
    t = {"from_stream": timed(from_streams), "decode_only": timed(decode_only),
         "decode_then_codec_encode": timed(decode_then(enc))}
    if milan_dir is not None:
        t["decode_then_milan"] = timed(decode_then(load_encoder("model", milan_dir)))
    out["seconds"] = {k: round(v, 2) for k, v in t.items()}
    out["items_per_s"] = {k: round(n / v, 1) for k, v in t.items()}
    out["speedup_vs_decode_then_codec"] = round(t["decode_then_codec_encode"] / t["from_stream"], 2)
    if milan_dir is not None:
        out["speedup_vs_decode_then_milan"] = round(t["decode_then_milan"] / t["from_stream"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/compression-bench")
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--size", type=int, default=24)
    ap.add_argument("--lambdas", type=float, nargs="+", default=[8.0, 64.0, 512.0])
    ap.add_argument("--main-lambda", type=float, default=64.0)
    ap.add_argument("--codec-epochs", type=int, default=4)
    ap.add_argument("--joint-epochs", type=int, default=4)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--latent", type=int, default=16)
    ap.add_argument("--max-items", type=int, default=2000, help="training items of the codec")
    ap.add_argument("--codec-batch", type=int, default=8, help="codec batch size (small: more steps per epoch)")
    ap.add_argument("--cls-epochs", type=int, default=20)
    ap.add_argument("--milan-epochs", type=int, default=30)
    ap.add_argument("--baseline-epochs", type=int, default=None,
                    help="train the classifier and MiLAN (the pixel baselines) for up to N epochs each with "
                         "patience 20, best epoch on the selection slice, instead of --cls-epochs / --milan-epochs; "
                         "the same budget as a long joint stage (models and rows tagged -eN)")
    ap.add_argument("--bits", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--j2k-levels", type=float, nargs="+", default=[25, 30, 35, 40, 45, 50, 60])
    ap.add_argument("--reben", action="store_true", help="also the real reBEN sample (../shared/data)")
    ap.add_argument("--reben-only", action="store_true", help="only the reBEN rows (printed, not saved)")
    ap.add_argument("--weighting", default="uncertainty", choices=["uncertainty", "pcgrad", "mgda"],
                    help="how the joint stage combines the objectives (rsir train-codec --weighting)")
    ap.add_argument("--quantisation", type=float, default=0.0,
                    help="rsir's own quantisation term in the joint stage (rsir train-codec --quantisation)")
    ap.add_argument("--joint-seed", type=int, default=0, help="seed of the joint stage (rsir train-codec --seed)")
    ap.add_argument("--head", default="conv", choices=["conv", "resnet"], help="hashing head (rsir train-codec --head)")
    ap.add_argument("--head-blocks", type=int, nargs="+", default=[2], help="rsir train-codec --head-blocks")
    ap.add_argument("--recipe", default="codec", choices=["codec", "milan"],
                    help="joint stage's data: codec = the codec's --max-items items and --codec-batch, a fixed "
                         "--joint-epochs; milan = what MiLAN's classifier trains on (the training split less "
                         "rsir train's 10%% selection slice, flips and rotations), batch --joint-batch, up to "
                         "--joint-epochs with the epoch chosen on the slice (patience 5, as rsir train)")
    ap.add_argument("--joint-batch", type=int, default=32, help="joint-stage batch size of --recipe milan")
    ap.add_argument("--patience", type=int, default=5,
                    help="--recipe milan: stop after N joint epochs without a better selection score")
    ap.add_argument("--select", nargs="+", metavar="LATENT:LAMBDA", default=None,
                    help="choose the operating point instead: stage 1 at each latent width and lambda, then a "
                         "joint stage of up to --joint-epochs at 32 bits scored after every epoch on a slice of the "
                         "training split the codec never trains on (never the test or validation queries)")
    ap.add_argument("--retrieval-only", action="store_true",
                    help="only the retrieval comparison (+ hash-output statistics): no lambda sweep, JPEG 2000, "
                         "throughput")
    ap.add_argument("--throughput", action="store_true",
                    help="with --retrieval-only: also the indexing throughput on the largest code length's archive")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "compression.json"))
    args = ap.parse_args()
    if args.reben_only:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        print(json.dumps(reben_rows(work, Runner(work / "commands-reben.log", one_thread=True)), indent=1))
        return

    import torch

    torch.set_num_threads(1)
    from rsir.data.archive import open_archive

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    run = Runner(work / "commands.log", one_thread=True)
    res: dict[str, Any] = {"machine": {**machine(), "note": "2 shared cores, loaded by other jobs (see loadavg)"},
                           "dataset": f"SIMULATED hard archive, {args.n} patches of {args.size}x{args.size} px, "
                                      f"12 S2 bands (rsir simulate --difficulty hard --seed 0 --bitemporal 0)",
                           "args": vars(args), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    sim = work / "sim"
    run("simulate", "--n", str(args.n), "--size", str(args.size), "--difficulty", "hard", "--seed", "0",
        "--bitemporal", "0", "--out", str(sim), "--quiet", skip_if=sim)
    arch = open_archive(sim)
    common = ["--filters", str(args.filters), "--latent", str(args.latent), "--max-items", str(args.max_items),
              "--batch-size", str(args.codec_batch)]

    # 1. stage-1 codecs (rate-distortion only) at each lambda
    if args.select:
        res["selection"] = select(args, run, arch, work)
        res["commands"] = run.commands
        res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
        plot_sweep(res, Path(args.out).with_suffix(".png"))
        print(f"-> {args.out}")
        return
    stage1: dict[float, Path] = {}
    lambdas = [args.main_lambda] if args.retrieval_only else sorted(set(args.lambdas) | {args.main_lambda})
    for lam in lambdas:
        d = work / stage1_name(lam, args.latent, args.filters, args.codec_epochs)
        rec = run("train-codec", str(sim), "--out", str(d), "--lambda", f"{lam:g}", "--codec-epochs",
                  str(args.codec_epochs), "--joint-epochs", "0", *common, skip_if=d)
        stage1[lam] = d
        res.setdefault("train_seconds", {})[d.name] = rec["seconds"]
    # 2. joint stage at each code length, from the main lambda's stage 1
    joint: dict[int, Path] = {}
    wtag = ("" if args.latent == 16 else f"-m{args.latent}-l{args.main_lambda:g}") + (
        "" if args.filters == 32 else f"-f{args.filters}") + ("" if args.codec_epochs == 4 else f"-s{args.codec_epochs}") + (
        "" if args.joint_epochs == 4 else f"-e{args.joint_epochs}") + (
        "" if args.weighting == "uncertainty" else f"-{args.weighting}") + (
        f"-q{args.quantisation:g}" if args.quantisation else "") + (f"-seed{args.joint_seed}" if args.joint_seed else "")
    quant = (["--quantisation", f"{args.quantisation:g}"] if args.quantisation else []) + (
        ["--seed", str(args.joint_seed)] if args.joint_seed else [])
    joint_common = common
    if args.head != "conv":
        wtag += f"-{args.head}" + "".join(map(str, args.head_blocks))
        quant += ["--head", args.head, "--head-blocks", *map(str, args.head_blocks)]
    if args.recipe == "milan":
        wtag += f"-milan-b{args.joint_batch}" + ("" if args.patience == 5 else f"-p{args.patience}")
        joint_common = ["--filters", str(args.filters), "--latent", str(args.latent), "--batch-size",
                        str(args.joint_batch), "--selection-fraction", "0.1", "--augment", "--patience",
                        str(args.patience)]
    for bits in args.bits:
        d = work / f"codec-jci{bits}{wtag}"
        rec = run("train-codec", str(sim), "--out", str(d), "--bits", str(bits), "--lambda", f"{args.main_lambda:g}",
                  "--init", str(stage1[args.main_lambda]), "--codec-epochs", "0", "--joint-epochs",
                  str(args.joint_epochs), "--weighting", args.weighting, *quant, *joint_common, skip_if=d)
        joint[bits] = d
        res.setdefault("train_seconds", {})[d.name] = rec["seconds"]

    # 3. compressed archives; storage
    comp: dict[int, Path] = {}
    res["storage"] = {}
    st = storage(arch, np.arange(len(arch)))
    for bits, d in joint.items():
        c = work / f"sim-c{bits}{wtag}"
        rec = run("compress", str(sim), "--codec", str(d), "--out", str(c), "--no-progress", skip_if=c)
        comp[bits] = c
        ca = open_archive(c)
        cb = sum(len(ca.stored(i, "s2")) for i in range(len(ca)))
        g = arch.spec("s2").grid
        n_px = len(arch) * g[0] * g[1] * 12
        res["storage"][f"jci{bits}"] = {**st, "compressed_bytes": cb, "compressed_bpppb": 8.0 * cb / n_px,
                                        "ratio_vs_raw": round(st["raw_bytes"] / cb, 2),
                                        "compress_seconds": rec["seconds"]}

    # rate-distortion on the test split
    test = arch.split_positions("test")
    ref = grid_pixels(arch, test)
    rd: dict[str, Any] = {"items": int(len(test)), "codec_stage1": {}, "codec_joint": {}}
    for lam, d in stage1.items():
        rd["codec_stage1"][f"{lam:g}"] = rd_codec(d, ref)
    for bits, d in joint.items():
        rd["codec_joint"][str(bits)] = rd_codec(d, ref)
    if not args.retrieval_only:
        rd["jpeg2000"] = rd_jpeg2000(ref, [None, *args.j2k_levels])
    rd["storage_test"] = storage(arch, test)
    res["rate_distortion"] = rd
    print(json.dumps(rd, indent=1), flush=True)
    res["hash_outputs"] = {str(bits): hash_stats(d, comp[bits]) for bits, d in joint.items()}
    res["joint_history"] = {str(bits): json.loads((d / "config.json").read_text())["info"]["history"]
                            for bits, d in joint.items()}
    res["joint_chosen"] = {str(bits): {k: v for k, v in json.loads((d / "config.json").read_text())["info"].items()
                                       if k in ("chosen_joint_epoch", "selection_map20", "train_items")}
                           for bits, d in joint.items()}
    print(json.dumps(res["hash_outputs"], indent=1), flush=True)

    # 4. retrieval: codes from the stream vs MiLAN on decoded (and raw) pixels
    btag = f"-e{args.baseline_epochs}" if args.baseline_epochs else ""
    budget = (["--patience", "20"] if args.baseline_epochs else [])
    cls = work / f"classifier{btag}"
    run("train", str(sim), "--method", "classifier", "--epochs", str(args.baseline_epochs or args.cls_epochs),
        *budget, "--out", str(cls), "--quiet", skip_if=cls)
    res["retrieval"] = {}
    milan: dict[int, Path] = {}
    for bits in args.bits:
        m = work / f"milan{bits}{btag}"
        run("train", str(sim), "--method", "milan", "--features", str(cls), "--bits", str(bits), "--epochs",
            str(args.baseline_epochs or args.milan_epochs), *budget, "--out", str(m), "--quiet", skip_if=m)
        milan[bits] = m
        rows = {}
        for name, archive, model in [(f"SCI-CBIR {bits} (codes from the compressed stream)", comp[bits], None),
                                     (f"MiLAN {bits} on decoded pixels", comp[bits], m),
                                     (f"MiLAN {bits} on raw pixels", sim, m)]:
            tag = name.split(" (")[0].lower().replace(" ", "-")
            if "raw" not in tag:
                tag += wtag
            if model is not None:
                tag += btag
            idx = work / f"idx-{tag}"
            cmd = ["index", str(archive), "--out", str(idx), "--no-progress"] + (["--model", str(model)] if model else [])
            rec = run(*cmd, skip_if=idx)
            ev = work / f"eval-{tag}"
            run("eval", str(archive), str(idx), "--protocol", "rsim", "--k", "20", "--out", str(ev), skip_if=ev)
            rows[name] = {**eval_metrics(ev), "index_seconds": rec["seconds"]}
        res["retrieval"][str(bits)] = rows
    print(json.dumps(res["retrieval"], indent=1), flush=True)

    # 5. throughput, same compressed archive, one process
    main_bits = max(args.bits)
    if not args.retrieval_only or args.throughput:
        res["throughput"] = throughput(comp[main_bits], joint[main_bits], milan.get(main_bits))
        print(json.dumps(res["throughput"], indent=1), flush=True)

    if args.reben and not args.retrieval_only:
        res["reben"] = reben_rows(work, run)
    res["commands"] = run.commands
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    if not args.retrieval_only:
        plot(res, Path(args.out).with_suffix(".png"))
    print(f"-> {args.out}")


def stage1_name(lam: float, latent: int, filters: int = 32, codec_epochs: int = 4) -> str:
    """Stage-1 codec folder (the defaults of the first runs keep their names)."""
    return f"codec-s1-l{lam:g}" + ("" if latent == 16 else f"-m{latent}") + (
        "" if filters == 32 else f"-f{filters}") + ("" if codec_epochs == 4 else f"-s{codec_epochs}")


def held_out_slice(arch: Any, max_items: int) -> dict[str, np.ndarray]:
    """The training items the codec never sees (train split minus its seed-0 sample of ``max_items``): even
    positions are queries, odd ones the database. Normalised images (archive statistics, as the codec trains)."""
    from rsir.compression.train import training_positions

    held = np.setdiff1d(arch.split_positions("train"), training_positions(arch, max_items, 0))
    x = np.concatenate([x for _, x in arch.batches(256, modality="s2", positions=held.tolist())])
    return {"positions": held, "x": x, "labels": arch.labels[held]}


def slice_map(net: Any, val: dict[str, np.ndarray], k: int = 20) -> float:
    """mAP@k (A) on the held-out slice: codes h > 0 of the rounded latents, queries against database, Hamming."""
    import torch

    from rsir.bits import pack_bits
    from rsir.eval.metrics import average_precision_at_k, rank, ranked, relevance_any
    from rsir.eval.protocols import hamming_distances

    with torch.inference_mode():
        h = torch.cat([net.hash(net.quantise(net.g_a(torch.as_tensor(val["x"][s:s + 256]))))
                       for s in range(0, len(val["x"]), 256)]).numpy()
    codes, lab = pack_bits(h > 0), val["labels"]
    q, d = np.arange(0, len(codes), 2), np.arange(1, len(codes), 2)
    order = rank(hamming_distances(codes[q], codes[d]))
    return float(average_precision_at_k(ranked(relevance_any(lab[q], lab[d]), order), k, "A").mean())


def select(args: argparse.Namespace, run: Runner, arch: Any, work: Path) -> dict[str, Any]:
    """Rate sweep and operating point chosen on the held-out training slice (see --select)."""
    from rsir.compression.train import CodecTrainConfig, train_codec

    val = held_out_slice(arch, args.max_items)
    ref_val = grid_pixels(arch, val["positions"])
    test = arch.split_positions("test")
    ref_test = grid_pixels(arch, test)
    raw_bpppb = storage(arch, np.arange(len(arch)))["raw_bpppb"]
    out: dict[str, Any] = {"held_out_items": int(len(val["x"])), "raw_bpppb": raw_bpppb, "points": []}
    for spec in args.select:
        latent, lam = int(spec.split(":")[0]), float(spec.split(":")[1])
        d = work / stage1_name(lam, latent, args.filters, args.codec_epochs)
        rec = run("train-codec", str(arch.path), "--out", str(d), "--lambda", f"{lam:g}", "--codec-epochs",
                  str(args.codec_epochs), "--joint-epochs", "0", "--filters", str(args.filters), "--latent", str(latent),
                  "--max-items", str(args.max_items), "--batch-size", str(args.codec_batch), skip_if=d)
        point: dict[str, Any] = {"latent": latent, "lambda": lam, "stage1_seconds": rec["seconds"],
                                 "rd_held_out": rd_codec(d, ref_val), "rd_test": rd_codec(d, ref_test)}
        point["fraction_of_raw"] = round(point["rd_held_out"]["bpppb"] / raw_bpppb, 4)
        print(json.dumps(point), flush=True)
        cfg = CodecTrainConfig(bits=32, lmbda=lam, codec_epochs=0, joint_epochs=args.joint_epochs,
                               batch_size=args.codec_batch, n_filters=args.filters, latent=latent,
                               max_items=args.max_items, init=str(d), weighting=args.weighting,
                               quantisation=args.quantisation)
        t0 = time.perf_counter()
        qtag = f"-q{args.quantisation:g}" if args.quantisation else ""
        sel_dir = work / f"select-m{latent}-l{lam:g}-{args.weighting}{qtag}" / "codec"
        if not sel_dir.exists():
            sel_dir.parent.mkdir(parents=True, exist_ok=True)
            train_codec(arch, sel_dir, cfg, log=print,
                        on_epoch=lambda stage, ep, net: {"held_out_map20": round(slice_map(net, val), 4)})
        hist = json.loads((sel_dir / "config.json").read_text())["info"]["history"]
        point["joint_seconds"] = round(time.perf_counter() - t0, 1)
        point["joint_held_out_map20"] = {r["epoch"]: r["held_out_map20"] for r in hist if r["stage"] == "joint"}
        point["joint_h_abs"] = {r["epoch"]: r["h_abs"] for r in hist if r["stage"] == "joint"}
        point["rd_joint_held_out"] = rd_codec(sel_dir, ref_val)
        out["points"].append(point)
        print(json.dumps(point), flush=True)
    ok = [p for p in out["points"] if p["rd_joint_held_out"]["bpppb"] <= raw_bpppb / 8] or out["points"]
    best = max(((p, int(e), m) for p in ok for e, m in p["joint_held_out_map20"].items()), key=lambda t: t[2])
    out["chosen"] = {"latent": best[0]["latent"], "lambda": best[0]["lambda"], "joint_epochs": best[1],
                     "held_out_map20": best[2], "rule": "highest held-out mAP@20 (A) at 32 bits among the points "
                                                         "at 1/8 of raw storage or less"}
    out["jpeg2000_test"] = rd_jpeg2000(ref_test, [None, *args.j2k_levels])
    print(json.dumps(out["chosen"]), flush=True)
    return out


def plot_sweep(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = res["selection"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    pts = sorted(sel["points"], key=lambda p: p["rd_test"]["bpppb"])
    draw_rd(axes[:2], sel["jpeg2000_test"], [(f"M={p['latent']}, lambda={p['lambda']:g}", p["rd_test"]) for p in pts],
            [], sel["raw_bpppb"])
    for p in sel["points"]:
        ep = sorted(p["joint_held_out_map20"].items(), key=lambda kv: int(kv[0]))
        axes[2].plot([int(e) for e, _ in ep], [m for _, m in ep], "o-",
                     label=f"M={p['latent']}, lambda={p['lambda']:g} ({p['rd_joint_held_out']['bpppb']:.3f} b/px/band)")
    axes[2].set_xlabel("joint epochs (32 bits)")
    axes[2].set_ylabel("held-out training slice mAP@20 (A)")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    fig.suptitle("SIMULATED archive: rate sweep (test split) and operating point (held-out training slice)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def draw_rd(axes: Any, j2k_rows: list[dict[str, Any]], stage1: list[tuple[str, dict[str, float]]],
            joint: list[tuple[str, dict[str, float]]], raw_bpppb: float) -> None:
    """PSNR and spectral angle against bits per pixel per band on two axes: JPEG 2000, the stage-1 codecs
    (annotated when their label is not empty), joint codecs as stars, and the 1/8-of-raw line."""
    for ax, key, label in [(axes[0], "psnr", "PSNR (dB, peak 10000)"), (axes[1], "sam_deg", "spectral angle (deg)")]:
        j2k = [r for r in j2k_rows if not r["lossless"]]
        ax.plot([r["bpppb"] for r in j2k], [r[key] for r in j2k], "o-", label="JPEG 2000 (OpenJPEG)")
        ax.plot([v["bpppb"] for _, v in stage1], [v[key] for _, v in stage1], "s-", label="learned codec, stage 1")
        for name, v in stage1:
            if name:
                ax.annotate(name, (v["bpppb"], v[key]), fontsize=6)
        for name, v in joint:
            ax.plot([v["bpppb"]], [v[key]], "*", ms=12, label=name)
        ax.axvline(raw_bpppb / 8, color="grey", ls=":", label="1/8 of raw storage")
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel per band")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)


def reben_rows(work: Path, run: Runner) -> dict[str, Any]:
    """The real reBEN sample (24 patches, 120 x 120): a codec trained on its 8 training patches, storage,
    rate-distortion against JPEG 2000, and retrieval of codes from the stream (8 queries, 8 archive items)."""
    from rsir.data.archive import open_archive

    src = ROOT.parent / "shared" / "data" / "reben-sample"
    if not src.exists():
        return {"skipped": f"{src} not present"}
    arch_dir, codec, comp = work / "reben", work / "reben-codec64", work / "reben-c64"
    run("ingest", str(src), "--format", "reben", "--out", str(arch_dir), "--quiet", skip_if=arch_dir)
    run("train-codec", str(arch_dir), "--out", str(codec), "--bits", "64", "--codec-epochs", "60",
        "--joint-epochs", "30", "--batch-size", "2", "--filters", "32", "--latent", "16", skip_if=codec)
    run("compress", str(arch_dir), "--codec", str(codec), "--out", str(comp), "--no-progress", skip_if=comp)
    idx, ev = work / "idx-reben-c64", work / "eval-reben-c64"
    run("index", str(comp), "--out", str(idx), "--no-progress", skip_if=idx)
    run("eval", str(comp), str(idx), "--protocol", "rsim", "--k", "20", "--out", str(ev), skip_if=ev)
    arch, ca = open_archive(arch_dir), open_archive(comp)
    allp = np.arange(len(arch))
    ref = grid_pixels(arch, allp)
    g = arch.spec("s2").grid
    cb = sum(len(ca.stored(i, "s2")) for i in range(len(ca)))
    st = storage(arch, allp)
    return {"dataset": "REAL reBEN sample (24 S2 patches, 120x120, 8/8/8 splits)", "storage": {
        **st, "compressed_bytes": cb, "compressed_bpppb": 8.0 * cb / (len(arch) * g[0] * g[1] * 12),
        "ratio_vs_raw": round(st["raw_bytes"] / cb, 2)},
        "codec": rd_codec(codec, ref), "jpeg2000": rd_jpeg2000(ref, [None, 30, 35, 40, 45, 50, 55]),
        "retrieval_from_stream": eval_metrics(ev)}


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rd = res["rate_distortion"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    s1 = sorted(rd["codec_stage1"].values(), key=lambda v: v["bpppb"])
    draw_rd(axes, rd["jpeg2000"], [("", v) for v in s1],
            [(f"joint codec, {bits} bits", v) for bits, v in rd["codec_joint"].items()], rd["storage_test"]["raw_bpppb"])
    fig.suptitle("SIMULATED archive, test split: rate-distortion")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
