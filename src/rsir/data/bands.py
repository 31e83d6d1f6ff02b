"""Band specifications, resampling to a common grid, normalisation and quicklooks.

Resampling: every band is brought to the grid of the finest band (120x120 for reBEN Sentinel-2, i.e. 10 m) with
**bilinear** interpolation (torch ``interpolate``, ``align_corners=False``), the choice of the BigEarthNet
reference code (torch is imported on the first resampling, so reading an archive alone never loads it); 20 m bands are upsampled x2 and 60 m bands x6. Quicklooks: Sentinel-2 true colour from
B04/B03/B02 with a 2-98 percentile stretch per channel; Sentinel-1 false colour (R, G, B) = (VV, VH, VV/VH),
where the ratio in dB is VV - VH, each channel stretched 2-98 percent.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rsir.errors import RsirError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Band:
    """One spectral band: name, ground sampling distance in metres, central wavelength in nm (0 for SAR)."""

    name: str
    gsd: float
    wavelength_nm: float = 0.0


# Sentinel-2 L2A bands as reBEN stores them (B10 is absent from L2A), with their native resolutions.
S2_L2A: tuple[Band, ...] = (
    Band("B01", 60, 443), Band("B02", 10, 490), Band("B03", 10, 560), Band("B04", 10, 665),
    Band("B05", 20, 705), Band("B06", 20, 740), Band("B07", 20, 783), Band("B08", 10, 842),
    Band("B8A", 20, 865), Band("B09", 60, 945), Band("B11", 20, 1610), Band("B12", 20, 2190),
)
# Sentinel-2 L1C has B10 (cirrus) in addition.
S2_L1C: tuple[Band, ...] = S2_L2A[:10] + (Band("B10", 60, 1375),) + S2_L2A[10:]
S1_GRD: tuple[Band, ...] = (Band("VV", 10), Band("VH", 10))
RGB: tuple[Band, ...] = (Band("R", 0, 665), Band("G", 0, 560), Band("B", 0, 490))

S2_BANDS: tuple[str, ...] = tuple(b.name for b in S2_L2A)
S1_BANDS: tuple[str, ...] = tuple(b.name for b in S1_GRD)
RGB_BANDS: tuple[str, ...] = tuple(b.name for b in RGB)

RESAMPLING = "bilinear"


@dataclass
class ModalitySpec:
    """What one modality of an archive holds: band names, native shapes, dtype, unit and the common grid."""

    name: str
    bands: list[str]
    shapes: dict[str, tuple[int, int]]
    dtype: str
    unit: str = ""
    grid: tuple[int, int] = (0, 0)
    description: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shapes = {b: (int(s[0]), int(s[1])) for b, s in self.shapes.items()}
        missing = [b for b in self.bands if b not in self.shapes]
        if missing:
            raise RsirError(f"modality {self.name!r}: no shape given for bands {missing}")
        if self.grid == (0, 0):
            self.grid = max(self.shapes.values(), key=lambda s: s[0] * s[1])
        self.grid = (int(self.grid[0]), int(self.grid[1]))

    def to_json(self) -> dict:
        return {
            "name": self.name, "bands": list(self.bands),
            "shapes": {b: list(s) for b, s in self.shapes.items()},
            "dtype": self.dtype, "unit": self.unit, "grid": list(self.grid),
            "description": self.description, "extra": self.extra,
        }

    @classmethod
    def from_json(cls, d: Mapping) -> ModalitySpec:
        return cls(
            name=d["name"], bands=list(d["bands"]),
            shapes={b: (int(s[0]), int(s[1])) for b, s in d["shapes"].items()},
            dtype=d["dtype"], unit=d.get("unit", ""), grid=tuple(d.get("grid", (0, 0))),  # type: ignore[arg-type]
            description=d.get("description", ""), extra=dict(d.get("extra", {})),
        )


def s2_spec(size: int = 120, name: str = "s2") -> ModalitySpec:
    """Sentinel-2 L2A at native resolutions for a patch of ``size`` pixels at 10 m (reBEN: 120)."""
    shapes = {b.name: (int(size * 10 // b.gsd),) * 2 for b in S2_L2A}
    return ModalitySpec(name, list(S2_BANDS), shapes, "uint16", "reflectance*10000", (size, size),  # type: ignore[arg-type]
                        "Sentinel-2 L2A surface reflectance")


def s1_spec(size: int = 120, name: str = "s1") -> ModalitySpec:
    """Sentinel-1 GRD VV/VH backscatter in dB on the 10 m grid."""
    return ModalitySpec(name, list(S1_BANDS), {b: (size, size) for b in S1_BANDS}, "float32", "dB",
                        (size, size), "Sentinel-1 GRD backscatter")


def to_grid(bands: Mapping[str, np.ndarray], order: Sequence[str], grid: tuple[int, int],
            mode: str = RESAMPLING, mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None) -> np.ndarray:
    """Stack ``order`` bands into a float32 CxHxW array on ``grid``, resampling bands of other sizes.

    With ``mean`` and ``std`` the result is also normalised, as :func:`normalize` does.
    """
    return to_grid_batch([bands], order, grid, mode, mean, std)[0]


_TORCH_READY = {"uint8", "int8", "int16", "uint16", "int32", "int64", "float16", "float32", "float64"}


def _scale_shift(mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (1/std, mean) as C x 1 x 1 float32 tensors (a zero std divides by 1, as normalize does)."""
    import torch

    m = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(-1, 1, 1)
    s = torch.as_tensor(np.asarray(std, dtype=np.float32)).reshape(-1, 1, 1)
    return 1.0 / torch.where(s > 0, s, torch.ones_like(s)), m


@dataclass
class BandGroup:
    """The bands of one native size of a batch: ``data`` is N x len(idx) x h x w in the stored dtype, ``idx`` their
    positions in the band order."""

    shape: tuple[int, int]
    idx: list[int]
    data: np.ndarray


def group_bands(items: Sequence[Mapping[str, np.ndarray]], order: Sequence[str]) -> list[BandGroup]:
    """Stack ``order`` bands of several items ({band: 2-D array} each) by native size, in their stored dtype."""
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, b in enumerate(order):
        for j, bands in enumerate(items):
            a = bands.get(b)
            if a is None:
                raise RsirError(f"band {b!r} missing (have {sorted(bands)})")
            if a.ndim != 2:
                raise RsirError(f"band {b!r} has shape {a.shape}, expected 2-D")
            shape = (int(a.shape[0]), int(a.shape[1]))
            if j == 0:
                by_shape.setdefault(shape, []).append(i)
                first = shape
            elif shape != first:
                raise RsirError(f"band {b!r} has shape {a.shape} in item {j} of the batch but {first} in its "
                                "first item")
    out = []
    for shape, idx in by_shape.items():
        names = [order[i] for i in idx]
        stack = np.stack([bands[b] for bands in items for b in names]).reshape(len(items), len(idx), *shape)
        out.append(BandGroup(shape, idx, stack))
    return out


def to_grid_batch(items: Sequence[Mapping[str, np.ndarray]], order: Sequence[str], grid: tuple[int, int],
                  mode: str = RESAMPLING, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> np.ndarray:
    """Stack ``order`` bands of several items into a float32 NxCxHxW array on ``grid`` (:func:`group_bands`, then
    :func:`assemble`)."""
    return assemble(group_bands(items, order), len(items), len(order), grid, mode, mean, std)


def group_tensors(groups: Sequence[BandGroup], mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> list[torch.Tensor]:
    """Each group as a float32 tensor at its native size, normalised with ``mean`` / ``std`` (full band order)
    when given. A group's array is the batch's own (:func:`group_bands` and the archive's reader make new ones): a
    float32 one is normalised in place."""
    import torch

    scale = shift = None
    if mean is not None and std is not None:
        scale, shift = _scale_shift(mean, std)
    out = []
    for g in groups:
        stack = g.data
        if not stack.dtype.isnative or stack.dtype.name not in _TORCH_READY:
            stack = stack.astype(np.float32)
        t = torch.from_numpy(stack).to(torch.float32)
        if scale is not None and shift is not None:
            t = t.sub_(shift[g.idx]).mul_(scale[g.idx])
        out.append(t)
    return out


def assemble(groups: Sequence[BandGroup], n: int, channels: int, grid: tuple[int, int], mode: str = RESAMPLING,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> np.ndarray:
    """The float32 N x C x H x W batch on ``grid`` from native-size band groups.

    Bands of one native size (the 20 m and the 60 m bands of Sentinel-2) are converted and resampled together,
    all items at once: one interpolation call per size instead of one per item and size. With ``mean`` and
    ``std`` the bands are normalised before they are resampled, at their native size (a fraction of the
    pixels): bilinear, bicubic and nearest interpolation weights sum to one, so this equals normalising
    afterwards up to float rounding.
    """
    import torch

    grid = (int(grid[0]), int(grid[1]))
    # with bands of one size only, the converted (and resampled) stack is the batch itself: no copy
    out = None if len(groups) == 1 else torch.empty((n, channels, *grid), dtype=torch.float32)
    for g, t in zip(groups, group_tensors(groups, mean, std), strict=True):
        if g.shape != grid:
            t = resample(t, grid, mode)
        if out is None:
            return t.numpy()
        out.index_copy_(1, torch.tensor(g.idx), t)
    assert out is not None
    return out.numpy()


def resample(t: torch.Tensor, grid: tuple[int, int], mode: str = RESAMPLING) -> torch.Tensor:
    """N x C x h x w float32 -> N x C x grid, by ``mode`` (bilinear and bicubic with align_corners=False)."""
    import torch.nn.functional as F

    if mode == "nearest":
        return F.interpolate(t, size=grid, mode="nearest")
    return F.interpolate(t, size=grid, mode=mode, align_corners=False)


def normalize(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(x - mean) / std per channel of a CxHxW (or NxCxHxW) array."""
    m = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    return (x - m) / np.where(s > 0, s, 1.0)


def stretch(a: np.ndarray, lo: float = 2.0, hi: float = 98.0) -> np.ndarray:
    """Percentile stretch of one channel to uint8 (non-finite values become 0)."""
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, dtype=np.uint8)
    p_lo, p_hi = np.percentile(a[finite], [lo, hi])
    scale = p_hi - p_lo if p_hi > p_lo else 1.0
    y = np.clip((np.where(finite, a, p_lo) - p_lo) / scale, 0.0, 1.0)
    return (y * 255.0 + 0.5).astype(np.uint8)


def quicklook(bands: Mapping[str, np.ndarray], kind: str | None = None,
              grid: tuple[int, int] | None = None) -> np.ndarray:
    """HxWx3 uint8 picture of a patch: true colour for optical, VV/VH/ratio false colour for SAR."""
    if kind is None:
        if {"B04", "B03", "B02"} <= set(bands):
            kind = "s2"
        elif {"VV", "VH"} <= set(bands):
            kind = "s1"
        elif {"R", "G", "B"} <= set(bands):
            kind = "rgb"
        else:
            kind = "gray"
    if kind == "s2":
        chans = [bands["B04"], bands["B03"], bands["B02"]]
    elif kind == "s1":
        vv = np.asarray(bands["VV"], dtype=np.float64)
        vh = np.asarray(bands["VH"], dtype=np.float64)
        chans = [vv, vh, vv - vh]
    elif kind == "rgb":
        # 8-bit RGB is shown as it is, not stretched
        rgb = np.stack([bands["R"], bands["G"], bands["B"]], axis=-1)
        return rgb.astype(np.uint8) if rgb.dtype == np.uint8 else np.stack([stretch(c) for c in
                                                                            (bands["R"], bands["G"], bands["B"])], -1)
    else:
        first = next(iter(bands.values()))
        chans = [first, first, first]
    if grid is None:
        grid = max((tuple(c.shape) for c in chans), key=lambda s: s[0] * s[1])  # type: ignore[assignment]
    arr = to_grid({str(i): np.asarray(c, dtype=np.float32) for i, c in enumerate(chans)}, ["0", "1", "2"],
                  grid)  # type: ignore[arg-type]
    return np.stack([stretch(c) for c in arr], axis=-1)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an HxWx3 uint8 array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()
