"""Evaluation protocols: which items are queries and which the archive, directions, and blockwise evaluation.

Protocols (DESIGN.md):

- ``rsim``: the RSiM BigEarthNet protocol, validation split as queries, test split as archive.
- ``loo``: leave-one-out over one split (default test; MiLAN eval): every item of the split is a query against
  all the others, its own item dropped from its ranking.

With two modalities a direction ``S1->S2`` takes query codes of one modality and database codes of the other
for the same items; in leave-one-out the query's own item is dropped in every direction, so a S1 query cannot
be credited for finding its own S2 twin.

``evaluate`` computes distances for blocks of queries (packed-bit Hamming by popcount, inner product or squared
L2), ranks the whole archive per query and averages every metric of :mod:`rsir.eval.metrics` over queries, so
memory stays bounded (10k queries x 100k items works) while every number is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rsir.bits import hamming_matrix
from rsir.eval import metrics as M

PROTOCOLS = ("rsim", "loo")
METRICS = ("hamming", "ip", "l2")
DEFAULT_PK_CURVE = (1, 5, 10, 20, 50, 100, 200, 500, 1000)
# per-query working arrays of one block stay around this many elements (int64/float64 each)
_BLOCK_ELEMENTS = 1 << 22


class ProtocolError(ValueError):
    """An unknown protocol, direction or a split with no items."""


@dataclass
class QuerySplit:
    """Archive positions of the queries and of the database, and per query the database position to drop."""

    protocol: str
    query_pos: np.ndarray
    db_pos: np.ndarray
    exclude: np.ndarray | None
    query_split: str
    db_split: str

    def limit(self, max_queries: int | None, seed: int = 0) -> QuerySplit:
        """A subset of at most ``max_queries`` queries (evenly spread, deterministic) for a quick run."""
        if max_queries is None or max_queries >= len(self.query_pos):
            return self
        if max_queries < 1:
            raise ProtocolError("max_queries must be >= 1")
        pick = np.linspace(0, len(self.query_pos) - 1, max_queries).round().astype(np.int64)
        pick = np.unique(pick)
        ex = None if self.exclude is None else self.exclude[pick]
        return QuerySplit(self.protocol, self.query_pos[pick], self.db_pos, ex, self.query_split, self.db_split)


def split_queries(archive: Any, protocol: str, split: str = "test") -> QuerySplit:
    """Queries and database of an archive under a protocol ("rsim" or "loo" over ``split``)."""
    if protocol == "rsim":
        q = np.asarray(archive.split_positions("validation"))
        db = np.asarray(archive.split_positions("test"))
        if not len(q) or not len(db):
            raise ProtocolError(f"protocol rsim needs validation and test items (archive has {len(q)} validation, "
                                f"{len(db)} test)")
        return QuerySplit("rsim", q, db, None, "validation", "test")
    if protocol == "loo":
        pos = np.asarray(archive.split_positions(None if split in ("all", "") else split))
        if len(pos) < 2:
            counts = {str(s): int((archive.catalog["split"] == s).sum()) for s in archive.catalog["split"].unique()}
            have = ", ".join(f"{s or '(none)'} {n}" for s, n in sorted(counts.items())) or "no items"
            hint = f"; evaluate over all {len(archive)} items with split 'all' (--split all)" \
                if split not in ("all", "") and len(archive) >= 2 else ""
            raise ProtocolError(f"protocol loo needs at least 2 items in split {split!r} (found {len(pos)}; the "
                                f"archive's splits: {have}){hint}")
        return QuerySplit("loo", pos, pos, np.arange(len(pos), dtype=np.int64), split, split)
    raise ProtocolError(f"unknown protocol {protocol!r} (one of {', '.join(PROTOCOLS)})")


def parse_direction(direction: str) -> tuple[str, str]:
    """'S1->S2' (any case, also 's1-s2' or 's1:s2') as (query modality, database modality) in lower case."""
    d = direction.strip().lower().replace(" ", "")
    for sep in ("->", ":", "-"):
        if sep in d:
            a, _, b = d.partition(sep)
            if a and b:
                return a, b
    raise ProtocolError(f"direction {direction!r}: expected QUERY->DATABASE, e.g. s1->s2")


def directions(modalities: Sequence[str]) -> list[tuple[str, str]]:
    """Every (query, database) modality pair, e.g. S1->S1, S1->S2, S2->S1, S2->S2."""
    return [(a, b) for a in modalities for b in modalities]


# ---------------------------------------------------------------------------------------------------------
# distances
# ---------------------------------------------------------------------------------------------------------
def hamming_distances(q_codes: np.ndarray, db_codes: np.ndarray) -> np.ndarray:
    """Hamming distances (nq, n) between packed uint8 codes, as int32 bit counts (rsir.bits)."""
    try:
        return hamming_matrix(q_codes, db_codes)
    except ValueError as e:
        raise ProtocolError(str(e)) from None


def distances(q: np.ndarray, db: np.ndarray, metric: str) -> np.ndarray:
    """Distance matrix (smaller is nearer): Hamming bit counts, negative inner product or squared L2."""
    if metric == "hamming":
        return hamming_distances(q, db)
    qf = np.asarray(q, dtype=np.float64)
    dbf = np.asarray(db, dtype=np.float64)
    if metric == "ip":
        return -(qf @ dbf.T)
    if metric == "l2":
        d = (qf * qf).sum(1)[:, None] - 2.0 * (qf @ dbf.T) + (dbf * dbf).sum(1)[None, :]
        return np.maximum(d, 0.0)
    raise ProtocolError(f"unknown metric {metric!r} (one of {', '.join(METRICS)})")


# ---------------------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """Averaged metrics (name -> value, each name carrying its variant and k) and the averaged curves."""

    metrics: dict[str, float]
    curves: dict[str, list[float]] = field(default_factory=dict)
    n_queries: int = 0
    n_db: int = 0
    metric: str = ""
    bits: int | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict of everything in the result."""
        return {"metrics": self.metrics, "curves": self.curves, "n_queries": self.n_queries, "n_db": self.n_db,
                "distance": self.metric, "bits": self.bits}


def evaluate_full(query_vecs: np.ndarray, db_vecs: np.ndarray, metric: str, q_labels: np.ndarray,
                  db_labels: np.ndarray, ks: Sequence[int] = (10, 20, 100), exclude: np.ndarray | None = None,
                  pk_curve: Sequence[int] = DEFAULT_PK_CURVE, bits: int | None = None,
                  block_size: int | None = None, run_blocks: RunBlocks | None = None) -> EvalResult:
    """Every metric averaged over all queries, plus PR-over-radius and P@k curves (hamming only for radius).

    ``bits`` is the code length for hamming (default: 8 x bytes). ``exclude`` gives per query the database
    row to drop (leave-one-out). Queries are processed in blocks so the (block, n) working arrays stay small;
    ``run_blocks`` runs the blocks elsewhere (``rsir.scale.evaluate`` on a Dask cluster).
    """
    if metric not in METRICS:
        raise ProtocolError(f"unknown metric {metric!r} (one of {', '.join(METRICS)})")
    qv, dv = np.asarray(query_vecs), np.asarray(db_vecs)
    ql, dl = np.asarray(q_labels), np.asarray(db_labels)
    nq, n = qv.shape[0], dv.shape[0]
    if ql.shape[0] != nq or dl.shape[0] != n:
        raise ProtocolError(f"{nq} query vectors but {ql.shape[0]} label rows, or {n} database vectors but "
                            f"{dl.shape[0]} label rows")
    if nq == 0 or n == 0:
        raise ProtocolError("nothing to evaluate: no queries or an empty database")
    ex = None if exclude is None else np.asarray(exclude, dtype=np.int64)
    n_ranked = n - (1 if ex is not None else 0)
    if n_ranked < 1:
        raise ProtocolError("the database holds no item besides the query")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ProtocolError(f"ks must be positive integers, got {ks}")
    curve_ks = [k for k in sorted({int(k) for k in pk_curve}) if 1 <= k <= n_ranked]
    if metric == "hamming":
        bits = int(bits or qv.shape[1] * 8)
    else:
        bits = None
    bq = block_size or max(1, min(1024, _BLOCK_ELEMENTS // n))
    starts = list(range(0, nq, bq))
    shared = {"dv": dv, "dl": dl, "metric": metric, "ks": ks, "bits": bits, "curve_ks": curve_ks}
    blocks = [{"qv": qv[s:s + bq], "ql": ql[s:s + bq], "ex": None if ex is None else ex[s:s + bq]} for s in starts]
    sums: dict[str, np.ndarray | float] = {}
    # the block sums are added in block order whoever computed them, so a cluster's result is the local one
    for block in (run_blocks or _run_here)(block_sums, shared, blocks):
        for key, tot in block.items():
            sums[key] = tot if key not in sums else sums[key] + tot
    out: dict[str, float] = {}
    curves: dict[str, list[float]] = {}
    for key, tot in sums.items():
        mean = np.asarray(tot, dtype=np.float64) / nq
        if mean.ndim == 0:
            out[key] = float(mean)
        else:
            curves[key] = mean.tolist()
    for k in ks:
        out[f"rsim_F1@{k}"] = M.rsim_f1(out[f"rsim_P@{k}"], out[f"rsim_R@{k}"])
    if "pk_curve" in curves:
        curves["pk_curve_k"] = [float(k) for k in curve_ks]
    if bits is not None:
        curves["radius"] = [float(r) for r in range(bits + 1)]
    return EvalResult(_ordered(out, ks), curves, nq, n, metric, bits)


def block_sums(qv: np.ndarray, ql: np.ndarray, ex: np.ndarray | None, dv: np.ndarray, dl: np.ndarray, metric: str,
               ks: Sequence[int], bits: int | None, curve_ks: Sequence[int]) -> dict[str, Any]:
    """Per-metric sums over one block of queries ranked against the whole database (a unit of work that
    :mod:`rsir.scale` can run on a cluster)."""
    d = distances(qv, dv, metric)
    if metric == "hamming":
        d = d.astype(np.uint16 if (bits or 0) < 65536 else np.int32)  # small ints: numpy's stable sort is radix
    block = M.per_query_metrics(d, ql, dl, ks, ex, hamming_bits=bits, pk_curve=curve_ks)
    return {key: v.sum(0) for key, v in block.items()}


#: runs ``fn(**shared, **block)`` for every block and yields the results in block order
RunBlocks = Callable[[Callable[..., dict[str, Any]], dict[str, Any], list[dict[str, Any]]],
                     Iterable[dict[str, Any]]]


def _run_here(fn: Callable[..., dict[str, Any]], shared: dict[str, Any], blocks: list[dict[str, Any]]
              ) -> Iterator[dict[str, Any]]:
    for b in blocks:
        yield fn(**shared, **b)


def _ordered(m: dict[str, float], ks: Sequence[int]) -> dict[str, float]:
    """Metrics grouped by k in a fixed reading order."""
    names = ["mAP@{k}(A)", "mAP@{k}(B)", "mAP@{k}(C)", "mAP@{k}(C,tie-aware)", "P@{k}", "P@{k}(tie-aware)",
             "R@{k}", "WAP@{k}", "ACG@{k}", "NDCG@{k}(exp)", "NDCG@{k}(lin)", "rsim_P@{k}", "rsim_R@{k}",
             "rsim_F1@{k}"]
    strict = [f"{n}[{r}]" for r in M.STRICT_RELEVANCES
              for n in ("mAP@{k}(A)", "mAP@{k}(C)", "mAP@{k}(C,tie-aware)", "P@{k}")]
    names = names + strict
    out = {name.format(k=k): m[name.format(k=k)] for k in ks for name in names if name.format(k=k) in m}
    out.update({key: v for key, v in m.items() if key not in out})
    return out


def evaluate(query_vecs: np.ndarray, db_vecs: np.ndarray, metric: str, q_labels: np.ndarray,
             db_labels: np.ndarray, ks: Sequence[int] = (10, 20, 100), exclude: np.ndarray | None = None
             ) -> dict[str, float]:
    """Every metric averaged over queries as {name: value}; names carry variant and k, e.g. "mAP@20(A)"."""
    return evaluate_full(query_vecs, db_vecs, metric, q_labels, db_labels, ks, exclude).metrics
