"""The sentence side on the real caption corpora (../shared/data/rs-captions): vocabulary coverage of the MiniLM
WordPiece vocabulary, sentence-encoding throughput in batches, single-query latency, and the caption
augmentation fitted on the corpora (drop probabilities and example views).

    nice -n 10 .venv/bin/python bench/text_bench.py [--n-throughput 2000] [--n-queries 100]

Writes bench/results/text_encoder.json. One torch thread unless --threads says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT.parent / "shared" / "data" / "rs-captions"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-throughput", type=int, default=2000)
    ap.add_argument("--n-queries", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "text_encoder.json"))
    args = ap.parse_args()
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from rsir.data.captions import parse_precomp
    from rsir.text.augment import TextAugmenter, vocabulary_coverage
    from rsir.text.sentences import POOLING, SentenceEncoder

    res: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_before": list(os.getloadavg()),
                             "python": platform.python_version(), "torch": torch.__version__,
                             "torch_threads": args.threads},
                 "data": "real caption text: UCM, Sydney, RSICD, RSITMD (AMFMN precomp files)", "corpora": {}}
    allcaps: dict[str, list[str]] = {}
    for name in ("ucm", "sydney", "rsicd", "rsitmd"):
        recs = parse_precomp(CORPORA / f"{name}_precomp")
        caps = [c for r in recs for c in r.captions]
        allcaps[name] = caps
        cov = vocabulary_coverage(caps)
        res["corpora"][name] = {"images": len(recs), "captions": len(caps),
                                "distinct_captions": len(set(caps)), **cov}
        print(name, len(caps), f"coverage tokens {cov['tokens']:.4f} types {cov['types']:.4f}", flush=True)
    enc = SentenceEncoder()
    t0 = time.perf_counter()
    enc.encode(["warm up the model"])
    res["model_load_s"] = round(time.perf_counter() - t0, 2)
    res["pooling"] = POOLING
    rng = np.random.default_rng(0)
    pool = sorted(set(allcaps["rsicd"]))
    sample = [pool[i] for i in rng.permutation(len(pool))[: args.n_throughput]]
    thr = {}
    for bs in (16, 64, 256):
        t0 = time.perf_counter()
        enc.encode(sample, batch_size=bs)
        dt = time.perf_counter() - t0
        thr[str(bs)] = round(len(sample) / dt, 1)
        print(f"batch {bs}: {thr[str(bs)]} sentences/s", flush=True)
    res["throughput_sentences_per_s"] = thr
    res["throughput_sample"] = f"{len(sample)} distinct RSICD captions"
    queries = [pool[i] for i in rng.permutation(len(pool))[: args.n_queries]]
    lat = []
    enc.cache_size = 0  # measure the model, not the cache
    for q in queries:
        enc._cache.clear()
        t0 = time.perf_counter()
        enc.encode_query(q + " .")
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    res["query_latency_ms"] = {"n": len(lat), "p50": round(statistics.median(lat), 2),
                               "p95": round(lat[int(0.95 * (len(lat) - 1))], 2), "max": round(lat[-1], 2),
                               "mean_words": round(float(np.mean([len(q.split()) for q in queries])), 1)}
    print("query latency", res["query_latency_ms"], flush=True)
    corpus = [c for n in ("ucm", "sydney", "rsicd", "rsitmd") for c in allcaps[n]]
    aug = TextAugmenter().fit(corpus)
    words = ["the", "of", "are", "many", "green", "buildings", "river", "lagoon", "tennis", "viaduct"]
    res["augmentation"] = {
        "fitted_on_captions": len(corpus),
        "drop_probability": {w: round(aug.drop_probability(w), 4) for w in words},
        "synonym_groups_in_corpus_vocabulary": len(TextAugmenter().fit(corpus, restrict_synonyms=True).synonyms),
        "synonym_groups": len(aug.synonyms),
        "examples": [{"caption": c, "view": aug.augment(c, np.random.default_rng(i))}
                     for i, c in enumerate(sample[:6])]}
    res["machine"]["loadavg_after"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
