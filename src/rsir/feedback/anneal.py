"""ANNEAL: annotation cost-efficient active learning for deep-metric-learning retrieval.

Hoxha, Sumbul, Henkel, Möllenbrok, Demir, arXiv:2406.10107 (TGRS) and arXiv:2306.11605 (IGARSS). The expert
labels *pairs* of images as similar or dissimilar (one bit, never a class label). Each round:

1. the metric model is trained on the labelled pairs with the contrastive loss (by default a head on rsir's
   frozen features, :class:`FrozenHead`, retrained from its initialisation every round, or with ``fine_tune``
   from the last round's head; or end to end, a CNN encoder and its projection,
   :class:`rsir.methods.anneal_encoder.EncoderMetric`, passed to :func:`run` as ``model``);
2. every item is embedded and the unlabelled candidate pairs (the pool) are scored for *uncertainty*:
   - **MGUE** (metric-guided): a threshold tau on embedding distances that separates similar from dissimilar
     pairs is estimated from the current metric space (:func:`mgue_threshold`, from the labelled pairs'
     distances in this round's embedding), and a pair's uncertainty is ``-|d - tau|``: the closer to the
     boundary, the more uncertain;
   - **BCGUE** (binary-classifier-guided): a binary classifier on pair features (:func:`pair_features`) is
     trained on the labelled pairs; uncertainty is ``-|p - 0.5|`` of its probability of "similar";
3. *diversity*: the ``candidates * budget`` most uncertain pairs are clustered with k-means into ``budget``
   clusters on a pair representation, and the pair nearest each cluster centre is chosen (:func:`select`);
4. the oracle (an expert, or archive labels in simulation) answers; the answers join the labelled set.

:data:`STRATEGIES` also holds the ablations of the paper's comparison: uncertainty alone (MGUE top-b),
diversity alone (k-means over the whole unlabelled pool) and random pairs.

What the papers' stored copies confirm (title, abstract, introduction; the experimental set-up and the code at
git.tu-berlin.de/rsim/ANNEAL could not be read here) is the above. These are rsir's choices, unverified against
the papers: the pool (``pool`` uniform random pairs of training items, or with ``pool_from="knn"`` each item
with its ``neighbours`` nearest in the frozen features), P0 = ``initial`` random pairs, ``budget`` pairs per
round, ``candidates * budget`` uncertain pairs clustered, tau as the midpoint of the class means, the head
retrained from its seeded initialisation each round (``fine_tune`` starts from the last head), a linear head
on frozen features by default (the end-to-end CNN is the option above), the contrastive margin 1 on L2-normalised embeddings, and no
transitive expansion of the answers (valid only when "similar" is an equivalence, e.g. identical label sets).

Pair representation (for clustering and for the BCGUE classifier) is symmetric in the two items, since a pair
is unordered: ``[z_i + z_j, |z_i - z_j|]`` for clustering, ``[|z_i - z_j|, z_i * z_j]`` for the classifier.
torch is imported inside the functions that train, so the store and the service load without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from rsir.feedback import FeedbackError

STRATEGIES = ("anneal-mgue", "anneal-bcgue", "uncertainty", "diversity", "random")
THRESHOLDS = ("midpoint", "error")
POOLS = ("uniform", "knn")


@dataclass
class AnnealConfig:
    """One active-learning run: selection strategy, budget per round, rounds, pool, and the head's training."""

    strategy: str = "anneal-mgue"
    budget: int = 100          # pairs annotated per round (b, also the number of clusters)
    rounds: int = 10           # selection rounds after the initial set
    initial: int = 100         # random pairs annotated before the first round (P0)
    candidates: int = 4        # the candidates * budget most uncertain pairs go to clustering
    pool: int = 10000          # unlabelled candidate pairs drawn from the items (at most)
    pool_from: str = "uniform"  # uniform pairs of items, or "knn": each item with its nearest neighbours
    neighbours: int = 10       # k of the "knn" pool
    threshold: str = "midpoint"  # MGUE tau: midpoint of the class means, or the least-error cut
    dim: int = 64              # embedding size of the head
    hidden: int = 0            # hidden width of the head (0: a linear head; see BENCHMARKS.md)
    margin: float = 1.0        # contrastive margin on L2-normalised embeddings (distances lie in [0, 2])
    steps: int = 100           # optimiser steps per round
    fine_tune: bool = False    # start each round from the last round's head instead of the initialisation
    batch: int = 1024          # pairs per step (all of them while fewer)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    kmeans_iters: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise FeedbackError(f"strategy {self.strategy!r}: one of {', '.join(STRATEGIES)}")
        if self.pool_from not in POOLS:
            raise FeedbackError(f"pool_from {self.pool_from!r}: one of {', '.join(POOLS)}")
        if self.threshold not in THRESHOLDS:
            raise FeedbackError(f"threshold {self.threshold!r}: one of {', '.join(THRESHOLDS)}")
        for name in ("budget", "pool", "dim", "steps", "batch", "candidates", "neighbours"):
            if int(getattr(self, name)) < 1:
                raise FeedbackError(f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("rounds", "initial", "hidden"):
            if int(getattr(self, name)) < 0:
                raise FeedbackError(f"{name} must be at least 0 (got {getattr(self, name)})")
        if not self.margin > 0 or not self.lr > 0:
            raise FeedbackError("margin and lr must be positive")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------
# pairs
# ---------------------------------------------------------------------------------------------------------
def sample_pool(items: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``size`` distinct unordered pairs (i < j) of the given item positions, drawn uniformly."""
    items = np.asarray(items, dtype=np.int64)
    n = items.size
    total = n * (n - 1) // 2
    if n < 2:
        raise FeedbackError(f"a pool of pairs needs at least 2 items (got {n})")
    size = min(size, total)
    seen: set[tuple[int, int]] = set()
    out_i: list[int] = []
    out_j: list[int] = []
    while len(out_i) < size:
        m = 2 * (size - len(out_i)) + 16
        a = rng.integers(0, n, m)
        b = rng.integers(0, n, m)
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            if x == y:
                continue
            p, q = (int(items[x]), int(items[y]))
            key = (p, q) if p < q else (q, p)
            if key in seen:
                continue
            seen.add(key)
            out_i.append(key[0])
            out_j.append(key[1])
            if len(out_i) == size:
                break
    return np.asarray(out_i, np.int64), np.asarray(out_j, np.int64)


def knn_pool(x: np.ndarray, items: np.ndarray, k: int, size: int, rng: np.random.Generator,
             block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The distinct unordered pairs (i < j) of each item with its ``k`` nearest other items (Euclidean, in the
    rows of ``x``), ``size`` of them drawn uniformly when there are more."""
    items = np.asarray(items, dtype=np.int64)
    if items.size < 2:
        raise FeedbackError(f"a pool of pairs needs at least 2 items (got {items.size})")
    k = min(k, items.size - 1)
    local = np.arange(items.size)  # rows of the items' own features, in float64
    nb = np.concatenate([part for _, _, part in nearest_blocks(np.asarray(x[items], np.float64), local, local, k,
                                                               block)])
    a = np.repeat(np.arange(items.size), k)
    b = nb.ravel()
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keys = np.unique(lo * items.size + hi)
    if keys.size > size:
        keys = np.sort(rng.choice(keys, size, replace=False))
    return items[keys // items.size], items[keys % items.size]


def candidate_pool(x: np.ndarray, items: np.ndarray, cfg: AnnealConfig, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The unlabelled pool of candidate pairs the strategies choose from, as ``cfg.pool_from`` says."""
    if cfg.pool_from == "knn":
        return knn_pool(x, items, cfg.neighbours, cfg.pool, rng)
    return sample_pool(items, cfg.pool, rng)


def pair_distances(z: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pair's embeddings."""
    return np.sqrt(((z[i] - z[j]) ** 2).sum(1))


def cluster_features(z: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Symmetric pair representation for clustering: [z_i + z_j, |z_i - z_j|]."""
    return np.concatenate([z[i] + z[j], np.abs(z[i] - z[j])], axis=1)


def pair_features(z: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Symmetric pair features for the BCGUE classifier: [|z_i - z_j|, z_i * z_j]."""
    return np.concatenate([np.abs(z[i] - z[j]), z[i] * z[j]], axis=1)


# ---------------------------------------------------------------------------------------------------------
# uncertainty
# ---------------------------------------------------------------------------------------------------------
def mgue_threshold(d: np.ndarray, y: np.ndarray, method: str = "midpoint", fallback: float | None = None) -> float:
    """tau separating similar (y = 1, small d) from dissimilar pairs in the current metric space.

    ``midpoint``: halfway between the mean distance of the similar and of the dissimilar labelled pairs.
    ``error``: the cut (midway between consecutive sorted distances) that misclassifies the fewest labelled pairs
    when "similar" means d < tau; ties go to the middle of the best cuts. With one class only, ``fallback``
    (e.g. the pool's median distance) is returned.
    """
    d = np.asarray(d, np.float64)
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        if fallback is None:
            raise FeedbackError("MGUE needs labelled pairs of both answers (or a fallback threshold)")
        return float(fallback)
    if method == "midpoint":
        return float((d[y].mean() + d[~y].mean()) / 2.0)
    if method != "error":
        raise FeedbackError(f"threshold {method!r}: one of {', '.join(THRESHOLDS)}")
    order = np.argsort(d, kind="stable")
    ds, ys = d[order], y[order]
    # cut after position k (k = 0..n): errors = dissimilar among the first k + similar among the rest
    dis_before = np.concatenate([[0], np.cumsum(~ys)])
    sim_after = y.sum() - np.concatenate([[0], np.cumsum(ys)])
    errors = dis_before + sim_after
    cuts = np.concatenate([[ds[0] - 1e-6], (ds[:-1] + ds[1:]) / 2.0, [ds[-1] + 1e-6]])
    best = np.flatnonzero(errors == errors.min())
    return float(cuts[best[len(best) // 2]])


def mgue_uncertainty(d: np.ndarray, tau: float) -> np.ndarray:
    """MGUE: the closer a pair's distance to tau, the more uncertain (larger is more uncertain)."""
    return -np.abs(np.asarray(d, np.float64) - tau)


def bcgue_uncertainty(p: np.ndarray) -> np.ndarray:
    """BCGUE: the closer the classifier's P(similar) to 0.5, the more uncertain."""
    return -np.abs(np.asarray(p, np.float64) - 0.5)


def train_pair_classifier(feats: np.ndarray, y: np.ndarray, seed: int = 0, hidden: int = 64, steps: int = 200,
                          lr: float = 1e-2) -> Callable[[np.ndarray], np.ndarray]:
    """BCGUE's binary classifier: a one-hidden-layer MLP on pair features, trained with class-balanced
    binary cross-entropy on the labelled pairs; returns a function pair features -> P(similar)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    x = torch.as_tensor(np.asarray(feats, np.float32))
    t = torch.as_tensor(np.asarray(y, np.float32))
    net = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 1))
    pos = float(t.sum())
    neg = float(len(t) - pos)
    weight = torch.as_tensor(neg / max(pos, 1.0)) if pos and neg else None
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(net(x).squeeze(1), t)
        loss.backward()
        opt.step()
    net.eval()

    def predict(f: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(net(torch.as_tensor(np.asarray(f, np.float32))).squeeze(1)).numpy()

    return predict


# ---------------------------------------------------------------------------------------------------------
# diversity
# ---------------------------------------------------------------------------------------------------------
def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding; returns (labels, centres). Empty clusters are re-seeded with
    the point farthest from its centre."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise FeedbackError(f"k-means: k = {k} clusters for {n} points")
    sq = (x * x).sum(1)
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for c in range(1, k):
        total = d2.sum()
        idx = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centres[c] = x[idx]
        d2 = np.minimum(d2, ((x - centres[c]) ** 2).sum(1))
    labels = np.full(n, -1)
    for _ in range(iters):
        dist = sq[:, None] + (centres * centres).sum(1)[None] - 2.0 * x @ centres.T
        new = dist.argmin(1)
        if (new == labels).all():
            break
        labels = new
        for c in range(k):
            members = labels == c
            if members.any():
                centres[c] = x[members].mean(0)
            else:
                far = int(dist[np.arange(n), labels].argmax())
                centres[c] = x[far]
                labels[far] = c
    return labels, centres


def representatives(x: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """For each non-empty cluster, the index of its member nearest the centre (ties: the lowest index)."""
    out = []
    for c in range(centres.shape[0]):
        members = np.flatnonzero(labels == c)
        if members.size:
            d = ((x[members] - centres[c]) ** 2).sum(1)
            out.append(int(members[np.argmin(d)]))
    return np.asarray(out, np.int64)


def diverse(x: np.ndarray, b: int, rng: np.random.Generator, iters: int = 30) -> np.ndarray:
    """b mutually diverse rows of x: k-means into b clusters, one representative each (all rows when <= b)."""
    if x.shape[0] <= b:
        return np.arange(x.shape[0])
    labels, centres = kmeans(x, b, rng, iters)
    return representatives(x, labels, centres)


# ---------------------------------------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Selection:
    """Pool positions chosen this round, their uncertainty scores (NaN when unused) and the threshold."""

    chosen: np.ndarray
    scores: np.ndarray
    tau: float | None = None


def uncertainty(strategy: str, z: np.ndarray, pi: np.ndarray, pj: np.ndarray, li: np.ndarray, lj: np.ndarray,
                ly: np.ndarray, cfg: AnnealConfig) -> tuple[np.ndarray, float | None]:
    """Uncertainty of each pool pair (larger: more uncertain) under MGUE or BCGUE, and MGUE's tau."""
    if strategy == "anneal-bcgue":
        if ly.size == 0 or ly.all() or not ly.any():  # no classifier without both answers: fall back to MGUE
            return uncertainty("anneal-mgue", z, pi, pj, li, lj, ly, cfg)
        clf = train_pair_classifier(pair_features(z, li, lj), ly, seed=cfg.seed)
        return bcgue_uncertainty(clf(pair_features(z, pi, pj))), None
    d_pool = pair_distances(z, pi, pj)
    tau = mgue_threshold(pair_distances(z, li, lj), ly, cfg.threshold, fallback=float(np.median(d_pool)))
    return mgue_uncertainty(d_pool, tau), tau


def select(strategy: str, z: np.ndarray, pi: np.ndarray, pj: np.ndarray, unlabelled: np.ndarray,
           li: np.ndarray, lj: np.ndarray, ly: np.ndarray, cfg: AnnealConfig, rng: np.random.Generator
           ) -> Selection:
    """Choose ``cfg.budget`` pairs among the unlabelled pool positions with the given strategy."""
    cand = np.flatnonzero(unlabelled)
    b = min(cfg.budget, cand.size)
    scores = np.full(pi.size, np.nan)
    if b == 0:
        return Selection(np.zeros(0, np.int64), scores)
    if strategy == "random":
        return Selection(np.sort(rng.choice(cand, b, replace=False)), scores)
    if strategy == "diversity":
        picked = diverse(cluster_features(z, pi[cand], pj[cand]), b, rng, cfg.kmeans_iters)
        return Selection(cand[picked], scores)
    u, tau = uncertainty(strategy, z, pi[cand], pj[cand], li, lj, ly, cfg)
    scores[cand] = u
    order = np.argsort(-u, kind="stable")
    if strategy == "uncertainty":
        return Selection(cand[order[:b]], scores, tau)
    top = order[:min(cand.size, cfg.candidates * b)]
    picked = diverse(cluster_features(z, pi[cand[top]], pj[cand[top]]), b, rng, cfg.kmeans_iters)
    return Selection(cand[top[picked]], scores, tau)


# ---------------------------------------------------------------------------------------------------------
# the metric model
# ---------------------------------------------------------------------------------------------------------
@dataclass
class HeadState:
    """A trained head as plain arrays (numpy inference, safetensors on disk)."""

    weights: dict[str, np.ndarray]
    hidden: int
    dim: int
    losses: list[float] = field(default_factory=list)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings of frozen features (N, F) -> (N, dim) float32."""
        h = np.asarray(x, np.float32)
        if self.hidden:
            h = np.maximum(h @ self.weights["w1"].T + self.weights["b1"], 0.0)
        h = h @ self.weights["w2"].T + self.weights["b2"]
        norm = np.linalg.norm(h, axis=1, keepdims=True)
        return (h / np.maximum(norm, 1e-12)).astype(np.float32)


def train_head(x: np.ndarray, i: np.ndarray, j: np.ndarray, y: np.ndarray, cfg: AnnealConfig,
               seed: int | None = None, on_step: Callable[[int], None] | None = None,
               init: HeadState | None = None) -> HeadState:
    """Train the metric head on labelled pairs with the contrastive loss, from its (seeded) initialisation, or
    from ``init`` (fine-tuning; it must have the same shape)."""
    import torch
    from torch import nn

    from rsir.losses.contrastive import ContrastiveLoss

    seed = cfg.seed if seed is None else seed
    torch.manual_seed(seed)
    f = x.shape[1]
    layers: list[nn.Module] = []
    if cfg.hidden:
        layers += [nn.Linear(f, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.dim)]
    else:
        layers += [nn.Identity(), nn.Identity(), nn.Linear(f, cfg.dim)]
    net = nn.Sequential(*layers)
    if init is not None:
        if (init.hidden, init.dim) != (cfg.hidden, cfg.dim):
            raise FeedbackError(f"cannot fine-tune a head of hidden {init.hidden}, dim {init.dim} "
                                f"as hidden {cfg.hidden}, dim {cfg.dim}")
        state = {"2.weight": init.weights["w2"], "2.bias": init.weights["b2"]}
        if cfg.hidden:
            state.update({"0.weight": init.weights["w1"], "0.bias": init.weights["b1"]})
        net.load_state_dict({k: torch.as_tensor(np.array(v)) for k, v in state.items()})
    losses: list[float] = []
    if len(i):
        xt = torch.as_tensor(np.asarray(x, np.float32))
        it = torch.as_tensor(np.asarray(i, np.int64))
        jt = torch.as_tensor(np.asarray(j, np.int64))
        yt = torch.as_tensor(np.asarray(y, np.float32))
        loss_fn = ContrastiveLoss(cfg.margin)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(seed)
        for step in range(cfg.steps):
            if on_step is not None:
                on_step(step)
            sel = torch.randint(0, len(it), (min(cfg.batch, len(it)),), generator=gen)
            bi, bj = it[sel], jt[sel]
            used, inv = torch.unique(torch.cat([bi, bj]), return_inverse=True)
            emb = nn.functional.normalize(net(xt[used]), dim=1)
            loss = loss_fn(emb, inv[: len(sel)], inv[len(sel):], yt[sel])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    sd = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    weights = {"w2": sd["2.weight"], "b2": sd["2.bias"]}
    if cfg.hidden:
        weights.update(w1=sd["0.weight"], b1=sd["0.bias"])
    return HeadState(weights, cfg.hidden, cfg.dim, losses)


class MetricModel(Protocol):
    """What the loop retrains each round: ``fit`` on the labelled pairs (from its initialisation, or from
    ``init``, the last round's state, when ``cfg.fine_tune``) returns a state; ``embed`` gives every item's
    embedding under a state (rows in the order of the loop's ``x``)."""

    def fit(self, i: np.ndarray, j: np.ndarray, y: np.ndarray, cfg: AnnealConfig, seed: int,
            init: Any | None = None) -> Any: ...

    def embed(self, state: Any) -> np.ndarray: ...


class FrozenHead:
    """The default metric model: :func:`train_head` on the frozen features ``x``."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def fit(self, i: np.ndarray, j: np.ndarray, y: np.ndarray, cfg: AnnealConfig, seed: int,
            init: HeadState | None = None) -> HeadState:
        return train_head(self.x, i, j, y, cfg, seed=seed, init=init if cfg.fine_tune else None)

    def embed(self, state: HeadState) -> np.ndarray:
        return state.embed(self.x)


# ---------------------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------------------
Oracle = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class RoundRecord:
    """What one round did: pairs labelled so far, the similar share among them, tau, metrics of its model."""

    round: int
    labelled: int
    similar: int
    new_similar: int
    tau: float | None
    metrics: dict[str, float]
    seconds: float


def label_oracle(labels: np.ndarray, mode: str = "shared") -> Oracle:
    """The simulated expert: ``shared`` says similar when two items share a label, ``exact`` when their label
    sets are identical."""
    lab = np.asarray(labels) > 0
    if mode not in ("shared", "exact"):
        raise FeedbackError(f"oracle {mode!r}: shared or exact")

    def oracle(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        if mode == "shared":
            return (lab[i] & lab[j]).any(1)
        return (lab[i] == lab[j]).all(1)

    return oracle


def run(x: np.ndarray, items: np.ndarray, oracle: Oracle, cfg: AnnealConfig,
        evaluate: Callable[[np.ndarray], dict[str, float]] | None = None,
        on_round: Callable[[RoundRecord, Any], None] | None = None,
        model: MetricModel | None = None) -> tuple[list[RoundRecord], Any]:
    """The full loop: P0 random pairs, then ``cfg.rounds`` rounds of train, embed, select ``cfg.budget`` pairs,
    ask the oracle. The model is trained once more after the last answers, so the records hold ``rounds + 1``
    evaluations (after 0, 1, ..., rounds selections). ``model`` is retrained each round (default: a head on the
    frozen features ``x``, :class:`FrozenHead`; e.g. :class:`rsir.methods.anneal_encoder.EncoderMetric` end to
    end); ``x`` also gives the "knn" pool its neighbours. Returns the records and the last model state."""
    import time

    rng = np.random.default_rng(cfg.seed)
    pi, pj = candidate_pool(x, items, cfg, rng)
    labelled = np.zeros(pi.size, bool)
    answers = np.zeros(pi.size, bool)
    first = rng.choice(pi.size, min(cfg.initial, pi.size), replace=False)
    answers[first] = oracle(pi[first], pj[first])
    labelled[first] = True
    records: list[RoundRecord] = []
    metric: MetricModel = model if model is not None else FrozenHead(x)
    head = None
    new_similar = int(answers[first].sum())
    tau: float | None = None
    for t in range(cfg.rounds + 1):
        t0 = time.perf_counter()
        li, lj, ly = pi[labelled], pj[labelled], answers[labelled]
        head = metric.fit(li, lj, ly, cfg, cfg.seed + t, head)
        z = metric.embed(head)
        metrics = evaluate(z) if evaluate is not None else {}
        rec = RoundRecord(t, int(labelled.sum()), int(ly.sum()), new_similar, tau, metrics,
                          time.perf_counter() - t0)
        records.append(rec)
        if on_round is not None:
            on_round(rec, head)
        if t == cfg.rounds:
            break
        sel = select(cfg.strategy, z, pi, pj, ~labelled, li, lj, ly, cfg, rng)
        tau = sel.tau
        answers[sel.chosen] = oracle(pi[sel.chosen], pj[sel.chosen])
        labelled[sel.chosen] = True
        new_similar = int(answers[sel.chosen].sum())
    assert head is not None
    return records, head


def nearest_blocks(z: np.ndarray, q_pos: np.ndarray, db_pos: np.ndarray, k: int, block: int = 128
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per block of ``block`` queries (rows ``q_pos`` of ``z``) against the database (rows ``db_pos``):
    (the block's query positions, their squared Euclidean distances to the database as float64 with a query's
    own position at inf, the column indices of its ``k`` nearest, unordered). Memory: block x database."""
    db = z[db_pos]
    db_sq = (db ** 2).sum(1)
    for s in range(0, q_pos.size, block):
        q = q_pos[s:s + block]
        d = ((z[q] ** 2).sum(1)[:, None] + db_sq[None] - 2.0 * z[q] @ db.T).astype(np.float64)
        d[q[:, None] == db_pos[None, :]] = np.inf
        yield q, d, np.argpartition(d, k - 1, axis=1)[:, :k]


def retrieval_map(z: np.ndarray, q_pos: np.ndarray, db_pos: np.ndarray, labels: np.ndarray, k: int = 20,
                  relevance: str = "shared", block: int = 128) -> float:
    """mAP@k (variant A) of queries ``q_pos`` over the database ``db_pos`` by Euclidean distance (ties by
    position; a query in the database is left out of its own ranking). Memory: ``block`` x database distances;
    relevance is computed for the top k only."""
    from rsir.eval.metrics import average_precision_at_k

    if relevance not in ("shared", "exact"):
        raise FeedbackError(f"relevance {relevance!r}: shared or exact")
    lab = np.asarray(labels) > 0
    aps = []
    for q, d, part in nearest_blocks(z, q_pos, db_pos, min(k + 1, db_pos.size), block):
        # exact order inside the candidates: distance, then database position
        order = np.lexsort((part, np.take_along_axis(d, part, axis=1)), axis=1)[:, :k]
        top = db_pos[np.take_along_axis(part, order, axis=1)]
        lq, lt = lab[q][:, None, :], lab[top]
        rel_top = (lq & lt).any(2) if relevance == "shared" else (lq == lt).all(2)
        aps.append(average_precision_at_k(rel_top, k, "A"))
    return float(np.concatenate(aps).mean())


def indices_of(ids: Sequence[str], position: Callable[[str], int]) -> np.ndarray:
    """Archive positions of ids (the position lookup raises on unknown ids)."""
    return np.asarray([position(i) for i in ids], np.int64)
