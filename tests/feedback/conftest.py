"""A small simulated archive with a float index (the frozen features ANNEAL trains on), built once per module."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rsir.data.simulate import SimConfig, simulate
from rsir.pipeline import build_index


@pytest.fixture(scope="package")
def sim_float(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("anneal")
    arc = simulate(SimConfig(n=160, seed=3, size=12, difficulty="medium", bitemporal=0.0, workers=1), root / "sim")
    idx = build_index(arc, root / "idx-float", method="float", progress=False)
    build_index(arc, root / "idx-lsh", method="lsh", bits=32, progress=False)
    return arc, idx


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """Small networks: one intra-op thread is faster than two fighting over a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def pg_server() -> object:
    """A throw-away PostgreSQL server (tests/feedback/pg.py), or a skip that says why there is none."""
    from tests.feedback.pg import PgServer

    server = PgServer()
    reason = server.start()
    if reason is not None:
        pytest.skip(f"PostgreSQL store tests skipped: {reason}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    """Where an annotation store lives: an SQLite file, or a fresh database on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield str(tmp_path / "a.sqlite")
        return
    server = request.getfixturevalue("pg_server")
    url = server.create_database()
    yield url
    server.drop_database(url)
