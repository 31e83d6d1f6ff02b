"""Per-epoch validation: mAP@k, variant A of DESIGN.md, with any-shared-label relevance.

AP@k = (1/R_k) sum_{i<=k} rel_i P@i, R_k = relevant items in the top k (0 when none): the MHCLN / DeepHash /
torchmetrics form. Queries are the model-selection slice of the training split (rsir.train.selection), the
database is the whole training split with the query itself left out; ranking by Hamming distance of the
thresholded codes (hash models) or by descending cosine (feature models), ties broken by ascending archive position. The AP itself is rsir.eval.metrics.average_precision_at_k
(variant "A"), the metric module every reported number uses.
"""

from __future__ import annotations

import numpy as np

from rsir.eval.metrics import average_precision_at_k


def rank_database(q: np.ndarray, db: np.ndarray, metric: str, k: int, q_pos: np.ndarray,
                  db_pos: np.ndarray) -> np.ndarray:
    """Q x k indices into db of the top-k items per query (query itself excluded, stable ties by position)."""
    order_db = np.argsort(db_pos, kind="stable")
    db, db_pos = db[order_db], db_pos[order_db]
    if metric == "hamming":
        qb, dbb = (q > 0.5).astype(np.float32), (db > 0.5).astype(np.float32)
        dist = qb @ (1 - dbb).T + (1 - qb) @ dbb.T
    else:
        dist = -(q @ db.T)
    dist = dist.astype(np.float64)
    dist[q_pos[:, None] == db_pos[None, :]] = np.inf
    top = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order_db[top]


def map_at_k_a(q_labels: np.ndarray, ranked_labels: np.ndarray) -> float:
    """mean over queries of AP@k (variant A); ranked_labels is Q x k x C of the retrieved items' labels."""
    rel = (ranked_labels.astype(np.float64) * q_labels[:, None, :]).sum(-1) > 0
    if len(rel) == 0 or rel.shape[1] == 0:
        return 0.0
    return float(average_precision_at_k(rel, rel.shape[1], "A").mean())


def validation_map(q: np.ndarray, q_labels: np.ndarray, q_pos: np.ndarray, db: np.ndarray, db_labels: np.ndarray,
                   db_pos: np.ndarray, metric: str, k: int = 20) -> float:
    """mAP@k (variant A) of query embeddings against a database, query left out."""
    top = rank_database(q, db, metric, k, np.asarray(q_pos), np.asarray(db_pos))
    return map_at_k_a(np.asarray(q_labels), np.asarray(db_labels)[top])
