"""Which index to build for an encoder: the one place that maps (metric, dim, kind) to an Index.

``kind`` is the search structure a user picks with ``rsir index --kind``: for binary codes ``flat`` (exact faiss
scan), ``ivf`` (faiss IVF, approximate) or ``mih`` (multi-index hashing, exact); float vectors are always flat.
"""

from __future__ import annotations

from typing import Any

from rsir.index.base import BACKENDS, Index, IndexError_

#: search structures of a Hamming index (``rsir index --kind``)
HAMMING_KINDS: tuple[str, ...] = ("flat", "ivf", "mih")
METRICS: tuple[str, ...] = ("hamming", "ip", "l2")


def make_index(metric: str, dim: int, kind: str = "flat", seed: int = 0, backend: str | None = None,
               **options: Any) -> Index:
    """An empty index for vectors of ``metric`` and ``dim`` (bits for hamming): HammingIndex or FloatIndex, or
    the named ``backend`` of ``BACKENDS`` (e.g. ``milvus`` with ``uri=``) built with ``options``."""
    if backend not in (None, "hamming", "float"):
        if metric != "hamming":
            raise IndexError_(f"the {backend} backend holds binary codes (hamming), not {metric} vectors")
        return BACKENDS.get(backend)(dim, kind=kind, seed=seed, **options)  # type: ignore[call-arg]
    if options:
        raise IndexError_(f"options {sorted(options)} are for another backend than {backend or metric}")
    if metric == "hamming":
        if dim <= 0 or dim % 8:
            raise IndexError_(f"binary codes need a positive number of bits divisible by 8, got {dim}")
        if kind not in HAMMING_KINDS:
            raise IndexError_(f"unknown index kind {kind!r} (choose from {', '.join(HAMMING_KINDS)})")
        from rsir.index.faiss_binary import HammingIndex

        return HammingIndex(dim, kind=kind, seed=seed)
    if metric not in METRICS:
        raise IndexError_(f"unknown metric {metric!r} (one of {', '.join(METRICS)})")
    if kind != "flat":
        raise IndexError_(f"index kind {kind!r} is only for binary codes; float indexes are flat")
    from rsir.index.faiss_float import FloatIndex

    return FloatIndex(dim, metric)
