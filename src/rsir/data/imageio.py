"""Reading 8-bit RGB pictures (PNG, JPEG, TIFF) into {"R","G","B"} uint8 bands, and masks, with PIL.

Used by the caption and bitemporal readers. Resizing, when asked, uses PIL's bilinear filter, which widens its
support when shrinking (i.e. it is antialiased, like torchvision's ``Resize(antialias=True)``); masks are
resized with nearest neighbour so that they stay binary. Palette, grey and RGBA pictures are converted to RGB
(the alpha channel is dropped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rsir.data.bands import RGB_BANDS, ModalitySpec
from rsir.errors import ItemError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def rgb_spec(size: int, name: str = "rgb", description: str = "8-bit RGB picture") -> ModalitySpec:
    """An 8-bit RGB modality of ``size`` x ``size`` pixels (bands R, G, B)."""
    return ModalitySpec(name, list(RGB_BANDS), {b: (size, size) for b in RGB_BANDS}, "uint8", "DN 0-255",
                        (size, size), description)


def mask_spec(size: int, name: str = "mask", band: str = "change",
              description: str = "binary change mask (1 = changed)") -> ModalitySpec:
    """A one-band uint8 mask modality of ``size`` x ``size`` pixels."""
    return ModalitySpec(name, [band], {band: (size, size)}, "uint8", "0/1", (size, size), description)


def _open(path: Path, item: str | None) -> Image.Image:
    who = item or path.name
    try:
        im = Image.open(path)
        im.load()
    except FileNotFoundError:
        raise ItemError(who, "image file not found", str(path)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ItemError(who, f"unreadable image ({type(e).__name__}: {e})", str(path)) from None
    return im


def image_size(path: str | Path, item: str | None = None) -> tuple[int, int]:
    """(height, width) of a picture, read from its header."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ItemError(item or path.name, f"unreadable image ({type(e).__name__}: {e})", str(path)) from None
    return int(h), int(w)


def read_rgb(path: str | Path, size: int | None = None, item: str | None = None) -> dict[str, np.ndarray]:
    """{"R","G","B"} uint8 HxW bands of a picture, resized (bilinear) to size x size when ``size`` is given."""
    path = Path(path)
    im = _open(path, item)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # a 16-bit or float picture is not an 8-bit RGB image; converting would silently clip it
        raise ItemError(item or path.name, f"not an 8-bit RGB picture (PIL mode {im.mode})", str(path))
    if im.mode != "RGB":
        im = im.convert("RGB")
    if size is not None and im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    a = np.asarray(im, dtype=np.uint8)
    return {"R": np.ascontiguousarray(a[..., 0]), "G": np.ascontiguousarray(a[..., 1]),
            "B": np.ascontiguousarray(a[..., 2])}


def read_mask(path: str | Path, size: int | None = None, item: str | None = None) -> np.ndarray:
    """HxW uint8 0/1 mask (any non-zero pixel is 1), resized with nearest neighbour when ``size`` is given."""
    path = Path(path)
    im = _open(path, item)
    if im.mode not in ("L", "1"):
        im = im.convert("L")
    if size is not None and im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.NEAREST)
    a = np.asarray(im)
    return (a != 0).astype(np.uint8)
