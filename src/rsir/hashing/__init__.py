"""rsir.hashing: classic hash functions on feature vectors (LSH, ITQ, KLSH, KSLSH), bit packing, features.

Every hasher has ``fit(X[, labels])``, ``encode(X) -> packed uint8 codes`` (rsir.bits layout),
``save(dir)`` and ``load(dir)``. On disk: ``manifest.json`` (format ``rsir-hasher``, name, params, checksums)
and ``arrays.safetensors``, written atomically by rsir.storage. The classic search encoder (hand-crafted
features + a hasher) that ``rsir index --method`` fits is :mod:`rsir.hashing.encoder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from rsir.bits import n_bytes, signs_to_codes
from rsir.errors import RsirError
from rsir.registry import Registry
from rsir.storage import read_manifest, write_dir_atomic

HASHER_FORMAT = "rsir-hasher"
HASHER_VERSION = 1


class HasherError(RsirError):
    """A hasher was misused (not fitted, wrong feature size, bad parameters) or its files are damaged."""


#: method name -> "module:Class", imported lazily.
HASHERS: Registry[type[Hasher]] = Registry("hashing method", {
    "lsh": "rsir.hashing.lsh:LSH",
    "itq": "rsir.hashing.itq:ITQ",
    "klsh": "rsir.hashing.klsh:KLSH",
    "kslsh": "rsir.hashing.kslsh:KSLSH",
}, HasherError)


class Hasher:
    """Base class: subclasses set ``name`` and implement ``fit``, ``_project``, ``_params``, ``_arrays``."""

    name: ClassVar[str] = ""
    supervised: ClassVar[bool] = False
    #: training items read to fit it by default (kernel methods use a sample, as their papers do)
    fit_sample: ClassVar[int] = 20000

    def __init__(self, bits: int, seed: int = 0) -> None:
        if bits < 1:
            raise HasherError(f"bits must be >= 1, got {bits}")
        self.bits = int(bits)
        self.seed = int(seed)
        self.dim: int | None = None

    def fit(self, X: np.ndarray, labels: Any = None) -> Hasher:
        """Learn the hash functions from training features (n, d)."""
        raise NotImplementedError

    def _project(self, X: np.ndarray) -> np.ndarray:
        """Real-valued (n, bits) projections whose signs are the bits."""
        raise NotImplementedError

    def _check(self, X: np.ndarray) -> np.ndarray:
        if self.dim is None:
            raise HasherError(f"{self.name} hasher is not fitted")
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise HasherError(f"{self.name}: expected features of shape (n, {self.dim}), got {x.shape}")
        return x

    def encode(self, X: np.ndarray, batch: int = 65536) -> np.ndarray:
        """Packed uint8 codes (n, ceil(bits/8)): bit r = 1 where projection r > 0 (sign +1)."""
        x = self._check(X)
        out = np.empty((x.shape[0], n_bytes(self.bits)), dtype=np.uint8)
        for s in range(0, x.shape[0], batch):
            out[s:s + batch] = signs_to_codes(self._project(x[s:s + batch]))
        return out

    def _params(self) -> dict[str, Any]:
        return {}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        for k, v in arrays.items():
            setattr(self, k, v)

    def save(self, path: str | Path) -> Path:
        """Write manifest.json + arrays.safetensors atomically into directory ``path``."""
        arrays = {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}
        manifest = {"format": HASHER_FORMAT, "version": HASHER_VERSION, "name": self.name, "bits": self.bits,
                    "seed": self.seed, "dim": self.dim, "params": self._params()}
        return write_dir_atomic(Path(path), {"arrays.safetensors": st_save(arrays)}, manifest)

    @classmethod
    def load(cls, path: str | Path) -> Hasher:
        """Load a saved hasher (checksums verified), dispatching on its name."""
        manifest = read_manifest(path, HASHER_FORMAT, HASHER_VERSION, HasherError, what="hasher")
        target = hasher_class(str(manifest.get("name")))
        obj = target(int(manifest["bits"]), seed=int(manifest.get("seed", 0)), **manifest.get("params", {}))
        obj.dim = manifest.get("dim")
        try:
            arrays = st_load((Path(path) / "arrays.safetensors").read_bytes())
        except Exception as e:  # safetensors raises its own error types
            raise HasherError(f"{path}: damaged arrays.safetensors ({e})") from None
        obj._set_state(manifest.get("params", {}), arrays)
        return obj


def hasher_class(name: str) -> type[Hasher]:
    """The hasher class registered under ``name``."""
    return HASHERS.get(name)  # type: ignore[no-any-return]


def make_hasher(name: str, bits: int, seed: int = 0, **params: Any) -> Hasher:
    """Instantiate a registered hasher."""
    return hasher_class(name)(bits, seed=seed, **params)

__all__ = ["HASHERS", "Hasher", "HasherError", "hasher_class", "make_hasher"]
