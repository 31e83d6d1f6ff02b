"""The upload parser refuses hostile files: formats that reference other files or URLs, headers that declare more
pixels than the modality has, .npz archives with links or lying headers. All hostile files are generated here."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rsir.data.bands import s2_spec
from rsir.data.imageio import rgb_spec
from rsir.data.uploads import UploadError, decoded_bound, parse_tiff, parse_upload
from tests import hostile

S2 = s2_spec(12)
RGB = rgb_spec(12)
LIMIT = 20 << 20
ROOT = Path(__file__).resolve().parents[2]


def _s2_bands(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {b: rng.integers(0, 10000, sh, dtype=np.uint16) for b, sh in S2.shapes.items()}


def _npz(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _refused(data: bytes, spec=S2, name: str = "x.tif") -> UploadError:  # type: ignore[no-untyped-def]
    with pytest.raises(UploadError) as e:
        parse_upload(name, data, spec, LIMIT)
    return e.value


# -- formats that reference other files or URLs -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["x.tif", "x.npz", "x.png", "/vsicurl/x.tif"])
def test_gdal_xml_and_vsi_paths_are_refused_by_content(tmp_path: Path, name: str) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(os.urandom(12 * 12 * 12))
    with hostile.counting_http_server() as (url, hits):
        for kind, data in hostile.gdal_xml_datasets(url, secret).items():
            e = _refused(data, name=name)
            assert e.status == 415 and "recognised from the file's content" in str(e), (kind, str(e))
        assert hits == []


def test_tiff_reader_uses_the_gtiff_driver_only(tmp_path: Path) -> None:
    """Even handed a VRT directly (past the content check), the GeoTIFF reader neither reads the file it names
    nor fetches the URL: only GDAL's GTiff driver may open the bytes."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(os.urandom(12 * 12 * 12))
    with hostile.counting_http_server() as (url, hits):
        for data in (hostile.vrt_raw(secret), hostile.vrt_source(f"/vsicurl/{url}/x.tif")):
            with pytest.raises(UploadError, match="not a readable GeoTIFF") as e:
                parse_tiff(data, S2)
            assert e.value.status == 400
        assert hits == []


def test_upload_name_is_never_a_path(tmp_path: Path) -> None:
    bands = _s2_bands()
    with hostile.counting_http_server() as (url, hits):
        for name in (f"/vsicurl/{url}/q.npz", "/etc/passwd", "../../q.tif", ""):
            p = parse_upload(name, _npz(bands), S2, LIMIT)
            assert p.source_format == "npz"
            np.testing.assert_array_equal(p.bands["B02"], bands["B02"])
        assert hits == []


# -- declared sizes are checked before pixels are decoded ------------------------------------------------------
def test_geotiff_declaring_huge_raster_is_refused_from_its_header(tmp_path: Path) -> None:
    # 12 x 4000 x 4000 here (a regression would decode 384 MB in this process); the 12 x 12000 x 12000 file of the
    # report is checked in a capped subprocess below
    data = hostile.sparse_geotiff(tmp_path / "big.tif", bands=12, size=4000)
    e = _refused(data)
    assert e.status == 422 and "declares 4000x4000 pixels per band" in str(e) and "12x12" in str(e)
    many = hostile.sparse_geotiff(tmp_path / "many.tif", bands=200, size=12)
    e = _refused(many)
    assert "declares 200 bands" in str(e) and "12 bands (s2: B01..B12)" in str(e)
    cplx = hostile.sparse_geotiff(tmp_path / "c.tif", bands=12, size=12, dtype="complex64")
    assert "not a real number type" in str(_refused(cplx))


@pytest.mark.slow
def test_declared_size_geotiff_stays_within_a_memory_bound(tmp_path: Path) -> None:
    """In a subprocess with the address space capped (so a regression fails instead of eating the machine): the
    12 x 12000 x 12000 GeoTIFF costs less than 32 MB of peak RSS to refuse; 5 GB before header checks."""
    data_path = tmp_path / "big.tif"
    assert len(hostile.sparse_geotiff(data_path, bands=12, size=12000)) < 11_000  # the 11 kB file of the report
    script = textwrap.dedent(f"""
        import json, resource
        import numpy as np
        from rsir.data.bands import s2_spec
        from rsir.data.uploads import UploadError, parse_upload
        spec = s2_spec(12)
        ok = {{b: np.ones(s, np.uint16) for b, s in spec.shapes.items()}}
        import io; buf = io.BytesIO(); np.savez(buf, **ok)
        parse_upload("warm.npz", buf.getvalue(), spec, 20 << 20)  # warm up imports and allocators
        vm = int([x for x in open("/proc/self/status") if x.startswith("VmSize")][0].split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        data = open({str(data_path)!r}, "rb").read()
        try:
            parse_upload("big.tif", data, spec, 20 << 20)
            out = {{"refused": False}}
        except UploadError as e:
            out = {{"refused": True, "status": e.status, "message": str(e)}}
        out["peak_growth_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(json.dumps(out))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["refused"] and out["status"] == 422 and "declares 12000x12000 pixels" in out["message"], out
    assert out["peak_growth_kb"] < 32 * 1024, out


def test_png_and_jpeg_decompression_bombs_are_refused() -> None:
    e = _refused(hostile.png_bomb(20000, 20000), RGB, "bomb.png")
    assert e.status == 413 and "decompression bomb" in str(e)
    e = _refused(hostile.png_bomb(3000, 3000), RGB, "big.png")
    assert e.status == 422 and "declares 3000x3000 pixels per band" in str(e)
    e = _refused(hostile.jpeg_declaring(60000, 60000), RGB, "bomb.jpg")
    assert e.status == 413
    e = _refused(hostile.jpeg_declaring(640, 480), RGB, "big.jpg")
    assert e.status == 422 and "480x640" in str(e)


def test_png_and_jpeg_of_the_right_size_are_read() -> None:
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    p = parse_upload("q.bin", buf.getvalue(), RGB, LIMIT)  # recognised by content, whatever the name
    np.testing.assert_array_equal(p.bands["R"], rgb[..., 0])
    assert p.source_format == "rgb"
    buf = io.BytesIO()
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 200).save(buf, "PNG")
    assert "not an 8-bit picture" in str(_refused(buf.getvalue(), RGB, "q.png"))


# -- .npz --------------------------------------------------------------------------------------------------------
def test_npz_symlinks_and_odd_members_are_refused() -> None:
    e = _refused(hostile.npz_symlink("/etc/passwd"), name="x.npz")
    assert e.status == 400 and "symbolic link" in str(e)
    ok = hostile.npy_bytes(np.zeros((12, 12), np.uint16))
    for member in ("../B01.npy", "sub/B01.npy", "B01.txt", ".hidden.npy"):
        e = _refused(hostile.npz_with({member: ok}), name="x.npz")
        assert "only .npy arrays are accepted" in str(e), member
    e = _refused(hostile.npz_with({"B01.npy": ok, "B01/": b""}), name="x.npz")
    assert "only .npy arrays are accepted" in str(e)


def test_npz_pickles_and_structured_arrays_are_refused() -> None:
    obj = hostile.npy_bytes(np.array([{"a": 1}] * 4, dtype=object).reshape(2, 2))
    assert "not a real number type" in str(_refused(hostile.npz_with({"B01.npy": obj}), name="x.npz"))
    rec = hostile.npy_bytes(np.zeros((12, 12), dtype=[("a", "<u2"), ("b", "<u2")]))
    assert "not a real number type" in str(_refused(hostile.npz_with({"B01.npy": rec}), name="x.npz"))


def test_npz_lying_headers_and_member_floods_are_refused_before_decompressing() -> None:
    big = hostile.npy_header_declaring((12, 12000, 12000))
    e = _refused(hostile.npz_with({"image.npy": big}), name="x.npz")
    assert e.status == 422 and "declares 12000x12000 pixels per band" in str(e)
    e = _refused(hostile.npz_with({"image.npy": hostile.npy_header_declaring((5000, 12, 12))}), name="x.npz")
    assert "declares 5000 bands" in str(e)
    short = hostile.npy_header_declaring((12, 12, 12))  # declares 3456 bytes, holds 64
    e = _refused(hostile.npz_with({"image.npy": short}), name="x.npz")
    assert e.status == 400 and "declares 3456" in str(e)
    e = _refused(hostile.npz_many_members(5000), name="x.npz")
    assert e.status == 413 and "5000 members" in str(e)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_from_numpy_is_read_exactly(compressed: bool) -> None:
    bands = _s2_bands(3)
    bands["B05"] = np.asfortranarray(bands["B05"])
    p = parse_upload("q.npz", _npz(bands, compressed), S2, LIMIT)
    for b in S2.bands:
        np.testing.assert_array_equal(p.bands[b], bands[b])
    stack = np.stack([np.full((12, 12), i, np.float32) for i in range(12)])
    p = parse_upload("q.npz", _npz({"image": stack}, compressed), S2, LIMIT)
    np.testing.assert_array_equal(p.image, stack)


def test_decoded_bound_is_what_the_docs_say() -> None:
    # 12 Sentinel-2 bands + 8 extra, 120 x 120, 8 bytes: the bound quoted in SECURITY.md
    assert decoded_bound(s2_spec(120)) == 20 * 120 * 120 * 8 == 2_304_000
