"""Simulator: determinism, label semantics, physical sanity, archive format, bitemporal pairs, difficulty, CLI."""

from __future__ import annotations

import math
import re
from datetime import date

import lmdb
import numpy as np
import pytest

from rsir.cli import main as cli_main
from rsir.data.archive import open_archive
from rsir.data.bands import S2_BANDS
from rsir.data.change_grammar import CLAUSES, heldout_markers
from rsir.data.nomenclature import BEN19
from rsir.data.simulate import (
    BLOCK,
    CHANGE_KINDS,
    SimConfig,
    _persisting_covers,
    class_shares,
    class_spectrum,
    generate_block,
    labels_from_shares,
    n_blocks,
    simulate,
)
from rsir.errors import RsirError

C = {name: i for i, name in enumerate(BEN19.classes)}
BAND = {b: i for i, b in enumerate(S2_BANDS)}


def _items(cfg: SimConfig, with_maps: bool = True) -> list:
    return [it for blk in range(n_blocks(cfg)) for it in generate_block(cfg, blk, with_maps=with_maps)]


def _store(path) -> dict[bytes, bytes]:
    env = lmdb.open(str(path / "patches.lmdb"), readonly=True, lock=False)
    with env.begin() as txn:
        out = {bytes(k): bytes(v) for k, v in txn.cursor()}
    env.close()
    return out


def test_same_seed_byte_identical_whatever_the_worker_count(tmp_path):
    # 2 blocks and a half: exercises the block seeding and the ordered multi-process path
    n = 2 * BLOCK + 6
    a = simulate(SimConfig(n=n, seed=7, size=24, bitemporal=0.3, clouds=0.3, workers=1), tmp_path / "a")
    b = simulate(SimConfig(n=n, seed=7, size=24, bitemporal=0.3, clouds=0.3, workers=2), tmp_path / "b")
    c = simulate(SimConfig(n=n, seed=8, size=24, bitemporal=0.3, clouds=0.3, workers=1), tmp_path / "c")
    ca, cb = open_archive(a).catalog, open_archive(b).catalog
    assert ca.to_json() == cb.to_json()
    sa, sb = _store(a), _store(b)
    assert sa.keys() == sb.keys() and all(sa[k] == sb[k] for k in sa)
    assert len(sa) == 2 * len(ca)  # one s2 and one s1 value per item
    # a different seed gives different pixels
    sc = _store(c)
    assert open_archive(c).catalog["id"].tolist() != ca["id"].tolist() or any(sa[k] != sc.get(k) for k in sa)


def test_labels_are_classes_at_or_above_threshold():
    cfg = SimConfig(n=40, seed=1, size=30, difficulty="hard", bitemporal=0.0, label_threshold=0.1)
    for it in _items(cfg):
        cm = it.class_map
        # shares by hand: pixel count of each class over the pixel count of the patch
        by_hand = np.array([(cm == c).sum() / cm.size for c in range(len(BEN19))])
        np.testing.assert_allclose(it.meta["class_shares"], by_hand, rtol=0, atol=1e-12)
        np.testing.assert_allclose(class_shares(cm), by_hand, atol=1e-12)
        assert it.meta["labels"] == [BEN19.classes[c] for c in range(len(BEN19)) if by_hand[c] >= 0.1]
        assert 1 <= len(it.meta["labels"]) <= 5
        assert len(np.unique(cm)) <= 5  # each patch is drawn from 1-5 classes
    # the threshold is inclusive: a share exactly at it is a label
    shares = np.zeros(len(BEN19))
    shares[[2, 4]] = [0.05, 0.95]
    assert labels_from_shares(shares, 0.05) == ["Arable land", "Pastures"]
    assert labels_from_shares(shares, 0.0500001) == ["Pastures"]


def test_physical_sanity_of_pixels_and_backscatter():
    cfg = SimConfig(n=96, seed=3, size=30, difficulty="easy", bitemporal=0.0)
    red, nir, vv = {}, {}, {}
    for it in _items(cfg):
        cm = it.class_map
        for c in np.unique(cm):
            m = cm == c
            red.setdefault(int(c), []).append(it.s2["B04"][m].astype(float))
            nir.setdefault(int(c), []).append(it.s2["B08"][m].astype(float))
            vv.setdefault(int(c), []).append(it.s1["VV"][m].astype(float))
    mean = {k: {c: float(np.concatenate(v).mean()) for c, v in d.items()} for k, d in
            (("red", red), ("nir", nir), ("vv", vv))}
    water = [c for c in (C["Inland waters"], C["Marine waters"]) if c in mean["red"]]
    assert water, "the sample should contain water"
    for c in water:
        assert mean["nir"][c] < mean["red"][c]          # water absorbs NIR
        assert mean["nir"][c] < 500                     # NIR reflectance below 0.05
    for name in ("Broad-leaved forest", "Coniferous forest", "Mixed forest", "Pastures"):
        if C[name] in mean["red"]:
            assert mean["nir"][C[name]] > 3 * mean["red"][C[name]]  # vegetation: NIR plateau >> red
    urban = C["Urban fabric"] if C["Urban fabric"] in mean["vv"] else C["Industrial or commercial units"]
    assert urban in mean["vv"]
    assert max(mean["vv"][c] for c in water) < mean["vv"][urban] - 10.0  # water is > 10 dB darker in VV
    forest = [mean["vv"][C[n]] for n in ("Broad-leaved forest", "Coniferous forest") if C[n] in mean["vv"]]
    assert forest and all(-11.0 < f < -5.0 for f in forest)
    # noise-free class spectra in July (day 190): red edge, forest types, soil/sand and water in the SWIR
    bl, co = class_spectrum(C["Broad-leaved forest"], 190), class_spectrum(C["Coniferous forest"], 190)
    for s in (bl, co):
        assert s[BAND["B04"]] < s[BAND["B05"]] < s[BAND["B06"]] < s[BAND["B07"]] < s[BAND["B8A"]]
    assert co[BAND["B08"]] < bl[BAND["B08"]]
    sand = class_spectrum(C["Beaches, dunes, sands"], 190)
    # bright in the red (dry sand 0.15-0.35; 0.19 after the per-band calibration to BigEarthNet's band means)
    assert sand[BAND["B04"]] > 0.15 and sand[BAND["B11"]] > sand[BAND["B04"]]
    lake = class_spectrum(C["Inland waters"], 190)
    assert lake[BAND["B11"]] < 0.01 and lake[BAND["B08"]] < lake[BAND["B04"]]
    # crops are seasonal: greener NDVI in early summer than in mid-winter
    def ndvi(s: np.ndarray) -> float:
        return float((s[BAND["B08"]] - s[BAND["B04"]]) / (s[BAND["B08"]] + s[BAND["B04"]]))
    assert ndvi(class_spectrum(C["Arable land"], 170)) > ndvi(class_spectrum(C["Arable land"], 15)) + 0.3


def test_native_resolutions_are_area_averages_and_speckle_is_multiplicative():
    cfg = SimConfig(n=8, seed=4, size=24, difficulty="easy", bitemporal=0.0)
    it = _items(cfg)[0]
    assert it.s2["B02"].shape == (24, 24) and it.s2["B05"].shape == (12, 12) and it.s2["B01"].shape == (4, 4)
    # a 20 m pixel lying inside one region of a single class equals that class's spectrum mixture averaged:
    # we check the weaker, distribution-free fact that B8A (20 m) is as smooth as a 2x2 average of B08 would be
    b08 = it.s2["B08"].astype(float)
    avg = b08.reshape(12, 2, 12, 2).mean(axis=(1, 3))
    assert np.corrcoef(avg.ravel(), it.s2["B8A"].astype(float).ravel())[0, 1] > 0.8
    vv = it.s1["VV"]
    assert vv.dtype == np.float32 and np.isfinite(vv).all()
    # unit-mean gamma speckle with ENL 4.4 gives dB fluctuations of about 4.34 * sqrt(trigamma(4.4)) ~ 2.2 dB
    # within one homogeneous class region (plus the texture of the class, so a loose bound)
    cm = it.class_map
    c = np.bincount(cm.ravel()).argmax()
    assert 1.0 < float(vv[cm == c].std()) < 4.5


def test_archive_round_trip(tmp_path):
    p = simulate(SimConfig(n=10, seed=5, bitemporal=0.2, clouds=0.5), tmp_path / "sim")
    a = open_archive(p)
    assert a.manifest["source_format"] == "simulated" and a.manifest["info"]["simulated"] is True
    assert set(a.modalities) == {"s2", "s1"} and a.nomenclature.classes == BEN19.classes
    raw = a.get(0, "s2")
    for b, shape in (("B02", 120), ("B04", 120), ("B08", 120), ("B05", 60), ("B11", 60), ("B12", 60),
                     ("B01", 20), ("B09", 20)):
        assert raw[b].shape == (shape, shape) and raw[b].dtype == np.uint16
    s1 = a.get(0, "s1")
    assert s1["VV"].shape == (120, 120) and s1["VV"].dtype == np.float32
    assert a.image(0, "s2").shape == (12, 120, 120)
    cat = a.catalog
    assert set(cat["split"]) <= {"train", "validation", "test"}
    for _, r in cat.iterrows():
        date.fromisoformat(r["date"])
        assert r["country"] and r["tile"] and r["s1_id"].startswith("S1")
        assert 3 <= len(r["captions"]) <= 5 and all(isinstance(s, str) and s for s in r["captions"])
        w, s, e, n = r["bbox"]
        # footprint is 1.2 km on a side: degrees of latitude * 111.32 km, of longitude * cos(lat) * 111.32 km
        assert (n - s) * 111.32 == pytest.approx(1.2, rel=1e-6)
        assert (e - w) * 111.32 * math.cos(math.radians(r["lat"])) == pytest.approx(1.2, rel=1e-6)
        assert 35 < r["lat"] < 70 and -11 < r["lon"] < 30
        assert 0.0 <= r["cloud_cover"] <= 1.0
    assert a.stats["s2"]["B08"]["count"] > 0


def test_bitemporal_partners_are_consistent():
    cfg = SimConfig(n=96, seed=6, size=24, bitemporal=0.6, unchanged=0.0)  # every pair gets a change event
    items = _items(cfg)
    by_id = {it.id: it for it in items}
    t2 = [it for it in items if it.id.endswith("_t2")]
    assert len(items) == 96 + len(t2) and 35 <= len(t2) <= 80
    kinds_changed = 0
    kinds_seen: set[str] = set()
    for it in t2:
        t1 = by_id[it.id[:-3]]
        assert it.meta["partner_id"] == t1.id and t1.meta["partner_id"] == it.id
        assert items.index(it) == items.index(t1) + 1
        for k in ("lon", "lat", "bbox", "tile", "country", "split"):
            assert it.meta[k] == t1.meta[k]
        assert date.fromisoformat(it.meta["date"]) > date.fromisoformat(t1.meta["date"])
        assert it.meta["change_captions"] and not t1.meta["change_captions"]
        changed = it.class_map != t1.class_map
        kind = it.meta["change_kind"]
        assert kind in CHANGE_KINDS and t1.meta["change_kind"] == ""
        kinds_seen.add(kind)
        # every caption states its pair's event; test pairs' captions hold held-out wording, the others never
        for cap in it.meta["change_captions"]:
            assert _from_kind(kind, cap), (kind, cap)
            assert _held(cap) == (it.meta["split"] == "test"), cap
        if changed.any():
            kinds_changed += 1
            new = set(np.unique(it.class_map[changed]).tolist())
            old = set(np.unique(t1.class_map[changed]).tolist())
            assert len(new) == 1
            expected = {"deforestation": {C["Transitional woodland, shrub"], 2, 4},  # regrowth, fields, pasture
                        "urban growth": {C["Urban fabric"], C["Industrial or commercial units"]},
                        "flooding": {C["Inland waters"]},
                        "crop change": {2, 3, 4, 5, 6} - old,
                        "water loss": {C["Inland wetlands"], C["Natural grassland and sparsely vegetated areas"], 2,
                                       4},
                        }[kind]
            assert new <= expected, (kind, new)
    assert kinds_changed >= len(t2) // 2
    assert len(kinds_seen) >= 4, kinds_seen
    singles = [it for it in items if not it.id.endswith("_t2") and it.id + "_t2" not in by_id]
    assert all(it.meta["partner_id"] == "" for it in singles)


def test_change_events_start_from_several_earlier_land_covers():
    # Real archives build on fields, scrub, bare land or forest and clear forest for regrowth or for fields; when
    # every event of a kind starts from the same cover, the later image alone tells what the caption's earlier
    # state was (change events version 3).
    pairs = _unchanged_pairs(SimConfig(n=384, seed=4, size=24, bitemporal=1.0, unchanged=0.0))
    before: dict[str, set[int]] = {}
    after: dict[str, set[int]] = {}
    gone = 0
    for a, b in pairs:
        moved = a.class_map != b.class_map
        if not moved.any():
            continue
        kind = b.meta["change_kind"]
        src = int(np.bincount(a.class_map[moved]).argmax())
        before.setdefault(kind, set()).add(src)
        after.setdefault(kind, set()).update(np.unique(b.class_map[moved]).tolist())
        gone += not (b.class_map == src).any()
    assert len(before["urban growth"]) >= 5 and before["urban growth"] & {8, 9, 10, 11, 12, 13}, before
    assert len(before["deforestation"]) >= 2 and len(after["deforestation"]) >= 2, (before, after)
    assert len(before["crop change"]) >= 3 and len(before["flooding"]) >= 3, before
    assert gone > 0  # some events take the whole earlier land cover: only the earlier image shows it


def test_unchanged_captions_name_only_land_covers_the_patch_shows():
    shares = np.zeros(len(BEN19.classes))
    shares[[2, 9, 13]] = 0.5, 0.3, 0.2
    assert _persisting_covers(shares, 9, 13, 0.05) == (9, 13)  # forest partly cleared earlier: both still there
    assert _persisting_covers(shares, 8, 13, 0.05) == (13, 2)  # the earlier event took all of its forest
    assert _persisting_covers(shares, -1, -1, 0.05) == (2, 9)  # no earlier event: the two main covers
    only = np.zeros(len(BEN19.classes))
    only[0] = 1.0
    assert _persisting_covers(only, 2, 0, 0.05) == (0, -1)  # all built over: one cover to name


def _unchanged_pairs(cfg: SimConfig) -> list[tuple]:
    """(earlier item, later item) of every pair."""
    items = _items(cfg)
    by_id = {it.id: it for it in items}
    return [(by_id[it.meta["partner_id"]], it) for it in items if it.id.endswith("_t2")]


def test_unchanged_pairs_name_the_persisting_state_and_some_show_an_earlier_event():
    # LEVIR-CC: half of the pairs are unchanged. Here half of the partnered patches are, and half of those show at
    # both dates the outcome of an event before the first date, so that the later image alone cannot tell.
    pairs = _unchanged_pairs(SimConfig(n=192, seed=9, size=24, bitemporal=0.8))
    still = [(a, b) for a, b in pairs if b.meta["change_kind"] == "none"]
    assert 0.35 <= len(still) / len(pairs) <= 0.65
    prior = [(a, b) for a, b in still if b.meta["prior_change"]]
    assert 0.25 <= len(prior) / len(still) <= 0.75
    assert len({b.meta["prior_change"] for _, b in prior}) >= 4
    lookalike = {"deforestation": (C["Transitional woodland, shrub"], 2, 4), "flooding": C["Inland waters"],
                 "urban growth": (C["Urban fabric"], C["Industrial or commercial units"])}
    for a, b in still:
        assert (a.class_map == b.class_map).all()  # nothing changed but the season and the radiometry
        assert a.meta["prior_change"] == "" and a.meta["change_kind"] == ""
        held = b.meta["split"] == "test"
        caps = b.meta["change_captions"]
        assert len(caps) == 5 and len(set(caps)) == len(caps)
        for cap in caps:  # test pairs: held-out wording in each caption; the other splits never see it
            assert _from_kind("none", cap), cap
            assert _held(cap) == held, cap
        kind = b.meta["prior_change"]
        if kind in lookalike:  # the earlier event's outcome is there at both dates
            assert np.isin(a.class_map, lookalike[kind]).any(), kind
    changed = [b for _, b in pairs if b.meta["change_kind"] != "none"]
    assert changed and all(b.meta["prior_change"] == "" for b in changed)


def test_unchanged_pairs_are_reproducible_by_seed_and_zero_keeps_every_pair_changing():
    cfg = SimConfig(n=64, seed=12, size=12, bitemporal=0.8)

    def signature(c: SimConfig) -> list:
        return [(a.id, b.meta["change_kind"], b.meta["prior_change"], tuple(b.meta["change_captions"]),
                 a.class_map.tobytes(), b.s2["B04"].tobytes()) for a, b in _unchanged_pairs(c)]

    first = signature(cfg)
    assert first == signature(SimConfig(n=64, seed=12, size=12, bitemporal=0.8))
    assert first != signature(SimConfig(n=64, seed=13, size=12, bitemporal=0.8))
    none = _unchanged_pairs(SimConfig(n=64, seed=12, size=12, bitemporal=0.8, unchanged=0.0))
    assert all(b.meta["prior_change"] == "" for _, b in none)
    # with unchanged=0 only patches that offer no event stay unchanged (rare)
    assert sum(b.meta["change_kind"] == "none" for _, b in none) <= len(none) // 10
    plain = _unchanged_pairs(SimConfig(n=64, seed=12, size=12, bitemporal=0.8, after_event=0.0))
    assert all(b.meta["prior_change"] == "" for _, b in plain)
    after = [b for _, b in _unchanged_pairs(SimConfig(n=64, seed=12, size=12, bitemporal=0.8, after_event=1.0))
             if b.meta["change_kind"] == "none"]
    assert sum(bool(b.meta["prior_change"]) for b in after) >= 0.9 * len(after)


def _from_kind(kind: str, caption: str) -> bool:
    """Whether a caption holds, in order, the fixed words of one of the grammar's clauses of ``kind``."""
    for t in CLAUSES[kind].train + CLAUSES[kind].heldout:
        parts = [re.escape(p) for p in re.split(r"\{(?:src|dst|amt)\}", t)]
        if re.search(".+".join(parts), caption):
            return True
    return False


_MARKERS = heldout_markers()


def _held(caption: str) -> bool:
    return any(m in caption for m in _MARKERS)


def _mean_spectrum_map_at_10(level: str) -> tuple[float, float]:
    """mAP@10 (variant A, any shared label) of cosine kNN on 12 band means, and the random baseline."""
    cfg = SimConfig(n=192, seed=11, size=30, difficulty=level, bitemporal=0.0)
    items = _items(cfg, with_maps=False)
    x = np.array([[it.s2[b].astype(np.float64).mean() for b in S2_BANDS] for it in items])
    y = np.array([BEN19.encode(it.meta["labels"]) for it in items], bool)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ xn.T
    np.fill_diagonal(sim, -np.inf)  # the query itself is not retrieved
    aps = []
    for q in range(len(x)):
        top = np.argsort(-sim[q], kind="stable")[:10]
        rel = (y[top] & y[q]).any(axis=1).astype(float)
        if rel.sum() == 0:
            aps.append(0.0)
            continue
        prec = np.cumsum(rel) / np.arange(1, 11)  # P@i for i = 1..10
        aps.append(float((prec * rel).sum() / rel.sum()))  # AP@10 = sum rel_i P@i / R_10
    shared = (y.astype(int) @ y.T.astype(int)) > 0
    np.fill_diagonal(shared, False)
    return float(np.mean(aps)), float(shared.sum() / (len(x) * (len(x) - 1)))


def test_hard_difficulty_defeats_mean_spectra():
    easy, easy_base = _mean_spectrum_map_at_10("easy")
    hard, hard_base = _mean_spectrum_map_at_10("hard")
    assert easy >= 0.7                      # mean spectra nearly solve "easy"
    assert hard <= easy - 0.15              # ... but clearly not "hard"
    # and the lift over picking at random shrinks (hard patches have more labels, so random is better there)
    assert hard - hard_base < 0.6 * (easy - easy_base)


def test_captions_describe_content_and_are_deterministic():
    cfg = SimConfig(n=40, seed=9, size=12, bitemporal=0.0)
    a, b = _items(cfg), _items(cfg)
    assert [it.meta["captions"] for it in a] == [it.meta["captions"] for it in b]
    from rsir.data.simulate import HELDOUT_PHRASES, PHRASES

    for it in a:
        caps = it.meta["captions"]
        assert 3 <= len(caps) <= 5 and len(set(caps)) == len(caps)
        dom = int(np.argmax(it.meta["class_shares"]))
        # the dominant class is named (by one of its synonyms) in at least one caption
        assert any(p in c for c in caps for p in PHRASES[dom] + HELDOUT_PHRASES[dom])
    phrasing = {c for it in a for c in it.meta["captions"]}
    assert len(phrasing) > 3 * len(a)  # varied, not one sentence per label set


def test_splits_are_about_60_20_20():
    items = _items(SimConfig(n=600, seed=2, size=6, bitemporal=0.0), with_maps=False)
    frac = {s: sum(it.meta["split"] == s for it in items) / 600 for s in ("train", "validation", "test")}
    assert abs(frac["train"] - 0.6) < 0.07 and abs(frac["validation"] - 0.2) < 0.06
    assert len({it.id for it in items}) == 600


def test_config_errors_are_user_errors():
    with pytest.raises(RsirError, match="multiple of 6"):
        SimConfig(n=5, size=100)
    with pytest.raises(RsirError, match="difficulty"):
        SimConfig(n=5, difficulty="brutal")
    with pytest.raises(RsirError, match="clouds"):
        SimConfig(n=5, clouds=1.5)
    with pytest.raises(RsirError, match="unchanged"):
        SimConfig(n=5, unchanged=-0.1)
    with pytest.raises(RsirError, match="after_event"):
        SimConfig(n=5, after_event=2.0)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["simulate", "--n", "6", "--out", str(out), "--size", "12", "--seed", "3", "--quiet", "--workers", "1"]
    assert cli_main(args) == 0
    assert "wrote" in capsys.readouterr().out
    a = open_archive(out)
    assert len(a) >= 6 and a.get(0, "s2")["B01"].shape == (2, 2)
    assert cli_main(args) == 2  # exists, no --overwrite
    assert "already exists" in capsys.readouterr().err
    assert cli_main(args + ["--overwrite", "--difficulty", "hard", "--clouds", "0.5"]) == 0
    assert cli_main(args + ["--overwrite", "--bitemporal", "1", "--unchanged", "1", "--after-event", "0"]) == 0
    cat = open_archive(out).catalog
    later = cat[cat["id"].str.endswith("_t2")]
    assert len(later) == 6 and set(later["change_kind"]) == {"none"} and set(later["prior_change"]) == {""}
    assert cli_main(["simulate", "--n", "6", "--out", str(tmp_path / "x"), "--size", "10"]) == 2
    assert "multiple of 6" in capsys.readouterr().err


def test_heldout_caption_wording_is_used_by_the_test_split_only():
    from rsir.data.simulate import HELDOUT_PHRASES, HELDOUT_RELATIONS

    items = _items(SimConfig(n=300, seed=4, size=12, bitemporal=0.0), with_maps=False)
    held = [p for grp in HELDOUT_PHRASES for p in grp] + [f" {r} " for r in HELDOUT_RELATIONS] + [
        "this image shows", "the scene is entirely", "we can see", "a satellite view of", "% of the ground"]
    for it in items:
        uses = [any(h in c for h in held) for c in it.meta["captions"]]
        if it.meta["split"] == "test":
            assert sum(uses) >= len(uses) // 2, it.meta["captions"]  # at least half have held-out wording
        else:
            assert not any(uses), it.meta["captions"]


def test_captions_name_counts_places_seasons_and_directions():
    from rsir.data.simulate import direction

    cmap = np.zeros((12, 12), np.uint8)
    cmap[:4, 8:] = 3  # north-east corner
    cmap[10:, :3] = 5  # south-west corner
    assert direction(cmap, 3) == "north-east" and direction(cmap, 5) == "south-west"
    assert direction(cmap, 0) == "centre" and direction(cmap, 7) == "centre"
    items = _items(SimConfig(n=200, seed=5, size=24, bitemporal=0.0), with_maps=False)
    text = " | ".join(c for it in items for c in it.meta["captions"])
    for word in ("kinds of land cover", " in the north", "summer", "winter", " percent of the patch"):
        assert word in text, word
    assert any(it.meta["country"] in c for it in items for c in it.meta["captions"])
