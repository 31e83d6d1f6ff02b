"""Obtain small real datasets into a local cache: ``get_dataset("reben-sample")``.

The reBEN sample (24 real Sentinel-2 L2A patches with their Sentinel-1 partners, 19-class labels and splits) is
published on PyPI inside the wheel ``configilm==0.7.1`` under ``configilm/extra/mock_data/BENv2/``. It is
fetched with pip (the only registry this project may reach), extracted from the wheel (a zip file) into a
temporary folder beside the cache entry, verified, and renamed into place, so a half-extracted copy is never
taken for a good one. ``verify.json`` records the sha256 of every file; each later call re-checks them and
fetches again when the cache is damaged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rsir.errors import NotFoundError, RsirError
from rsir.storage import atomic_write_json, replace_dir, sha256_file

VERIFY = "verify.json"
# lock.mdb is rewritten by any LMDB reader that takes locks, so it is extracted but not hashed
UNHASHED = frozenset({"lock.mdb"})


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives in a PyPI wheel and what a good copy looks like."""

    name: str
    description: str
    requirement: str               # pip requirement of the wheel holding the data
    prefix: str                    # folder inside the wheel, ending with "/"
    lmdb_dir: str                  # LMDB folder relative to the dataset root
    metadata: tuple[str, ...]      # reBEN metadata parquet files relative to the root
    n_patches: int                 # patches listed across the metadata files
    sha256: dict[str, str] = field(default_factory=dict)  # pinned hashes of the published files (may be empty)


DATASETS: dict[str, DatasetSpec] = {
    "reben-sample": DatasetSpec(
        name="reben-sample",
        description="reBEN (BigEarthNet v2.0) sample: 24 real S2 L2A patches + their S1 partners, 19-class "
                    "labels, splits (LMDB + metadata.parquet; from the PyPI wheel configilm==0.7.1)",
        requirement="configilm==0.7.1",
        prefix="configilm/extra/mock_data/BENv2/",
        lmdb_dir="BigEarthNet-V2-LMDB",
        metadata=("metadata.parquet", "metadata_for_patches_with_snow_cloud_or_shadow.parquet"),
        n_patches=24,
        sha256={
            "BigEarthNet-V2-LMDB/data.mdb": "6173b22607186d4f947a1d33f51f227e1960111ee35fc7d76187be4fb784db9c",
            "metadata.parquet": "69b5329f30891e7cb5b0599807edc7242a83ddb59ddd3e9e494243b7bd9bfdc0",
            "metadata_for_patches_with_snow_cloud_or_shadow.parquet":
                "e6242ad03be7199743445689c1db9c87338fc0d9f4fa409ce0fc63edb02b587a",
        },
    ),
}


def default_cache_dir() -> Path:
    """$RSIR_CACHE, else ~/.cache/rsir."""
    env = os.environ.get("RSIR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rsir"


def list_datasets() -> list[tuple[str, str]]:
    """(name, description) of every dataset get_dataset can fetch."""
    return [(k, v.description) for k, v in DATASETS.items()]


def _hashed_files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in UNHASHED and p.name != VERIFY}


def check_content(root: Path, spec: DatasetSpec) -> None:
    """Structural check: the LMDB opens, the metadata lists spec.n_patches patches, every patch and its
    s1_name is a key of the LMDB. Raises RsirError saying what is wrong."""
    import lmdb
    import pandas as pd

    frames = []
    for name in spec.metadata:
        p = root / name
        if not p.exists():
            raise RsirError(f"{spec.name}: {name} is missing")
        try:
            frames.append(pd.read_parquet(p))
        except Exception as e:
            raise RsirError(f"{spec.name}: {name} is not readable Parquet ({e})") from None
    meta = pd.concat(frames, ignore_index=True)
    ids = set(meta["patch_id"].astype(str))
    if len(ids) != spec.n_patches:
        raise RsirError(f"{spec.name}: metadata lists {len(ids)} patches, expected {spec.n_patches}")
    try:
        env = lmdb.open(str(root / spec.lmdb_dir), readonly=True, lock=False, readahead=False, subdir=True)
    except lmdb.Error as e:
        raise RsirError(f"{spec.name}: the LMDB does not open ({e})") from None
    try:
        with env.begin() as txn:
            keys = [str(k) for k in meta["patch_id"]] + [str(k) for k in meta.get("s1_name", []) if k]
            missing = [k for k in keys if txn.get(k.encode()) is None]
    finally:
        env.close()
    if missing:
        raise RsirError(f"{spec.name}: {len(missing)} patches listed in the metadata are absent from the LMDB "
                        f"(first: {missing[0]})")


def verify_cached(root: Path, spec: DatasetSpec) -> str | None:
    """None when ``root`` is a complete, undamaged copy; otherwise what is wrong."""
    vpath = root / VERIFY
    if not vpath.exists():
        return f"{VERIFY} missing"
    try:
        recorded = json.loads(vpath.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{VERIFY} unreadable ({e})"
    for rel, digest in recorded.items():
        p = root / rel
        if not p.is_file():
            return f"{rel} missing"
        if sha256_file(p) != digest:
            return f"{rel} damaged (sha256 differs from {VERIFY})"
    return None


def extract_from_wheel(wheel: Path, spec: DatasetSpec, dest_parent: Path) -> Path:
    """Extract spec.prefix of a wheel into a temporary folder under dest_parent, verify it, write verify.json;
    returns the temporary folder (the caller renames it into place)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.tmp-", dir=dest_parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache entry should read like any other folder
    try:
        try:
            zf = zipfile.ZipFile(wheel)
        except (OSError, zipfile.BadZipFile) as e:
            raise RsirError(f"{wheel}: not a readable wheel ({e})") from None
        with zf:
            members = [i for i in zf.infolist() if i.filename.startswith(spec.prefix) and not i.is_dir()]
            if not members:
                raise RsirError(f"{wheel}: no {spec.prefix} folder inside")
            for info in members:
                rel = info.filename[len(spec.prefix):]
                target = (tmp / rel).resolve()
                if not target.is_relative_to(tmp.resolve()):  # refuse "../" members
                    raise RsirError(f"{wheel}: unsafe member path {info.filename!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        hashes = _hashed_files(tmp)
        for rel, want in spec.sha256.items():
            if hashes.get(rel) != want:
                raise RsirError(f"{spec.name}: {rel} in {wheel.name} does not have the published sha256")
        check_content(tmp, spec)
        atomic_write_json(tmp / VERIFY, {"dataset": spec.name, "source": spec.requirement,
                                         "path_in_wheel": spec.prefix, "sha256": hashes})
        return tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def download_wheel(requirement: str, dest: Path, timeout: float = 600) -> Path:
    """``pip download --no-deps REQUIREMENT -d DEST`` with this interpreter; the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--no-input",
           "--disable-pip-version-check", "--progress-bar", "off", requirement, "-d", str(dest)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RsirError(f"pip download {requirement} did not finish in {timeout:.0f} s (is PyPI reachable?)") from None
    except OSError as e:
        raise RsirError(f"cannot run pip to download {requirement} ({e})") from None
    wheels = sorted(dest.glob("*.whl"))
    if res.returncode != 0 or not wheels:
        tail = " ".join((res.stderr or res.stdout).strip().splitlines()[-2:])
        raise RsirError(f"cannot download {requirement} from PyPI (is PyPI reachable?): {tail}")
    return wheels[0]


def get_dataset(name: str, cache_dir: str | Path | None = None, wheel: str | Path | None = None,
                downloader: Callable[[str, Path], Path] | None = None) -> Path:
    """Path of a verified local copy of a dataset, fetching it (or re-fetching a damaged one) when needed.

    ``wheel`` uses an already downloaded wheel instead of pip; ``downloader`` replaces pip (tests).
    """
    if name not in DATASETS:
        raise NotFoundError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = cache / name
    if target.exists() and verify_cached(target, spec) is None:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.download-", dir=cache) as dl:
        whl = Path(wheel) if wheel is not None else (downloader or download_wheel)(spec.requirement, Path(dl))
        tmp = extract_from_wheel(whl, spec, cache)
    replace_dir(tmp, target)  # a damaged copy is moved aside first, so the rename is atomic
    return target
