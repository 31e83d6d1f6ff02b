"""Hand-crafted features of multispectral patches, as pre-deep-learning RS retrieval used them.

Per band (on the normalised values): mean, std, 10/50/90th percentiles. Spectral indices on reflectances
(de-normalised with the archive's band statistics when given), each summarised by mean, std, 10th and 90th
percentile: NDVI = (B08 - B04) / (B08 + B04), NDWI = (B03 - B08) / (B03 + B08) (McFeeters), NDBI =
(B11 - B08) / (B11 + B08), each only when its bands are present; for Sentinel-1 the VV - VH difference in dB
(the VV/VH ratio). Texture on the band-mean image: grey-level co-occurrence contrast and homogeneity (8 levels,
horizontal and vertical offset 1) and the gradient magnitude mean / std. Features are standardised with the
training statistics (``fit``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rsir.hashing import HasherError

INDICES: dict[str, tuple[str, str]] = {"ndvi": ("B08", "B04"), "ndwi": ("B03", "B08"), "ndbi": ("B11", "B08")}
GLCM_LEVELS = 8


_POOL: ThreadPoolExecutor | None = None


def _percentiles(flat: np.ndarray, pct: Sequence[float], overwrite: bool) -> np.ndarray:
    """np.percentile along rows, the rows split over the CPU cores (numpy's partition releases the GIL; each
    row is computed exactly as in one call, so the result is identical)."""
    global _POOL
    workers = min(os.cpu_count() or 1, 4)
    if workers < 2 or flat.shape[0] < 32:
        return np.percentile(flat, pct, axis=1, overwrite_input=overwrite)
    if _POOL is None:
        _POOL = ThreadPoolExecutor(workers, thread_name_prefix="rsir-features")
    parts = _POOL.map(lambda c: np.percentile(c, pct, axis=1, overwrite_input=overwrite),
                      np.array_split(flat, workers))
    return np.concatenate(list(parts), axis=1)


def _summary(v: np.ndarray, pct: Sequence[float], scratch: bool = False) -> list[np.ndarray]:
    """Mean, std and percentiles per image of (N, ...) values; ``scratch``: ``v`` is a temporary the caller
    no longer needs, so the percentiles partition it in place instead of copying it first (same values)."""
    flat = v.reshape(v.shape[0], -1)
    out = [flat.mean(1), flat.std(1)]
    if len(pct):
        out += list(_percentiles(flat, pct, scratch))
    return out


def glcm_contrast_homogeneity(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contrast sum P(i,j)(i-j)^2 and homogeneity sum P(i,j)/(1+|i-j|) of the symmetric-offset GLCM per image.

    Averaging over all horizontal and vertical neighbour pairs equals summing over the normalised co-occurrence
    matrix, so the matrix itself is never built.
    """
    pairs = [np.abs(q[:, :, 1:] - q[:, :, :-1]).reshape(q.shape[0], -1),
             np.abs(q[:, 1:, :] - q[:, :-1, :]).reshape(q.shape[0], -1)]
    diff = np.concatenate(pairs, axis=1).astype(np.float64)
    return (diff ** 2).mean(1), (1.0 / (1.0 + diff)).mean(1)


class FeatureExtractor:
    """Features of N x C x H x W float images with known band names; ``fit`` learns the standardisation."""

    def __init__(self, bands: Sequence[str], band_mean: Sequence[float] | np.ndarray | None = None,
                 band_std: Sequence[float] | np.ndarray | None = None) -> None:
        self.bands = list(bands)
        self.band_mean = None if band_mean is None else np.asarray(band_mean, dtype=np.float64)
        self.band_std = None if band_std is None else np.asarray(band_std, dtype=np.float64)
        self.mu: np.ndarray | None = None
        self.sd: np.ndarray | None = None
        self.names = self._names()

    def _names(self) -> list[str]:
        names = [f"{b}_{s}" for b in self.bands for s in ("mean", "std", "p10", "p50", "p90")]
        for idx, (a, b) in INDICES.items():
            if a in self.bands and b in self.bands:
                names += [f"{idx}_{s}" for s in ("mean", "std", "p10", "p90")]
        if "VV" in self.bands and "VH" in self.bands:
            names += ["vv_minus_vh_db_mean", "vv_minus_vh_db_std"]
        return names + ["glcm_contrast", "glcm_homogeneity", "grad_mean", "grad_std"]

    @property
    def dim(self) -> int:
        """Feature length."""
        return len(self.names)

    def raw(self, images: np.ndarray) -> np.ndarray:
        """Unstandardised features (N, dim) float64."""
        # Work band by band in float64 (the images usually come as float32): a float64 copy of the whole batch
        # and a de-normalised copy of every band cost more than all the statistics (page faults on 2 x N x C x
        # H x W doubles); only the bands of the spectral indices are de-normalised. Same arithmetic as on the
        # whole array, so the features are unchanged.
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != len(self.bands):
            raise HasherError(f"features: expected N x {len(self.bands)} x H x W images "
                              f"({', '.join(self.bands)}), got shape {x.shape}")

        def band(c: int) -> np.ndarray:
            return np.array(x[:, c], dtype=np.float64)  # always a fresh copy (callers partition it in place)

        feats: list[np.ndarray] = []
        for c in range(x.shape[1]):
            feats += _summary(band(c), (10, 50, 90), scratch=True)
        col = {b: i for i, b in enumerate(self.bands)}
        refl_cache: dict[int, np.ndarray] = {}

        def refl(c: int) -> np.ndarray:
            if c not in refl_cache:
                v = band(c)
                if self.band_mean is not None and self.band_std is not None:
                    v = v * self.band_std[c] + self.band_mean[c]
                refl_cache[c] = v
            return refl_cache[c]

        for a, b in INDICES.values():
            if a in col and b in col:
                va, vb = refl(col[a]), refl(col[b])
                den = va + vb
                ratio = np.where(np.abs(den) > 1e-9, (va - vb) / np.where(den == 0, 1.0, den), 0.0)
                feats += _summary(np.clip(ratio, -1.0, 1.0), (10, 90), scratch=True)
        if "VV" in col and "VH" in col:
            d = refl(col["VV"]) - refl(col["VH"])
            feats += _summary(d, ())
        refl_cache.clear()
        grey = x.mean(axis=1, dtype=np.float64)
        q = np.clip(np.floor((np.clip(grey, -2.0, 2.0) + 2.0) / 4.0 * GLCM_LEVELS), 0, GLCM_LEVELS - 1)
        contrast, homog = glcm_contrast_homogeneity(q.astype(np.int16))
        gy, gx = np.gradient(grey, axis=(1, 2))
        mag = np.hypot(gx, gy).reshape(x.shape[0], -1)
        feats += [contrast, homog, mag.mean(1), mag.std(1)]
        return np.stack(feats, axis=1)

    def fit(self, features: np.ndarray) -> FeatureExtractor:
        """Learn the standardisation (mean, std per feature) from raw training features."""
        f = np.asarray(features, dtype=np.float64)
        self.mu = f.mean(0)
        sd = f.std(0)
        self.sd = np.where(sd > 1e-12, sd, 1.0)
        return self

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Standardised features (N, dim) float32."""
        f = self.raw(images)
        if self.mu is not None and self.sd is not None:
            f = (f - self.mu) / self.sd
        return f.astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to persist (band statistics and standardisation)."""
        out: dict[str, np.ndarray] = {}
        for k in ("band_mean", "band_std", "mu", "sd"):
            v = getattr(self, k)
            if v is not None:
                out[k] = np.asarray(v, dtype=np.float64)
        return out

    @classmethod
    def from_state(cls, bands: Sequence[str], arrays: dict[str, np.ndarray]) -> FeatureExtractor:
        """Rebuild from ``state()``."""
        fe = cls(bands, arrays.get("band_mean"), arrays.get("band_std"))
        fe.mu, fe.sd = arrays.get("mu"), arrays.get("sd")
        return fe
