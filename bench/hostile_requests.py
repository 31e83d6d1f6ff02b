"""What hostile requests cost the service (issue 11): peak memory and time of each, measured one per process.

Every case runs in a fresh child process (so that ``ru_maxrss`` is that case's own peak), after a warm-up request
of the same kind, with the address space capped at the warm process's size + 2 GiB so that a case that would
allocate gigabytes fails instead of taking the machine. Reported per case: HTTP status (or the parser's), peak
RSS growth over the warm process, wall time.

Side by side for the declared-size GeoTIFFs: ``ours`` (rsir.data.uploads.parse_upload: header checked before any
pixel is read) against ``reference``, the parsing before issue 11 (rasterio's format detection, the whole raster
read, then its shape checked), reproduced here in a few lines.

Cases: GeoTIFFs of a few hundred bytes declaring 12 x S x S uint16 pixels; a 20000 x 20000 PNG (about 50 kB);
a .npz whose .npy header declares 12 x 12000 x 12000; POST /api/search/id with 400,000 label names (4.8 MB) under
the default limits and with the JSON body limit raised to 8 MB; a chunked 150 MB JSON body and a chunked 200 MB
upload (bytes the app pulled before refusing). The archive is simulated (tests' tiny archive, 30 items, 12 px).

    .venv/bin/python bench/hostile_requests.py            # -> bench/results/hostile.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

CAP = 2 << 30


def _vm_bytes() -> int:
    return int(next(x for x in open("/proc/self/status") if x.startswith("VmSize")).split()[1]) * 1024


def _measure(fn: Any) -> dict[str, Any]:
    """Run ``fn`` with the address space capped; peak RSS growth (kB) and seconds."""
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + CAP, resource.RLIM_INFINITY))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    try:
        out = fn()
    except MemoryError:
        out = {"status": "MemoryError (address space capped at +2 GiB)"}
    out["seconds"] = round(time.perf_counter() - t0, 4)
    out["peak_rss_growth_mb"] = round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, 1)
    return out


def reference_parse_tiff(data: bytes) -> Any:
    """The GeoTIFF path before issue 11: format detection by GDAL, whole raster read, then the shape checked."""
    import warnings

    from rasterio.io import MemoryFile

    with warnings.catch_warnings(), MemoryFile(data) as mem, mem.open() as ds:
        warnings.simplefilter("ignore")
        return ds.read()


def run_case(name: str, work: Path) -> dict[str, Any]:
    import numpy as np

    from rsir.data.bands import s2_spec
    from rsir.data.imageio import rgb_spec
    from rsir.data.uploads import UploadError, parse_upload
    from tests import hostile

    spec = s2_spec(12)
    ok = {b: np.ones(s, np.uint16) for b, s in spec.shapes.items()}
    import io

    buf = io.BytesIO()
    np.savez(buf, **ok)
    parse_upload("warm.npz", buf.getvalue(), spec, 20 << 20)

    def parse(data: bytes, sp: Any = spec) -> dict[str, Any]:
        try:
            parse_upload("x", data, sp, 20 << 20)
            return {"status": 200}
        except UploadError as e:
            return {"status": e.status, "message": str(e)[:160]}

    if name.startswith("geotiff-"):
        path, size = name.rsplit("-", 2)[1:]
        data = hostile.sparse_geotiff(work / f"{size}.tif", bands=12, size=int(size))
        if path == "ours":
            return {"file_bytes": len(data), **_measure(lambda: parse(data))}
        reference_parse_tiff(hostile.sparse_geotiff(work / "warm.tif", bands=12, size=12))

        def ref() -> dict[str, Any]:
            arr = reference_parse_tiff(data)
            return {"status": f"read {arr.nbytes / 2**20:.0f} MB, then refused for its shape"}

        return {"file_bytes": len(data), **_measure(ref)}
    if name == "png-bomb-20000":
        data = hostile.png_bomb(20000, 20000)
        return {"file_bytes": len(data), **_measure(lambda: parse(data, rgb_spec(12)))}
    if name == "npz-header-12x12000x12000":
        data = hostile.npz_with({"image.npy": hostile.npy_header_declaring((12, 12000, 12000))})
        return {"file_bytes": len(data), **_measure(lambda: parse(data))}
    return run_service_case(name, work)


def run_service_case(name: str, work: Path) -> dict[str, Any]:

    from fastapi.testclient import TestClient

    from rsir.data.archive import open_archive
    from rsir.query import SearchEngine
    from rsir.service.app import ServiceLimits, create_app
    from tests.data.archive_helpers import write_tiny_archive
    from tests.service.test_api import make_searcher

    if not (work / "arch").exists():
        write_tiny_archive(work / "arch", n=30, size=12)
        make_searcher(open_archive(work / "arch"), work / "index")
    eng = SearchEngine.open(work / "index", archive=work / "arch")
    if name.startswith("labels-400k"):
        limits = ServiceLimits(max_json_bytes=8 << 20) if name.endswith("json-8MB") else ServiceLimits()
        c = TestClient(create_app(engine=eng, limits=limits))
        c.post("/api/search/id", json={"id": "item001", "k": 5, "filters": {"labels": ["Arable land"]}})
        body = json.dumps({"id": "item001", "k": 5, "filters": {"labels": ["Arable land"] * 400_000}})

        def post() -> dict[str, Any]:
            r = c.post("/api/search/id", content=body, headers={"content-type": "application/json"})
            return {"status": r.status_code, "message": str(r.json()["detail"])[:160]}

        return {"body_bytes": len(body), **_measure(post)}
    # chunked bodies: drive the ASGI app directly and count what it pulls
    from tests.service.test_hardening import MULTIPART, PREAMBLE, call_asgi, endless

    app = create_app(engine=eng)
    if name == "chunked-json-150MB":
        def body() -> Any:
            yield b'{"id": "item001", "filters": {"labels": ['
            yield from endless(b'"Arable land", ' * 4096, 150 << 20)
        path, headers, chunk = "/api/search/id", {"content-type": "application/json"}, 15 * 4096
    else:
        def body() -> Any:
            yield PREAMBLE
            yield from endless(b"\0" * 65536, 200 << 20)
        path, headers, chunk = "/api/search/upload", MULTIPART, 65536
    call_asgi(app, "POST", "/api/search/id", iter([b'{"id": "item001"}']), {"content-type": "application/json"})

    def post() -> dict[str, Any]:
        status, out, pulled = call_asgi(app, "POST", path, body(), headers)
        return {"status": status, "message": out.get("detail"), "body_bytes_pulled_approx": pulled * chunk}

    return _measure(post)


CASES = ["geotiff-ours-2000", "geotiff-reference-2000", "geotiff-ours-4000", "geotiff-reference-4000",
         "geotiff-ours-12000", "geotiff-reference-12000", "png-bomb-20000", "npz-header-12x12000x12000",
         "labels-400k-default", "labels-400k-json-8MB", "chunked-json-150MB", "chunked-upload-200MB"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--work", default=None)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "hostile.json"))
    args = p.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, Path(args.work))))
        return
    results: dict[str, Any] = {}
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            r = subprocess.run([sys.executable, __file__, "--case", case, "--work", tmp], capture_output=True,
                               text=True, timeout=600)
            results[case] = (json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0
                             else {"error": r.stderr.strip().splitlines()[-1][:300]})
            print(case, results[case], flush=True)
    out = {"benchmark": "hostile requests (issue 11)", "data": "simulated tiny archive (30 items, 12 px) and "
           "generated hostile files", "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                                                  "platform": platform.platform()},
           "load_before": load_before, "load_after": [round(v, 2) for v in os.getloadavg()],
           "address_space_cap_over_warm_process_gib": CAP / 2**30, "cases": results,
           "command": ".venv/bin/python bench/hostile_requests.py"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
