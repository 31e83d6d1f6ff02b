"""The annotation loop on an INDEX directory (rounds, model versions, the simulated oracle), `rsir annotate`,
its export, and Rocchio relevance feedback checked by hand."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rsir.cli import main
from rsir.data.archive import open_archive
from rsir.feedback import AnnotationConflict, FeedbackError
from rsir.feedback.anneal import AnnealConfig, label_oracle
from rsir.feedback.rocchio import rocchio
from rsir.feedback.session import AnnotationSession, default_db, default_model_dir, load_head


def _session(sim_float: tuple[Path, Path], tmp_path: Path, **kw: object) -> AnnotationSession:
    arc, idx = sim_float
    copy = tmp_path / "idx"
    shutil.copytree(idx, copy)
    cfg = AnnealConfig(**{"pool": 2000, "steps": 40, **kw})  # type: ignore[arg-type]
    return AnnotationSession.open(copy, arc, config=cfg)


def test_rounds_versions_and_oracle(sim_float: tuple[Path, Path], tmp_path: Path) -> None:
    s = _session(sim_float, tmp_path)
    assert s.store.path == default_db(tmp_path / "idx") and s.model_dir == default_model_dir(tmp_path / "idx")
    r = s.run_round("random", 12)
    assert r["model_version"] is None and r["queued"] == 12  # no answers yet: nothing to train
    train = set(np.asarray(s.archive.ids)[s.archive.split_positions("train")].tolist())
    pend = s.store.pending(100)
    assert {p["a"] for p in pend} | {p["b"] for p in pend} <= train
    assert s.answer_with_labels() == 12
    r = s.run_round("anneal-mgue", 8)
    assert r["model_version"] == 1 and r["labelled"] == 12 and r["queued"] == 8
    head, manifest = load_head(s.model_dir)
    assert manifest["model_version"] == 1 and manifest["pairs"] == 12
    assert head.embed(s.features).shape == (len(s.ids), head.dim)
    # the answers agree with the labels oracle, and the new queries do not repeat answered pairs
    labels = np.asarray(open_archive(sim_float[0]).labels)
    i, j, y = s.labelled()
    assert (label_oracle(labels)(i, j) == y).all()
    answered = {(a.a, a.b) for a in s.store.answers()}
    assert not answered & {(p["a"], p["b"]) for p in s.store.pending(100)}
    s.answer_with_labels()
    r = s.run_round("anneal-bcgue", 0)
    assert r["model_version"] == 2 and r["labelled"] == 20 and r["queued"] == 0
    st = s.status()
    assert st["model_version"] == 2 and st["pending"] == 0 and "map@20" in st["model_metrics"]
    assert [x["status"] for x in s.store.rounds()] == ["done", "done", "done"]


def test_knn_pool_round_asks_neighbour_pairs(sim_float: tuple[Path, Path], tmp_path: Path) -> None:
    s = _session(sim_float, tmp_path, pool_from="knn", neighbours=3)
    assert s.run_round("random", 10)["queued"] == 10
    train = s.archive.split_positions("train")
    pos = {v: k for k, v in enumerate(s.ids)}
    f = s.features[train].astype(np.float64)
    d = ((f[:, None] - f[None]) ** 2).sum(2)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, :3]  # by hand: each training patch's 3 nearest training patches
    allowed = {(min(a, b), max(a, b)) for r, a in enumerate(train.tolist()) for b in train[near[r]].tolist()}
    asked = {(min(pos[p["a"]], pos[p["b"]]), max(pos[p["a"]], pos[p["b"]])) for p in s.store.pending(100)}
    assert len(asked) == 10 and asked <= allowed


def test_fine_tune_rounds_start_from_the_published_head(sim_float: tuple[Path, Path], tmp_path: Path) -> None:
    s = _session(sim_float, tmp_path, fine_tune=True, steps=1, lr=1e-12)
    s.run_round("random", 12)
    s.answer_with_labels()
    assert s.run_round("random", 8)["model_version"] == 1
    first, _ = load_head(s.model_dir)
    s.answer_with_labels()
    assert s.run_round("random", 0)["model_version"] == 2
    second, _ = load_head(s.model_dir)  # one step at a vanishing rate: the head it started from
    np.testing.assert_allclose(second.weights["w2"], first.weights["w2"], atol=1e-6)


def test_one_round_at_a_time_and_failed_rounds_are_closed(sim_float: tuple[Path, Path], tmp_path: Path) -> None:
    s = _session(sim_float, tmp_path)
    rid = s.store.start_round("random", 3, who="someone else")
    with pytest.raises(AnnotationConflict, match="still running"):
        s.run_round("random", 3)
    s.store.finish_round(rid)
    with pytest.raises(FeedbackError, match="strategy"):
        s.run_round("greedy", 3)
    assert s.store.running_round() is None
    s.store.add_pair(s.ids[0], s.ids[1], True, "alice")
    s.config.steps = 0  # a configuration refused inside the round: the round is marked failed, not left running
    with pytest.raises(Exception):  # noqa: B017
        s.run_round("random", 3)
    assert s.store.running_round() is None and s.store.rounds()[-1]["status"] == "failed"


def test_needs_a_float_index(sim_float: tuple[Path, Path], tmp_path: Path) -> None:
    arc, idx = sim_float
    with pytest.raises(FeedbackError, match="--method float"):
        AnnotationSession.open(idx.with_name("idx-lsh"), arc)


def test_cli_annotate_and_export(sim_float: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                 ) -> None:
    arc, idx = sim_float
    copy = tmp_path / "idx"
    shutil.copytree(idx, copy)
    assert main(["annotate", str(arc), "--index", str(copy), "--rounds", "2", "--budget", "6", "--initial", "6",
                 "--oracle", "labels", "--strategy", "anneal-mgue"]) == 0
    out = capsys.readouterr().out
    assert "model version 1" in out and "final: trained on 18 pairs -> model version 3" in out
    assert main(["annotate", "export", "--index", str(copy), "--out", str(tmp_path / "p.parquet")]) == 0
    t = pq.read_table(tmp_path / "p.parquet").to_pydict()
    assert len(t["a"]) == 18 and set(t["source"]) == {"anneal"} and set(t["who"]) == {"oracle:labels"}
    # a human round: pairs wait in the database
    assert main(["annotate", str(arc), "--index", str(copy), "--budget", "5"]) == 0
    assert "5 waiting" in capsys.readouterr().out
    assert main(["annotate", "export", "--index", str(tmp_path / "none"), "--out", str(tmp_path / "x.parquet")]) == 2
    assert main(["annotate", str(arc), "--index", str(copy), "--budget", "0"]) == 2
    assert main(["annotate", str(arc), "--index", str(copy), "--budget", "5", "--hidden", "-1"]) == 2


def test_cli_annotate_mlp_head(sim_float: tuple[Path, Path], tmp_path: Path) -> None:
    """--hidden N trains and saves a 2-layer MLP head: (F -> N -> dim) weights, unit-norm (items, dim) output."""
    arc, idx = sim_float
    copy = tmp_path / "idx"
    shutil.copytree(idx, copy)
    model = tmp_path / "mlp"
    assert main(["annotate", str(arc), "--index", str(copy), "--model", str(model), "--rounds", "1", "--budget", "6",
                 "--initial", "6", "--oracle", "labels", "--hidden", "16"]) == 0
    head, manifest = load_head(model)
    f = int(manifest["features"])
    assert manifest["hidden"] == 16 and manifest["config"]["hidden"] == 16 and manifest["pairs"] == 12
    assert head.weights["w1"].shape == (16, f) and head.weights["b1"].shape == (16,)
    assert head.weights["w2"].shape == (head.dim, 16)
    z = head.embed(np.random.default_rng(0).normal(size=(5, f)).astype(np.float32))
    assert z.shape == (5, head.dim) and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)


def test_rocchio_float_by_hand() -> None:
    q = np.array([1.0, 0.0, 0.0], np.float32)
    pos = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 1.0]], np.float32)
    neg = np.array([[1.0, 0.0, 1.0]], np.float32)
    got = rocchio(q, pos, neg, "l2")
    # 1.0*q + 0.75*mean(pos) - 0.25*mean(neg) = [1 - 0.25, 0.75, 0.375 - 0.25]
    assert np.allclose(got, [0.75, 0.75, 0.125])
    assert np.allclose(rocchio(q, [], [], "ip"), q)
    with pytest.raises(FeedbackError):
        rocchio(q, pos, neg, "cosine")


def test_rocchio_hamming_by_hand() -> None:
    q = np.packbits(np.array([1, 1, 0, 0, 1, 0, 1, 0], np.uint8))
    pos = np.packbits(np.array([[0, 1, 1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 1, 0, 1, 0]], np.uint8), axis=1)
    neg = np.packbits(np.array([[1, 0, 0, 0, 1, 0, 1, 1]], np.uint8), axis=1)
    got = np.unpackbits(rocchio(q, pos, neg, "hamming"))
    # per bit: q (+-1) + 0.75 * mean(pos) - 0.25 * neg
    # bit0: 1 - 0.75 - 0.25 = 0 -> keeps the query's 1; bit1: 1 + .75 + .25 > 0; bit2: -1 + .75 + .25 = 0 -> 0
    # bit3: -1 - .75 + .25 < 0; bit4: 1 + .75 - .25 > 0; bit5: -1 - .75 + .25 < 0; bit6 > 0; bit7: -1 -.75 -.25
    assert got.tolist() == [1, 1, 0, 0, 1, 0, 1, 0]
    many = np.packbits(np.array([[0, 0, 1, 1, 0, 1, 0, 1]] * 3, np.uint8), axis=1)
    assert np.unpackbits(rocchio(q, many, [], "hamming", beta=2.0)).tolist() == [0, 0, 1, 1, 0, 1, 0, 1]


def test_cli_annotate_on_postgresql(sim_float: tuple[Path, Path], tmp_path: Path, pg_server: object,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The same loop with the answers on a PostgreSQL server: `rsir annotate --db URL`, then export from it."""
    arc, idx = sim_float
    url = pg_server.create_database()  # type: ignore[attr-defined]
    try:
        assert main(["annotate", str(arc), "--index", str(idx), "--db", url, "--model", str(tmp_path / "m"),
                     "--rounds", "1", "--budget", "6", "--initial", "6", "--oracle", "labels"]) == 0
        out = capsys.readouterr().out
        assert "final: trained on 12 pairs -> model version 2" in out and "postgresql+psycopg://" in out
        assert not (Path(str(idx) + ".annotations.sqlite")).exists()
        assert main(["annotate", "export", "--index", str(idx), "--db", url, "--out", str(tmp_path / "p.parquet")]) == 0
        t = pq.read_table(tmp_path / "p.parquet").to_pydict()
        assert len(t["a"]) == 12 and set(t["who"]) == {"oracle:labels"}
    finally:
        pg_server.drop_database(url)  # type: ignore[attr-defined]
