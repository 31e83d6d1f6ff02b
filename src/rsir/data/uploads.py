"""Query images given as bytes: .npz band arrays, GeoTIFF, PNG/JPEG (RGB models only), parsed and checked.

The one parser for every front end: the service's uploads, ``rsir search --file`` and the Python API's
``search_file`` all pass the file's bytes to :func:`parse_upload`. GeoTIFF bands are taken by their descriptions
when those name the modality's bands, else in file order. Every rejection is an :class:`UploadError` carrying an
HTTP status and a message that names the problem in terms of what the index's encoder expects.

Uploads come from strangers, so parsing is built to be safe (SECURITY.md says what is defended):

- The format is recognised from the first bytes only (TIFF, PNG, JPEG, zip); the file name is never used, neither
  to choose a parser nor as a path. Anything else, notably GDAL's XML formats (VRT, WMS, WCS, ...) that can name
  other files or URLs, is refused with 415 before any library sees it.
- GeoTIFFs are opened by rasterio from a private in-memory file with GDAL's GTiff driver only (``allowed drivers``
  is ``["GTiff"]``, so no other GDAL driver can claim the bytes), with side-car files (``.aux.xml``, ``.ovr``,
  ``.msk``) and directory listing turned off and ``/vsicurl/`` restricted to an extension no URL has. A TIFF
  holds pixels and tags, not references, so nothing outside the uploaded bytes is read. (tifffile, the other
  candidate, would need imagecodecs for LZW/ZSTD/JPEG TIFFs and a GDAL_METADATA XML parser of our own for band
  descriptions, and can open further files for OME series; rasterio is what the ingest readers use already.)
- ``.npz`` files are read member by member with :mod:`zipfile` and numpy's ``.npy`` header reader: only plain
  ``NAME.npy`` members (no directories, symbolic links, encrypted or exotically compressed members, no pickles,
  object or structured dtypes); the zip's central directory is bounded before :class:`zipfile.ZipFile` parses it.
- PNG and JPEG are opened by PIL with only those two formats allowed.
- Declared sizes are checked from the header before any pixel is decoded: every band must be one of the
  modality's sizes (its grid or a band's native shape), with at most ``len(bands) + MAX_EXTRA_BANDS`` bands and
  a real-number dtype of at most 8 bytes. So decoding one upload allocates at most
  :func:`decoded_bound` bytes (about 2.3 MB for 12 Sentinel-2 bands at 120 x 120), whatever the header claims.
"""

from __future__ import annotations

import io
import math
import stat
import struct
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsir.data.bands import ModalitySpec, to_grid
from rsir.errors import RsirError

#: a file may hold this many bands besides the modality's (a GeoTIFF with extra bands named by description)
MAX_EXTRA_BANDS = 8
#: GDAL configuration while an uploaded GeoTIFF is open: no side-car files, no directory listing, no network
GDAL_SAFE_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".rsir-no-network",
    "GDAL_NUM_THREADS": "1",
}
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_ZIP_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_NPY_HEADER_MAX = 10_000  # numpy's own default bound on a .npy header


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


# -- what a file may declare ------------------------------------------------------------------------------------
def allowed_shapes(spec: ModalitySpec) -> set[tuple[int, int]]:
    """Band sizes (height, width) an upload may have: the modality's grid or a band's native shape."""
    return {(int(spec.grid[0]), int(spec.grid[1]))} | {(int(h), int(w)) for h, w in spec.shapes.values()}


def max_bands(spec: ModalitySpec) -> int:
    """Most bands one upload may hold."""
    return len(spec.bands) + MAX_EXTRA_BANDS


def decoded_bound(spec: ModalitySpec) -> int:
    """Most bytes the decoded pixels of one accepted upload can take (before resampling to the grid)."""
    area = max(h * w for h, w in allowed_shapes(spec))
    return max_bands(spec) * area * 8


def _sizes(spec: ModalitySpec) -> str:
    return " or ".join(f"{h}x{w}" for h, w in sorted(allowed_shapes(spec)))


def _check_dtype(what: str, dtype: np.dtype) -> None:
    if dtype.kind not in "iuf" or dtype.fields is not None or dtype.hasobject or dtype.itemsize > 8:
        raise UploadError(f"{what}: dtype {dtype} is not a real number type (expected integers or floats)")


def check_declared(what: str, shape: tuple[int, ...], dtype: np.dtype, spec: ModalitySpec) -> None:
    """Refuse (422) a declared array shape or dtype the modality cannot have, before its pixels are read.

    ``shape`` is H x W (one band) or C x H x W (a stack of C bands)."""
    _check_dtype(what, dtype)
    if len(shape) not in (2, 3):
        raise UploadError(f"{what} has shape {tuple(shape)}; expected bands x height x width")
    if len(shape) == 3 and not 1 <= shape[0] <= max_bands(spec):
        raise UploadError(f"{what} declares {shape[0]} bands, the index's encoder expects {describe_spec(spec)}")
    hw = (int(shape[-2]), int(shape[-1]))
    if hw not in allowed_shapes(spec):
        raise UploadError(f"{what} declares {hw[0]}x{hw[1]} pixels per band, the index's encoder expects "
                          f"{_sizes(spec)}")


def _check_array(name: str, a: np.ndarray) -> np.ndarray:
    _check_dtype(f"band {name}", a.dtype)
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


# -- .npz -------------------------------------------------------------------------------------------------------
def _zip_directory_bounded(data: bytes, spec: ModalitySpec) -> None:
    """Refuse a zip whose central directory lists more members (or bytes) than an upload may hold, before
    :class:`zipfile.ZipFile` builds an object per member."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - (1 << 16) - _ZIP_EOCD.size))
    if at < 0 or len(data) - at < _ZIP_EOCD.size:
        raise UploadError("not a valid .npz file (no zip directory)", 400)
    _sig, _disk, _cd_disk, _n_disk, n_total, cd_size, _cd_offset, _comment = _ZIP_EOCD.unpack_from(data, at)
    limit = max_bands(spec)
    # a member's directory entry is 46 bytes + its name + extra fields: 1 kB each is far more than .npz needs
    if n_total > limit or cd_size > limit * 1024:
        raise UploadError(f".npz lists {n_total} members ({cd_size} bytes of directory); an upload holds at most "
                          f"{limit} arrays", 413)


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, spec: ModalitySpec) -> np.ndarray:
    """One ``.npy`` member, its header checked before its data is decompressed."""
    name = info.filename
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_NPY_HEADER_MAX)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_NPY_HEADER_MAX)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as e:
            raise UploadError(f"not a valid .npz file (member {name!r}: {e}); object arrays are refused", 400
                              ) from None
        shape = tuple(int(s) for s in shape)
        check_declared(f"array {name[:-4]!r}", shape, dtype, spec)
        nbytes = math.prod(shape) * dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes or f.read(1):  # reading to the end also checks the member's CRC
            raise UploadError(f"not a valid .npz file (member {name!r} holds {len(raw)} bytes of data, its "
                              f"header declares {nbytes})", 400)
    arr = np.frombuffer(raw, dtype=dtype)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def parse_npz(data: bytes, spec: ModalitySpec, max_bytes: int) -> dict[str, np.ndarray]:
    """Band dict from .npz bytes: one array per band name, or one CxHxW array (bands in the spec's order)."""
    _zip_directory_bounded(data, spec)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise UploadError(f"not a valid .npz file ({e})", 400) from None
    arrays: dict[str, np.ndarray] = {}
    with zf:
        for info in zf.infolist():
            name = info.filename
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UploadError(f".npz member {name!r} is a symbolic link; only .npy arrays are accepted", 400)
            if info.is_dir() or not name.endswith(".npy") or "/" in name or "\\" in name or name.startswith("."):
                raise UploadError(f".npz member {name!r} is not a NAME.npy array; only .npy arrays are accepted",
                                  400)
            if info.flag_bits & 0x1:
                raise UploadError(f".npz member {name!r} is encrypted", 400)
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise UploadError(f".npz member {name!r} uses zip compression method {info.compress_type}; "
                                  "np.savez and np.savez_compressed (stored or deflate) are accepted", 415)
            key = name[:-4]
            if key in arrays:
                raise UploadError(f".npz holds array {key!r} twice", 400)
            try:
                arrays[key] = _read_member(zf, info, spec)
            except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as e:
                raise UploadError(f"not a valid .npz file (member {name!r}: {e})", 400) from None
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


# -- GeoTIFF ----------------------------------------------------------------------------------------------------
def _quiet_georeferencing() -> None:
    """A query patch needs no georeferencing: silence rasterio's warning about its absence for in-memory files.
    A process-wide filter (re)installed on each call, not ``warnings.catch_warnings``, which is not thread-safe
    (uploads are parsed in worker threads); re-adding an existing filter replaces it."""
    from rasterio.errors import NotGeoreferencedWarning

    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"rasterio\.io")


def _check_tiff_header(ds: Any, spec: ModalitySpec) -> None:
    """Band count, size and dtype of an open GeoTIFF, from its header (no pixel is read)."""
    count, height, width = ds.count, ds.height, ds.width
    try:
        dtypes = {np.dtype(d) for d in ds.dtypes}
    except TypeError:
        raise UploadError(f"GeoTIFF: dtype {ds.dtypes[0]} is not a real number type (expected integers or "
                          "floats)") from None
    if len(dtypes) != 1:
        raise UploadError(f"GeoTIFF: bands of different dtypes {sorted(map(str, dtypes))}")
    if count < len(spec.bands):
        raise UploadError(f"file has {count} bands, the index's encoder expects {describe_spec(spec)}")
    check_declared("GeoTIFF", (count, height, width), dtypes.pop(), spec)


def parse_tiff(data: bytes, spec: ModalitySpec) -> dict[str, np.ndarray]:
    """Band dict from GeoTIFF bytes (bands in file order, or by band description when they name the bands).

    Opened with the GTiff driver only, in GDAL's safe configuration (:data:`GDAL_SAFE_OPTIONS`); the declared
    size, band count and dtype are checked before any pixel is read."""
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.io import MemoryFile

    _quiet_georeferencing()
    try:
        with rasterio.Env(**GDAL_SAFE_OPTIONS), MemoryFile(data, ext=".tif") as mem, \
                mem.open(driver="GTiff") as ds:
            _check_tiff_header(ds, spec)
            arr = ds.read()
            desc = [d or "" for d in ds.descriptions]
    except RasterioError as e:
        raise UploadError(f"not a readable GeoTIFF ({e})", 400) from None
    if len(desc) == arr.shape[0] and set(spec.bands) <= set(desc):
        return {b: arr[desc.index(b)] for b in spec.bands}
    return _stack_to_bands(arr, spec, "GeoTIFF")


# -- PNG / JPEG -------------------------------------------------------------------------------------------------
def parse_rgb(data: bytes, spec: ModalitySpec) -> dict[str, np.ndarray]:
    """Band dict from PNG/JPEG bytes; only for encoders of 3-band RGB images."""
    if len(spec.bands) != 3:
        raise UploadError(f"PNG/JPEG images have 3 bands (RGB), the index's encoder expects {describe_spec(spec)}; "
                          "upload a GeoTIFF or .npz with those bands", 415)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as im:
            w, h = im.size  # from the header: nothing is decoded yet
            check_declared(f"{im.format} image", (h, w), np.dtype(np.uint8), spec)
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                # converting a 16-bit or float picture to RGB would silently clip it
                raise UploadError(f"{im.format} image is not an 8-bit picture (PIL mode {im.mode}); upload a "
                                  "GeoTIFF or .npz for other value ranges")
            rgb = im.convert("RGB")
    except Image.DecompressionBombError as e:
        raise UploadError(f"image refused: {e}", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UploadError(f"not a readable PNG/JPEG image ({e})", 400) from None
    arr = np.asarray(rgb).transpose(2, 0, 1)
    return {b: arr[i] for i, b in enumerate(spec.bands)}


def sniff(data: bytes) -> str | None:
    """The upload format recognised from the first bytes: ``npz``, ``geotiff``, ``rgb`` or None."""
    if data[:4] in ZIP_MAGIC:
        return "npz"
    if data[:4] in TIFF_MAGIC:
        return "geotiff"
    if data[:8] == PNG_MAGIC or data[:3] == JPEG_MAGIC:
        return "rgb"
    return None


def _check_unit(bands: Mapping[str, np.ndarray], spec: ModalitySpec) -> None:
    """Backscatter in dB has negative values (VH of any land cover, VV of water and fields); a patch whose every
    value is >= 0 is linear power (sigma0) and would encode as nonsense."""
    if spec.unit != "dB":
        return
    lows = [float(np.min(bands[b])) for b in spec.bands if b in bands and bands[b].size]
    if lows and min(lows) >= 0.0:
        med = float(np.median(np.concatenate([np.ravel(bands[b]) for b in spec.bands if b in bands])))
        raise UploadError(f"{spec.name} bands {', '.join(b for b in spec.bands if b in bands)} hold no negative "
                          f"value (median {med:.4g}): this looks like linear power, the index expects backscatter "
                          "in dB; convert with 10 * log10(value)")


def parse_upload(filename: str, data: bytes, spec: ModalitySpec, max_bytes: int) -> ParsedUpload:
    """Parse and validate an uploaded query for an encoder of modality ``spec`` (raw values, on its grid).

    The format is taken from the content, never from ``filename`` (used in messages only)."""
    if len(data) > max_bytes:
        raise UploadError(f"upload is {len(data)} bytes, the limit is {max_bytes} bytes", 413)
    if not data:
        raise UploadError("the uploaded file is empty", 400)
    fmt = sniff(data)
    if fmt == "npz":
        bands = parse_npz(data, spec, max_bytes)
    elif fmt == "geotiff":
        bands = parse_tiff(data, spec)
    elif fmt == "rgb":
        bands = parse_rgb(data, spec)
    else:
        raise UploadError(f"unsupported file type {filename!r}: upload a GeoTIFF (.tif), a .npz of band arrays, "
                          "or a PNG/JPEG for RGB models (the type is recognised from the file's content)", 415)
    bands = {b: _check_array(b, np.asarray(a)) for b, a in bands.items()}
    _check_shapes(bands, spec)
    _check_unit(bands, spec)
    image = to_grid({b: a.astype(np.float32) for b, a in bands.items()}, spec.bands, spec.grid)
    return ParsedUpload(image=image, bands=bands, source_format=fmt)
