"""SS-CM-RSIR benchmark (issue 13): Sentinel-1 <-> Sentinel-2 retrieval without labels.

Everything runs through the `rsir` CLI, so the commands recorded in the JSON are the reproduce commands:

1. a **simulated** hard archive of N co-registered S1/S2 pairs (`rsir simulate --difficulty hard`);
2. `rsir train --method ss-cm` for the full method (all three objectives) at 32 / 64 / 128 bits, the ablations
   (`--objectives mim`, `--objectives mim+de`) at 64 bits, and the untrained encoder pair (`--epochs 0`, the
   floor); the same epochs, seed and batch for each;
3. `rsir index --model` (codes of both modalities in one index; `--float` for the embeddings of the full model);
4. `rsir eval --protocol rsim --k 20` in the four directions: mAP@20 (variant A) and the RSiM P/R/F1@20;
5. supervised single-modality MiLAN (`rsir train --method milan --modality s1|s2`, classifier features trained
   first, labels used) as the reference: S1->S1 and S2->S2;
6. end-to-end encoding throughput of both modalities (`rsir index --model` on a 120 x 120 px simulated archive,
   pairs/s = pairs / build_seconds from the index manifest);
7. optionally (--reben DIR), the real reBEN sample as it is (24 pairs: 8 train / 8 validation / 8 test);
8. optionally (--select), before 2: tau and the objective weights chosen without labels on the held-out slice of
   the training split (short runs scored by partner MRR; `selection` in the JSON), used by every variant; with
   --extra-seeds every variant (the floor too) is trained per seed and `seed_stats` holds the paired differences.

Usage: nice -n 10 .venv/bin/python bench/sscm_bench.py [--n 6000] [--size 48] [--epochs 12]
       [--work /tmp/sscm-bench] [--reben ../shared/data/reben-sample] [--out bench/results/sscm.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from milan_bench import Runner  # noqa: E402
from train_bench import machine  # noqa: E402

KEYS = ("mAP@20(A)", "rsim_P@20", "rsim_R@20", "rsim_F1@20")
DIRS = ("s1->s2", "s2->s1", "s1->s1", "s2->s2")
WIDTH = 16  # encoder base width of every trained model (--width)
ASSEMBLE = False  # --assemble: run nothing, collect what earlier (possibly parallel) runs left in --work


class Missing(Exception):
    """--assemble: a command's output is not there (that row is left out and listed as missing)."""


class Collector(Runner):
    """A Runner for --assemble: a command whose output exists is recorded as done, any other is Missing."""

    def __call__(self, *args: str, skip_if: Path | None = None) -> dict[str, Any]:
        text = "rsir " + " ".join(args)
        if skip_if is not None and skip_if.exists():
            rec = {"cmd": text, "seconds": None, "skipped": True}
            self.commands.append(rec)
            return rec
        raise Missing(text)


def eval_dirs(path: Path) -> dict[str, dict[str, float]]:
    """{direction: {metric: value}} of an eval.json."""
    doc = json.loads((path / "eval.json").read_text())
    out = {}
    for name, r in doc["results"].items():
        out[name.split()[-1]] = {k: round(float(r["metrics"][k]), 4) for k in KEYS}
    return out


def model_summary(path: Path) -> dict[str, Any]:
    info = json.loads((path / "config.json").read_text()).get("info", {})
    hist = info.get("history", [])
    return {"best_epoch": info.get("best_epoch"), "epochs_run": len(hist),
            "selection_score_best": info.get("best_selection_score", info.get("val_map@20_A")),
            "train_seconds": round(sum(float(h.get("seconds", 0)) for h in hist), 1),
            "distinct_codes_train": info.get("distinct_codes_train")}


def _score(model: Path) -> float:
    """The label-free selection score (partner MRR on the held-out training slice) of a trained model."""
    return float(json.loads((model / "config.json").read_text())["info"]["best_selection_score"])


def selection_stage(run: Runner, archive: Path, work: Path, epochs: int, taus: list[float],
                    weights: list[float], seed: int, batch: int, terms_on: str = "projection") -> dict[str, Any]:
    """Choose tau and the objective weights on the held-out slice of the TRAINING split, label-free.

    Short runs (``epochs``, the weight ramp over them, training seed ``seed``), each scored by the partner MRR
    of its best epoch on the selection slice (rsir.train.selection: 10 % of the training split, never trained
    on; no labels, no validation or test item). Coordinate order: tau on InfoNCE alone (the term every variant
    has), then at that tau w_de for InfoNCE + discrepancy, and (w_de, w_intra) over the full grid for all three
    objectives. Nothing here is indexed or evaluated: the evaluation queries are never seen."""
    gdir = work / "select"
    gdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []

    def trial(terms: str, tau: float, w_de: float | None, w_intra: float | None) -> float:
        extra = ["--objectives", terms, "--tau", str(tau)]
        if w_de is not None:
            extra += ["--w-de", str(w_de), "--ramp"]
        if w_intra is not None:
            extra += ["--w-intra", str(w_intra)]
        on = terms_on != "projection" and w_de is not None
        if on:
            extra += ["--terms-on", terms_on]
        slug = f"{terms.replace('+', '')}-t{tau}" + ("" if w_de is None else f"-de{w_de}") + \
            ("" if w_intra is None else f"-in{w_intra}") + (f"-{terms_on}" if on else "")
        model = gdir / f"model-{slug}"
        tr = run("train", str(archive), "--method", "ss-cm", "--epochs", str(epochs), "--patience", str(epochs),
                 "--out", str(model), "--seed", str(seed), "--batch-size", str(batch), "--width", str(WIDTH),
                 "--workers", "0", "--quiet", *extra, skip_if=model / "config.json")
        sc = _score(model)
        rows.append({"objectives": terms, "tau": tau, "w_de": w_de, "w_intra": w_intra,
                     "terms_on": terms_on if w_de is not None else None,
                     "sel_partner_mrr": round(sc, 4), "best_epoch": model_summary(model)["best_epoch"],
                     "train_wall_s": tr.get("seconds")})
        return sc

    tau = max(taus, key=lambda t: trial("mim", t, None, None))
    w_de_mimde = max(weights, key=lambda w: trial("mim+de", tau, w, None))
    full = max(((a, b) for a in weights for b in weights), key=lambda ab: trial("all", tau, ab[0], ab[1]))
    return {
        "rule": "label-free: partner MRR (Hamming on sign codes, both directions) of the best epoch on the 10 % "
                "selection slice held out of the TRAINING split; no labels, no validation/test item; "
                f"{epochs}-epoch runs, training seed {seed}, weight ramp on for the de/intra weights; tau chosen "
                "on InfoNCE alone, then w_de (mim+de) and (w_de, w_intra) (all) at that tau; de and intra "
                f"act on the {terms_on} outputs",
        "grid": {"tau": taus, "weights": weights, "epochs": epochs},
        "trials": rows,
        "chosen": {"tau": tau, "mim+de": {"w_de": w_de_mimde}, "all": {"w_de": full[0], "w_intra": full[1]}},
    }


T975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def seed_stats(rows: dict[str, Any], groups: dict[str, list[str]]) -> dict[str, Any]:
    """Per variant: mean and sd (over training seeds) of mAP@20 (A) per direction; per ablation: the paired
    (same seed) difference full - ablation, its mean, sd and 95 % t interval; 'exceeds_noise' when that interval
    excludes 0."""
    import statistics as st

    def vals(name: str, d: str) -> list[float]:
        return [rows[r]["directions"][d]["mAP@20(A)"] for r in groups[name] if r in rows]

    out: dict[str, Any] = {"variants": {}, "paired_full_minus": {}}
    for name in groups:
        out["variants"][name] = {d: {"mean": round(st.mean(v), 4), "sd": round(st.stdev(v), 4) if len(v) > 1
                                     else None, "n": len(v)} for d in DIRS if (v := vals(name, d))}
    for name in groups:
        if name == "full":
            continue
        cmp: dict[str, Any] = {}
        for d in DIRS:
            f, a = vals("full", d), vals(name, d)
            if len(f) != len(a) or len(f) < 2:
                continue
            diff = [x - y for x, y in zip(f, a, strict=True)]
            m, sd = st.mean(diff), st.stdev(diff)
            half = T975.get(len(diff), 2.0) * sd / len(diff) ** 0.5
            cmp[d] = {"per_seed": [round(x, 4) for x in diff], "mean": round(m, 4), "sd": round(sd, 4),
                      "ci95": [round(m - half, 4), round(m + half, 4)], "exceeds_noise": abs(m) > half,
                      "full_better_every_seed": all(x > 0 for x in diff)}
        out["paired_full_minus"][name] = cmp
    return out


def sscm_stage(run: Runner, archive: Path, work: Path, variants: list[tuple[str, list[str]]], epochs: int,
               seed: int, batch: int, max_steps: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, extra in variants:
        try:
            out.update(_variant(run, archive, work, name, extra, epochs, seed, batch, max_steps))
        except Missing as e:
            out.setdefault("_missing", []).append(str(e))
    return out


def _variant(run: Runner, archive: Path, work: Path, name: str, extra: list[str], epochs: int, seed: int,
             batch: int, max_steps: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if True:
        slug = name.replace(" ", "_")
        model = work / f"model-{slug}"
        floor = name.startswith("random")
        ep = ["--epochs", "0"] if floor else ["--epochs", str(epochs), "--patience", str(epochs)]
        if max_steps and not floor:
            ep += ["--max-steps", str(max_steps)]
        tr = run("train", str(archive), "--method", "ss-cm", *ep, "--out", str(model), "--seed", str(seed),
                 "--batch-size", str(batch), "--width", str(WIDTH), "--workers", "0", "--quiet", *extra,
                 skip_if=model / "config.json")
        kinds = [("codes", [])] + ([("float", ["--float"])] if name == "full-64" else [])
        for kind, flag in kinds:
            idx = work / f"index-{slug}-{kind}"
            run("index", str(archive), "--model", str(model), "--out", str(idx), "--no-progress", *flag,
                skip_if=idx / "manifest.json")
            ev = work / f"eval-{slug}-{kind}"
            run("eval", str(archive), str(idx), "--protocol", "rsim", "--k", "20", "--out", str(ev),
                skip_if=ev / "eval.json")
            label = name if kind == "codes" else f"{name.split('-')[0]} float embeddings"
            out[label] = {"directions": eval_dirs(ev), "train": model_summary(model),
                          "train_wall_s": tr.get("seconds"), "output": kind}
    return out


def milan_stage(run: Runner, archive: Path, work: Path, cls_epochs: int, milan_epochs: int, seed: int
                ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mod in ("s1", "s2"):
        try:
            out.update(_milan(run, archive, work, mod, cls_epochs, milan_epochs, seed))
        except Missing as e:
            out.setdefault("_missing", []).append(str(e))
    return out


def _milan(run: Runner, archive: Path, work: Path, mod: str, cls_epochs: int, milan_epochs: int, seed: int
           ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if True:
        cls = work / f"milan-{mod}-classifier"
        run("train", str(archive), "--method", "classifier", "--modality", mod, "--epochs", str(cls_epochs),
            "--width", str(WIDTH), "--out", str(cls), "--seed", str(seed), "--workers", "0", "--quiet",
            skip_if=cls / "config.json")
        model = work / f"milan-{mod}"
        tr = run("train", str(archive), "--method", "milan", "--modality", mod, "--features", str(cls), "--bits",
                 "64", "--epochs", str(milan_epochs), "--out", str(model), "--seed", str(seed), "--workers", "0",
                 "--quiet", skip_if=model / "config.json")
        idx = work / f"index-milan-{mod}"
        run("index", str(archive), "--model", str(model), "--out", str(idx), "--no-progress",
            skip_if=idx / "manifest.json")
        ev = work / f"eval-milan-{mod}"
        run("eval", str(archive), str(idx), "--protocol", "rsim", "--k", "20", "--out", str(ev),
            skip_if=ev / "eval.json")
        out[f"MiLAN-64 supervised {mod}"] = {"directions": eval_dirs(ev), "train_wall_s": tr.get("seconds")}
    return out


def throughput_stage(run: Runner, work: Path, n: int, seed: int) -> dict[str, Any]:
    """Encoding both modalities end to end at 120 x 120 px (an untrained pair costs what a trained one does)."""
    arch = work / "throughput-120"
    run("simulate", "--n", str(n), "--out", str(arch), "--difficulty", "hard", "--size", "120", "--bitemporal",
        "0", "--seed", str(seed), "--quiet", skip_if=arch / "manifest.json")
    model = work / "throughput-model"
    run("train", str(arch), "--method", "ss-cm", "--epochs", "0", "--width", str(WIDTH), "--out", str(model),
        "--quiet",
        skip_if=model / "config.json")
    rows = {}
    before = os.environ.get("OMP_NUM_THREADS")
    for threads in (1, 2):
        idx = work / f"throughput-index-{threads}"
        os.environ["OMP_NUM_THREADS"] = str(threads)
        rec = run("index", str(arch), "--model", str(model), "--out", str(idx), "--no-progress",
                  skip_if=idx / "manifest.json" if ASSEMBLE else None)
        # the caller's setting holds again for the stages after this one (training with 2 torch threads on
        # 120 px patches crashed in backward on this machine, see BENCHMARKS.md)
        if before is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = before
        m = json.loads((idx / "manifest.json").read_text())
        rows[f"{threads} torch thread(s)"] = {"pairs": n, "build_seconds": m["build_seconds"],
                                              "pairs_per_s": round(n / m["build_seconds"], 1),
                                              "command_wall_s": rec.get("seconds"),
                                              "loadavg_before": rec.get("loadavg_before")}
    return rows


def reben_stage(run: Runner, src: Path, work: Path, epochs: int, seed: int, max_steps: int | None
                ) -> dict[str, Any]:
    archive = work / "reben"
    run("ingest", str(src), "--format", "reben", "--out", str(archive), "--overwrite", "--quiet",
        skip_if=archive / "manifest.json")
    (work / "reben-runs").mkdir(parents=True, exist_ok=True)
    out = sscm_stage(run, archive, work / "reben-runs", [("full-64", []), ("random", [])], epochs, seed, 8,
                     max_steps)
    return {"data": "REAL reBEN sample (BigEarthNet v2.0), S1 2 x 120 x 120 / S2 12 x 120 x 120", "results": out}


def table(rows: dict[str, Any]) -> str:
    head = "| model | bits | " + " | ".join(f"{d} mAP@20 (A)" for d in DIRS) + " | " + \
        " | ".join(f"{d} F1@20" for d in DIRS) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(DIRS))]
    for name, r in rows.items():
        if name.startswith("_"):
            continue
        d = r["directions"]
        tail = name.split()[0].split("-")[-1]
        bits = "float" if r.get("output") == "float" else (tail if tail.isdigit() else "64")
        cells = [f"{d[x]['mAP@20(A)']:.4f}" if x in d else "-" for x in DIRS]
        cells += [f"{d[x]['rsim_F1@20']:.4f}" if x in d else "-" for x in DIRS]
        lines.append(f"| {name} | {bits} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--max-steps", type=int, default=None, help="at most N batches per ss-cm epoch (loaded machine)")
    ap.add_argument("--cls-epochs", type=int, default=10)
    ap.add_argument("--milan-epochs", type=int, default=30)
    ap.add_argument("--throughput-n", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra-seeds", type=lambda v: [int(x) for x in v.split(",") if x], default=[],
                    help="comma list: train the full 64-bit model and the ablations again with these seeds (the "
                         "archive keeps --seed)")
    ap.add_argument("--ramp", action="store_true",
                    help="full and mim+de with the DA4DTE weight ramp (rsir train --ramp); adds the constant-weight "
                         "full model as a row of its own")
    ap.add_argument("--select", action="store_true",
                    help="choose tau and the objective weights first, label-free, on the held-out slice of the "
                         "training split (short runs; recorded under 'selection'), and train every variant with them")
    ap.add_argument("--weights", default=None, metavar="JSON",
                    help='the objective weights outright, in the form of selection.chosen: {"tau": 0.5, '
                         '"mim+de": {"w_de": 1}, "all": {"w_de": 1, "w_intra": 1}} (not with --select)')
    ap.add_argument("--terms-on", default="projection", choices=["projection", "encoder"],
                    help="where full and mim+de place the discrepancy and intra-modal terms (rsir train --terms-on)")
    ap.add_argument("--select-epochs", type=int, default=20)
    ap.add_argument("--select-taus", type=lambda v: [float(x) for x in v.split(",")], default=[0.1, 0.5])
    ap.add_argument("--select-weights", type=lambda v: [float(x) for x in v.split(",")], default=[0.3, 1.0, 3.0])
    ap.add_argument("--work", default="/tmp/sscm-bench")
    ap.add_argument("--reben", default=None, metavar="DIR", help="the reBEN sample (../shared/data/reben-sample)")
    ap.add_argument("--skip", default="", help="comma list of stages to skip: sscm,milan,throughput,ablations,bits (bits: the 32 / 128-bit "
                                               "and constant-weight rows) "
                                               "(a second process can run the others beside the first)")
    ap.add_argument("--variants", default="full-64,random,mim-64,mim+de-64",
                    help="comma list: the 64-bit variants to train (and again per --extra-seeds); models already in "
                         "--work are reused")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sscm.json"))
    ap.add_argument("--width", type=int, default=16, help="encoder base width (ss-cm, classifier, throughput)")
    ap.add_argument("--assemble", action="store_true",
                    help="run nothing: write the JSON from what runs with the same settings left in --work")
    args = ap.parse_args()
    if args.select and args.weights:
        ap.error("--select chooses the weights; --weights gives them: not both")
    global WIDTH, ASSEMBLE
    WIDTH, ASSEMBLE = args.width, args.assemble
    skip = set(filter(None, args.skip.split(",")))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    run = Collector(work / "commands.log") if args.assemble else Runner(work / "commands.log")
    t0 = time.time()
    archive = work / f"hard-{args.n}-{args.size}"
    run("simulate", "--n", str(args.n), "--out", str(archive), "--difficulty", "hard", "--size", str(args.size),
        "--bitemporal", "0", "--seed", str(args.seed), "--quiet", skip_if=archive / "manifest.json")
    ramp = ["--ramp"] if args.ramp else []
    selection = None
    hp: dict[str, list[str]] = {"all": [], "mim": [], "mim+de": []}
    if args.select:
        selection = selection_stage(run, archive, work, args.select_epochs, args.select_taus,
                                    args.select_weights, args.seed, args.batch, args.terms_on)
        ch = selection["chosen"]
        tau = ["--tau", str(ch["tau"])]
        hp = {"mim": tau, "mim+de": [*tau, "--w-de", str(ch["mim+de"]["w_de"])],
              "all": [*tau, "--w-de", str(ch["all"]["w_de"]), "--w-intra", str(ch["all"]["w_intra"])]}
    if args.weights:  # given outright (e.g. a sensitivity run), instead of --select
        w = json.loads(args.weights)
        tau = ["--tau", str(w["tau"])]
        hp = {"mim": tau, "mim+de": [*tau, "--w-de", str(w["mim+de"]["w_de"])],
              "all": [*tau, "--w-de", str(w["all"]["w_de"]), "--w-intra", str(w["all"]["w_intra"])]}
    if args.terms_on != "projection":
        hp["all"] = [*hp["all"], "--terms-on", args.terms_on]
        hp["mim+de"] = [*hp["mim+de"], "--terms-on", args.terms_on]
    variants = [("full-64", [*ramp, *hp["all"]]), ("random", [])]
    if "ablations" not in skip:
        variants += [("mim-64", ["--objectives", "mim", *hp["mim"]]),
                     ("mim+de-64", ["--objectives", "mim+de", *ramp, *hp["mim+de"]])]
    # every variant again with other training seeds (same archive): the spread of the numbers, paired by seed
    seeded = ("full-64", "mim-64", "mim+de-64", "random")
    wanted = set(filter(None, args.variants.split(",")))
    if wanted - set(seeded):
        ap.error(f"--variants: unknown {', '.join(sorted(wanted - set(seeded)))} (of {', '.join(seeded)})")
    variants = [(name, extra) for name, extra in variants if name in wanted]
    for s in [s for s in args.extra_seeds if s != args.seed]:
        variants += [(f"{name} seed {s}", [*extra, "--seed", str(s)]) for name, extra in variants
                     if name in seeded]
    if not {"ablations", "bits"} & skip:
        variants += [("full-32", ["--bits", "32", *ramp, *hp["all"]]),
                     ("full-128", ["--bits", "128", *ramp, *hp["all"]])]
        if args.ramp:
            variants.append(("full-64 constant weights", []))
    doc: dict[str, Any] = {
        "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": f"SIMULATED hard archive, {args.n} S1/S2 pairs at {args.size} x {args.size} px "
                f"(rsir simulate --difficulty hard --seed {args.seed})",
        "protocol": "rsim: validation queries against the test split; mAP@20 variant A, RSiM P/R/F1@20; "
                    "relevance = any shared label; labels used only here (and by the MiLAN reference)",
        "settings": {"epochs": args.epochs, "batch": args.batch, "seed": args.seed, "extra_seeds": args.extra_seeds, "ramp": args.ramp,
                     "max_steps_per_epoch": args.max_steps, "width": args.width, "terms_on": args.terms_on,
                     "variants": args.variants, "classifier_epochs": args.cls_epochs,
                     "milan_epochs": args.milan_epochs,
                     "objective_defaults": "tau 0.5, w_de 1, w_intra 1, no quantisation term",
                     "objective_args": hp},
        "results": {} if "sscm" in skip else sscm_stage(run, archive, work, variants, args.epochs, args.seed,
                                                         args.batch, args.max_steps),
    }
    if selection is not None:
        doc["selection"] = selection
    if doc["results"] and args.extra_seeds:
        groups = {base.split("-")[0] if base != "random" else "floor":
                  [r for r in doc["results"] if r == base or r.startswith(base + " seed ")]
                  for base in seeded}
        doc["seed_stats"] = seed_stats(doc["results"], {"full": groups["full"], "mim": groups["mim"],
                                                        "mim+de": groups["mim+de"], "floor": groups["floor"]})
    if "milan" not in skip:
        doc["results"].update(milan_stage(run, archive, work, args.cls_epochs, args.milan_epochs, args.seed))
    if "throughput" not in skip:
        try:
            doc["throughput"] = throughput_stage(run, work, args.throughput_n, args.seed)
        except Missing as e:
            doc["throughput"] = {"_missing": [str(e)]}
    if args.reben:
        try:
            doc["reben_sample"] = reben_stage(run, Path(args.reben), work, args.epochs, args.seed, args.max_steps)
        except Missing as e:
            doc["reben_sample"] = {"results": {"_missing": [str(e)]}}
    doc["commands"] = run.commands
    doc["wall_seconds"] = round(time.time() - t0, 1)
    doc["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    if doc["results"]:
        print(table(doc["results"]))
    if args.reben:
        print(table(doc["reben_sample"]["results"]))
    if args.assemble:
        doc["assembled"] = ("written by --assemble from runs with these settings (the ss-cm variants, the MiLAN "
                            "reference and the rest ran as parallel processes); seconds are the models' own")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
