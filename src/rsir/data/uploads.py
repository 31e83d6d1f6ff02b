"""Query images given as bytes: .npz band arrays, GeoTIFF, PNG/JPEG (RGB models only), parsed and checked.

The one parser for every front end: the service's uploads, ``rsir search --file`` and the Python API's
``search_file`` all pass the file's bytes to :func:`parse_upload`. Everything is read from the bytes in memory;
nothing is written to disk and no path named inside the data is ever opened. GeoTIFF bands are taken by their
descriptions when those name the modality's bands, else in file order. Every rejection is an
:class:`UploadError` carrying an HTTP status and a message that names the problem in terms of what the index's
encoder expects.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rsir.data.bands import ModalitySpec, to_grid
from rsir.errors import RsirError

NPZ_EXT = (".npz",)
TIFF_EXT = (".tif", ".tiff", ".gtiff")
RGB_EXT = (".png", ".jpg", ".jpeg")
# a decompressed .npz may be at most this many times the upload limit (guards against zip bombs)
NPZ_EXPANSION = 8


class UploadError(RsirError):
    """An upload the service refuses; ``status`` is the HTTP status code to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ParsedUpload:
    """An uploaded image on the encoder's grid: raw values CxHxW float32 in the spec's band order."""

    image: np.ndarray
    bands: dict[str, np.ndarray]
    source_format: str


def describe_spec(spec: ModalitySpec) -> str:
    """'12 bands (s2: B01..B12)' style description of what a modality expects."""
    b = spec.bands
    names = f"{b[0]}..{b[-1]}" if len(b) > 3 else ", ".join(b)
    return f"{len(b)} bands ({spec.name}: {names})"


def _check_array(name: str, a: np.ndarray) -> np.ndarray:
    if a.dtype.kind not in "iuf":
        raise UploadError(f"band {name}: dtype {a.dtype} is not a real number type (expected integers or floats)")
    if a.ndim != 2:
        raise UploadError(f"band {name}: shape {tuple(a.shape)}, expected a 2-D array (height x width)")
    if a.dtype.kind == "f":
        bad = int((~np.isfinite(a)).sum())
        if bad:
            raise UploadError(f"band {name}: {bad} NaN or infinite pixel values; fill or mask them before "
                              "uploading")
    return a


def _check_shapes(bands: Mapping[str, np.ndarray], spec: ModalitySpec) -> None:
    for b in spec.bands:
        shape = tuple(bands[b].shape)
        allowed = {tuple(spec.shapes[b]), tuple(spec.grid)}
        if shape not in allowed:
            want = " or ".join(f"{s[0]}x{s[1]}" for s in sorted(allowed))
            raise UploadError(f"band {b}: {shape[0]}x{shape[1]} pixels, the index's encoder expects {want}")


def _stack_to_bands(arr: np.ndarray, spec: ModalitySpec, what: str) -> dict[str, np.ndarray]:
    """A CxHxW stack (bands in the spec's order) as a band dict, with a clear band-count error."""
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise UploadError(f"{what} has shape {tuple(arr.shape)}; expected bands x height x width")
    if arr.shape[0] != len(spec.bands):
        raise UploadError(f"file has {arr.shape[0]} bands, the index's encoder expects {describe_spec(spec)}")
    return {b: arr[i] for i, b in enumerate(spec.bands)}


def parse_npz(data: bytes, spec: ModalitySpec, max_bytes: int) -> dict[str, np.ndarray]:
    """Band dict from .npz bytes: one array per band name, or one CxHxW array (bands in the spec's order)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadError("not a valid .npz file (not a zip archive)", 400) from None
    total = sum(i.file_size for i in zf.infolist())
    if total > NPZ_EXPANSION * max_bytes:
        raise UploadError(f".npz expands to {total} bytes, more than the limit of {NPZ_EXPANSION * max_bytes}", 413)
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except ValueError as e:
        raise UploadError(f"not a valid .npz file ({e}); object arrays are refused", 400) from None
    except Exception as e:  # zip / header errors come in several types
        raise UploadError(f"not a valid .npz file ({type(e).__name__}: {e})", 400) from None
    if not arrays:
        raise UploadError(".npz file holds no arrays")
    if set(spec.bands) <= set(arrays):
        return {b: arrays[b] for b in spec.bands}
    named = [k for k in arrays if k in spec.bands or k.upper() in {b.upper() for b in spec.bands}]
    if len(arrays) == 1 and not named:
        return _stack_to_bands(next(iter(arrays.values())), spec, f"array {next(iter(arrays))!r}")
    if len(named) == len(arrays) and named:
        upper = {k.upper(): v for k, v in arrays.items()}
        missing = [b for b in spec.bands if b.upper() not in upper]
        if not missing:
            return {b: upper[b.upper()] for b in spec.bands}
    raise UploadError(f"file has {len(arrays)} bands ({', '.join(sorted(arrays))}), the index's encoder expects "
                      f"{describe_spec(spec)}; name the arrays after the bands or store one CxHxW array")


def parse_tiff(data: bytes, spec: ModalitySpec) -> dict[str, np.ndarray]:
    """Band dict from GeoTIFF bytes (bands in file order, or by band description when they name the bands)."""
    from rasterio.errors import RasterioIOError
    from rasterio.io import MemoryFile

    try:
        with warnings.catch_warnings(), MemoryFile(data) as mem, mem.open() as ds:
            # a query patch needs no georeferencing; rasterio warns about its absence
            warnings.simplefilter("ignore")
            arr = ds.read()
            desc = [d or "" for d in ds.descriptions]
    except RasterioIOError as e:
        raise UploadError(f"not a readable GeoTIFF ({e})", 400) from None
    if len(desc) == arr.shape[0] and set(spec.bands) <= set(desc):
        return {b: arr[desc.index(b)] for b in spec.bands}
    return _stack_to_bands(arr, spec, "GeoTIFF")


def parse_rgb(data: bytes, spec: ModalitySpec) -> dict[str, np.ndarray]:
    """Band dict from PNG/JPEG bytes; only for encoders of 3-band RGB images."""
    if len(spec.bands) != 3:
        raise UploadError(f"PNG/JPEG images have 3 bands (RGB), the index's encoder expects {describe_spec(spec)}; "
                          "upload a GeoTIFF or .npz with those bands", 415)
    from PIL import Image, UnidentifiedImageError

    try:
        Image.open(io.BytesIO(data)).verify()
        rgb = Image.open(io.BytesIO(data)).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise UploadError(f"not a readable PNG/JPEG image ({e})", 400) from None
    arr = np.asarray(rgb).transpose(2, 0, 1)
    return {b: arr[i] for i, b in enumerate(spec.bands)}


def parse_upload(filename: str, data: bytes, spec: ModalitySpec, max_bytes: int) -> ParsedUpload:
    """Parse and validate an uploaded query for an encoder of modality ``spec`` (raw values, on its grid)."""
    if len(data) > max_bytes:
        raise UploadError(f"upload is {len(data)} bytes, the limit is {max_bytes} bytes", 413)
    if not data:
        raise UploadError("the uploaded file is empty", 400)
    name = (filename or "").lower()
    if name.endswith(NPZ_EXT) or data[:4] == b"PK\x03\x04":
        fmt, bands = "npz", parse_npz(data, spec, max_bytes)
    elif name.endswith(TIFF_EXT) or data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        fmt, bands = "geotiff", parse_tiff(data, spec)
    elif name.endswith(RGB_EXT) or data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff":
        fmt, bands = "rgb", parse_rgb(data, spec)
    else:
        raise UploadError(f"unsupported file type {filename!r}: upload a GeoTIFF (.tif), a .npz of band arrays, "
                          "or a PNG/JPEG for RGB models", 415)
    bands = {b: _check_array(b, np.asarray(a)) for b, a in bands.items()}
    _check_shapes(bands, spec)
    image = to_grid({b: a.astype(np.float32) for b, a in bands.items()}, spec.bands, spec.grid)
    return ParsedUpload(image=image, bands=bands, source_format=fmt)
