"""Hostile upload files, generated on the fly (none is committed), and a loopback HTTP server that counts hits.

Each generator returns bytes an attacker could upload: GDAL XML datasets that name other files or URLs, TIFF /
PNG / JPEG headers declaring far more pixels than they hold, .npz archives with symbolic links, odd members or
lying .npy headers.
"""

from __future__ import annotations

import http.server
import io
import stat
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


# -- a URL that records whether anything fetched it --------------------------------------------------------------
@contextmanager
def counting_http_server() -> Iterator[tuple[str, list[str]]]:
    """(base URL, list of requested paths) of a loopback HTTP server that answers 404 to everything."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _hit(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        do_GET = do_HEAD = do_POST = _hit

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    finally:
        srv.shutdown()
        srv.server_close()


# -- GDAL XML datasets --------------------------------------------------------------------------------------------
def vrt_raw(secret: Path, bands: int = 12, size: int = 12) -> bytes:
    """A VRT whose bands are raw bytes of ``secret`` (any file the server can read)."""
    body = "".join(
        f'<VRTRasterBand dataType="Byte" band="{i + 1}" subClass="VRTRawRasterBand">'
        f'<SourceFilename relativeToVRT="0">{secret}</SourceFilename><ImageOffset>{i * size * size}</ImageOffset>'
        f"<PixelOffset>1</PixelOffset><LineOffset>{size}</LineOffset></VRTRasterBand>" for i in range(bands))
    return f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">{body}</VRTDataset>'.encode()


def vrt_source(source: str, bands: int = 12, size: int = 12) -> bytes:
    """A VRT whose bands read ``source`` (a path, or /vsicurl/URL)."""
    body = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{i + 1}"><SimpleSource><SourceFilename relativeToVRT="0">'
        f"{source}</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>" for i in range(bands))
    return f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">{body}</VRTDataset>'.encode()


def gdal_xml_datasets(url: str, secret: Path) -> dict[str, bytes]:
    """GDAL's XML 'datasets' (and plain /vsi paths) that make GDAL read a file or fetch ``url``."""
    return {
        "vrt-raw-file": vrt_raw(secret),
        "vrt-vsicurl": vrt_source(f"/vsicurl/{url}/band.tif"),
        "vrt-bom-spaces": b"\xef\xbb\xbf  \n" + vrt_source(f"/vsicurl/{url}/bom.tif"),
        "wms": (f"<GDAL_WMS><Service name=\"WMS\"><ServerUrl>{url}/wms?</ServerUrl><Layers>x</Layers></Service>"
                "<DataWindow><UpperLeftX>0</UpperLeftX><UpperLeftY>12</UpperLeftY><LowerRightX>12</LowerRightX>"
                "<LowerRightY>0</LowerRightY><SizeX>12</SizeX><SizeY>12</SizeY></DataWindow><BandsCount>3"
                "</BandsCount></GDAL_WMS>").encode(),
        "wmts": f"<GDAL_WMTS><GetCapabilitiesUrl>{url}/wmts?</GetCapabilitiesUrl></GDAL_WMTS>".encode(),
        "wcs": f"<WCS_GDAL><ServiceURL>{url}/wcs?</ServiceURL><CoverageName>x</CoverageName></WCS_GDAL>".encode(),
        "pam-aux-xml": f'<PAMDataset><PAMRasterBand band="1"><Description>{secret}</Description></PAMRasterBand>'
                       "</PAMDataset>".encode(),
        "vsicurl-path-text": f"/vsicurl/{url}/plain.tif".encode(),
        "vsizip-path-text": f"/vsizip/{secret}.zip/x.tif".encode(),
    }


# -- headers that declare more than they hold ------------------------------------------------------------------
def sparse_geotiff(path: Path, bands: int = 12, size: int = 12000, dtype: str = "uint16") -> bytes:
    """A few hundred bytes of valid GeoTIFF declaring bands x size x size pixels (no strip is written)."""
    import warnings

    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not georeferenced: GDAL does not need it, nor does the attack
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands, dtype=dtype,
                           sparse_ok=True, tiled=False, blockysize=size, interleave="band", compress="deflate"):
            pass
    return path.read_bytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit grey PNG of width x height zeros: about 50 kB for 400 megapixels."""
    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is patched to declare width x height pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# -- .npz archives ------------------------------------------------------------------------------------------------
def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def npz_with(members: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    """A zip of the given members; ``modes`` sets a member's Unix mode (e.g. a symbolic link)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return buf.getvalue()


def npz_symlink(target: str = "/etc/passwd") -> bytes:
    return npz_with({"B01.npy": target.encode()}, {"B01.npy": stat.S_IFLNK | 0o777})


def npy_header_declaring(shape: tuple[int, ...], dtype: str = "<u2") -> bytes:
    """A .npy header declaring ``shape`` followed by a few bytes of data only."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\x00" * 64


def npz_many_members(n: int) -> bytes:
    return npz_with({f"x{i}.npy": npy_bytes(np.zeros((2, 2), np.uint8)) for i in range(n)})
