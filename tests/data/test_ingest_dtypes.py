"""Bands of the wrong dtype are converted by the documented rules (rsir.data.coerce) or refused; nothing wraps.

The damaged cases come from a probe of main: float reflectances 0-0.3 in a uint16 archive were stored as zeros,
int32 70,000 as 4,464 and negative floats wrapped to 65,531.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsir.cli import main
from rsir.data.archive import ArchiveWriter, open_archive
from rsir.data.bands import ModalitySpec, s1_spec, s2_spec
from rsir.data.coerce import REFLECTANCE_RANGE, reflectance_scale
from rsir.data.formats import ingest
from rsir.data.nomenclature import BEN19
from rsir.errors import ItemError
from tests.data.fixtures_tiff import V1_S2, write_bigearthnet_v1, write_geotiff_folder, write_tif

SIZE = 12


def _s2(fill) -> dict[str, np.ndarray]:
    spec = s2_spec(SIZE)
    return {b: fill(sh) for b, sh in spec.shapes.items()}


def _write(path, items: dict[str, dict], specs=None):
    """An archive of the given items; without ``specs`` the items are S2 band dicts."""
    with ArchiveWriter(path, specs or [s2_spec(SIZE)], BEN19, "test") as w:
        for iid, arrays in items.items():
            w.add(iid, {}, arrays if specs else {"s2": arrays})
    return open_archive(path)


def test_float_reflectance_is_scaled_not_zeroed(tmp_path):
    rng = np.random.default_rng(0)
    refl = _s2(lambda sh: rng.uniform(0.0, 0.3, sh).astype(np.float32))
    a = _write(tmp_path / "a", {"refl": refl})
    for b, x in refl.items():
        got = a.get("refl", "s2")[b]
        assert got.dtype == np.uint16
        # round(value * 10000), computed here by hand from the float64 value
        np.testing.assert_array_equal(got, np.floor(x.astype(np.float64) * 10000 + 0.5).astype(np.uint16))
    assert int(a.get("refl", "s2")["B04"].max()) > 2000  # was 0 on main
    (conv,) = {(c["rule"], c["from"], c["to"]) for c in a.manifest["conversions"]}
    assert conv == ("float reflectance scaled by 10000 and rounded", "float32", "uint16")
    assert {c["band"] for c in a.manifest["conversions"]} == set(refl)
    assert all(c["items"] == 1 and c["first_items"] == ["refl"] for c in a.manifest["conversions"])


def test_int32_beyond_uint16_is_refused_naming_item_and_band(tmp_path):
    big = _s2(lambda sh: np.full(sh, 1000, np.int32))
    big["B08"] = np.full(big["B08"].shape, 70000, np.int32)
    with pytest.raises(ItemError, match=r"item 'big'.*modality s2 band B08: int32 values 70000\.\.70000 do not "
                                        r"fit the archive's uint16 \(0\.\.65535\)"):
        _write(tmp_path / "a", {"big": big})
    assert not (tmp_path / "a").exists()


def test_negative_float_is_refused_not_wrapped(tmp_path):
    neg = _s2(lambda sh: np.full(sh, 0.1, np.float32))
    neg["B02"] = np.full(neg["B02"].shape, -5.5, np.float32)
    with pytest.raises(ItemError, match=r"band B02: float32 values -5\.5\.\.-5\.5 .*outside the reflectance range"):
        _write(tmp_path / "a", {"neg": neg})


def test_whole_float_dn_cast_exactly_and_int_in_range_too(tmp_path):
    dn = _s2(lambda sh: (np.arange(sh[0] * sh[1]).reshape(sh) * 37 % 12000).astype(np.float32))
    i32 = _s2(lambda sh: np.full(sh, 65535, np.int32))
    a = _write(tmp_path / "a", {"dn": dn, "i32": i32})
    for b in dn:
        np.testing.assert_array_equal(a.get("dn", "s2")[b], dn[b].astype(np.int64))
        assert int(a.get("i32", "s2")[b].min()) == 65535
    rules = {(c["from"], c["rule"]) for c in a.manifest["conversions"]}
    assert rules == {("float32", "float whole numbers cast exactly"),
                     ("int32", "cast exactly (every value representable)")}


def test_fractional_floats_in_a_non_reflectance_integer_modality_are_refused(tmp_path):
    spec = ModalitySpec("rgb", ["R", "G", "B"], {b: (4, 4) for b in "RGB"}, "uint8", "DN 0-255")
    arrays = {b: np.full((4, 4), 0.5, np.float32) for b in "RGB"}
    with pytest.raises(ItemError, match="band R: float32 values 0.5..0.5 have fractional parts; the archive "
                                        "stores uint8"):
        _write(tmp_path / "a", {"x": {"rgb": arrays}}, [spec])
    over = {b: np.full((4, 4), 300, np.uint16) for b in "RGB"}
    with pytest.raises(ItemError, match="band R: uint16 values 300..300 do not fit the archive's uint8"):
        _write(tmp_path / "b", {"x": {"rgb": over}}, [spec])


def test_float64_overflowing_float32_is_refused_and_ints_convert(tmp_path):
    spec = s1_spec(SIZE)
    huge = {"VV": np.full((SIZE, SIZE), 1e40), "VH": np.full((SIZE, SIZE), -12.0)}
    with pytest.raises(ItemError, match="band VV: float64 values 1e\\+40..1e\\+40 exceed the range of the "
                                        "archive's float32"):
        _write(tmp_path / "a", {"x": {"s1": huge}}, [spec])
    ints = {"VV": np.full((SIZE, SIZE), -12, np.int16), "VH": np.full((SIZE, SIZE), -19.25, np.float64)}
    a = _write(tmp_path / "b", {"x": {"s1": ints}}, [spec])
    assert a.get("x", "s1")["VV"].dtype == np.float32 and float(a.get("x", "s1")["VV"][0, 0]) == -12.0
    assert float(a.get("x", "s1")["VH"][0, 0]) == -19.25
    rules = {c["band"]: (c["from"], c["rule"]) for c in a.manifest["conversions"]}
    assert rules == {"VV": ("int16", "cast exactly (every value representable)"),
                     "VH": ("float64", "converted to the narrower float type (rounded)")}
    big = {"VV": np.full((SIZE, SIZE), 2**24 + 1, np.int64), "VH": np.full((SIZE, SIZE), -3.0, np.float16)}
    a = _write(tmp_path / "c", {"x": {"s1": big}}, [spec])
    assert float(a.get("x", "s1")["VV"][0, 0]) == 2.0**24  # the nearest float32
    rules = {c["band"]: c["rule"] for c in a.manifest["conversions"]}
    assert rules == {"VV": "integers converted to float32 (those beyond 16777216 rounded)",
                     "VH": "cast exactly (every value representable)"}


def test_nan_in_a_float_band_for_an_integer_modality_is_refused(tmp_path):
    refl = _s2(lambda sh: np.full(sh, 0.2, np.float32))
    refl["B03"][0, 0] = np.nan
    with pytest.raises(ItemError, match="band B03: 1 NaN or infinite"):
        _write(tmp_path / "a", {"x": refl})


def test_reflectance_unit_parsing():
    assert reflectance_scale("reflectance*10000") == 10000 and reflectance_scale("Reflectance * 1e4") is None
    assert reflectance_scale("dB") is None and REFLECTANCE_RANGE == (0.0, 2.0)


def _v1_band(src, k, band, data):
    pid = V1_S2[k]
    d = src / "BigEarthNet-v1.0" / pid
    gsd = {"B01": 60, "B09": 60, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20, "B12": 20}.get(band, 10)
    write_tif(d / f"{pid}_{band}.tif", data, x0=390000.0 + 1200 * k, gsd=gsd)


def test_ingest_of_float_band_files_scales_them(tmp_path):
    src = write_bigearthnet_v1(tmp_path / "src")
    refl = np.linspace(0.0, 0.3, 120 * 120, dtype=np.float32).reshape(120, 120)
    _v1_band(src, 0, "B04", refl)
    a = open_archive(ingest(src, "bigearthnet-v1", tmp_path / "a", {"s1": "false"}, progress=False).path)
    got = a.get(V1_S2[0], "s2")["B04"]
    np.testing.assert_array_equal(got, np.floor(refl.astype(np.float64) * 10000 + 0.5).astype(np.uint16))
    (c,) = a.manifest["conversions"]
    assert (c["band"], c["items"], c["first_items"]) == ("B04", 1, [V1_S2[0]])


def test_ingest_cli_refuses_int32_overflow_in_one_line(tmp_path, capsys):
    src = write_bigearthnet_v1(tmp_path / "src")
    _v1_band(src, 1, "B11", np.full((60, 60), 70000, np.int32))
    rc = main(["ingest", str(src), "--format", "bigearthnet-v1", "--out", str(tmp_path / "a"), "--quiet",
               "--option", "s1=false"])
    err = capsys.readouterr().err.strip()
    (err,) = [line for line in err.splitlines() if "error" in line]  # one error line (a warning may precede it)
    assert rc == 2 and err.startswith("rsir ingest: error: ") and "Traceback" not in err
    assert f"item '{V1_S2[1]}'" in err and "band B11: int32 values 70000..70000 do not fit" in err
    assert not (tmp_path / "a").exists()
    # --skip-bad keeps the good patch and lists the refused one in the manifest
    rc = main(["ingest", str(src), "--format", "bigearthnet-v1", "--out", str(tmp_path / "a"), "--quiet",
               "--option", "s1=false", "--skip-bad"])
    assert rc == 0
    a = open_archive(tmp_path / "a")
    assert a.ids == [V1_S2[0]] and "band B11" in a.manifest["skipped"][0]["problem"]


def test_geotiff_folder_of_mixed_dtypes(tmp_path):
    src = write_geotiff_folder(tmp_path / "src")  # uint16 files
    write_tif(src / "img" / "z.tif", np.full((4, 32, 32), 0.25, np.float32))
    with pytest.raises(ItemError, match=r"item 'z'.*band B1: float32 values 0.25..0.25 have fractional parts"):
        ingest(src / "img", "geotiff", tmp_path / "a", progress=False)
    write_tif(src / "img" / "z.tif", np.full((4, 32, 32), 1234.0, np.float32))
    a = open_archive(ingest(src / "img", "geotiff", tmp_path / "b", progress=False).path)
    assert int(a.get("z")["B1"][0, 0]) == 1234
    info = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert info["conversions"][0]["rule"] == "float whole numbers cast exactly"
