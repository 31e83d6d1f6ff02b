"""Classic hashers: bit packing, LSH, ITQ, and the METHODS.md section 2 faithfulness checks for KLSH / KSLSH."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rsir.bits import hamming_matrix, hamming_one, pack_bits, popcount, unpack_bits
from rsir.errors import RsirError
from rsir.hashing import Hasher, HasherError, make_hasher
from rsir.hashing.features import FeatureExtractor, glcm_contrast_homogeneity
from rsir.hashing.klsh import KLSH
from rsir.hashing.kslsh import KSLSH, phi, similarity_matrix, surrogate, surrogate_value


def blobs(n: int = 300, d: int = 12, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = 4.0 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    return centres[y] + rng.standard_normal((n, d)), y


class Untouchable:
    """Labels that fail loudly if anything reads them."""

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"labels were read ({name})")

    def __array__(self, *a: object, **k: object) -> None:
        raise AssertionError("labels were read (__array__)")

    def __len__(self) -> int:
        raise AssertionError("labels were read (__len__)")


def test_bitpack_layout_and_popcount() -> None:
    # bits 1,0,1,1,0,0,0,0 | 1 -> MSB first: 0b10110000 = 176, then 0b10000000 = 128
    codes = pack_bits(np.array([[1, 0, 1, 1, 0, 0, 0, 0, 1]]))
    assert codes.tolist() == [[176, 128]]
    assert unpack_bits(codes, 9).tolist() == [[1, 0, 1, 1, 0, 0, 0, 0, 1]]
    assert popcount(np.array([[255, 3]], np.uint8)).tolist() == [10]  # 8 + 2
    a = np.array([0b1010_0000, 0], np.uint8)
    b = np.array([[0b0110_0000, 1], [0b1010_0000, 0]], np.uint8)
    assert hamming_one(a, b).tolist() == [3, 0]  # 1010 vs 0110: 2 bits, plus the last bit of byte 2
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (7, 4), dtype=np.uint8), rng.integers(0, 256, (9, 4), dtype=np.uint8)
    ref = [[bin(int.from_bytes(p.tobytes(), "big") ^ int.from_bytes(q.tobytes(), "big")).count("1") for q in y]
           for p in x]
    assert hamming_matrix(x, y).tolist() == ref


@pytest.mark.parametrize("name", ["lsh", "itq", "klsh", "kslsh"])
def test_hashers_preserve_neighbourhoods_and_roundtrip(tmp_path: Path, name: str) -> None:
    x, y = blobs(d=20)
    h = make_hasher(name, 16, seed=1, **({"anchors": 60} if name in ("klsh", "kslsh") else {}))
    h.fit(x[:200], y[:200])
    codes = h.encode(x[200:])
    assert codes.shape == (100, 2) and codes.dtype == np.uint8
    d = hamming_matrix(codes, codes)
    same = y[200:, None] == y[None, 200:]
    assert d[same].mean() < d[~same].mean()  # the clusters survive hashing
    loaded = Hasher.load(h.save(tmp_path / name))
    assert type(loaded) is type(h)
    np.testing.assert_array_equal(loaded.encode(x[200:]), codes)
    with pytest.raises(HasherError, match="shape"):
        h.encode(x[:, :5])


def test_lsh_is_sign_of_centred_projection() -> None:
    x, _ = blobs(50, 6)
    h = make_hasher("lsh", 8, seed=3).fit(x)
    np.testing.assert_allclose(h.mean, x.mean(0))
    manual = [[1 if float(np.dot(row - x.mean(0), h.W[:, r])) > 0 else 0 for r in range(8)] for row in x]
    assert unpack_bits(h.encode(x), 8).tolist() == manual


def test_itq_rotation_orthogonal_and_loss_decreases() -> None:
    x, _ = blobs(400, 20)
    h = make_hasher("itq", 8, seed=0).fit(x)
    np.testing.assert_allclose(h.R @ h.R.T, np.eye(8), atol=1e-8)
    assert len(h.losses) == 50
    assert h.losses[-1] <= h.losses[0] and all(b <= a + 1e-6 for a, b in zip(h.losses, h.losses[1:], strict=False))
    v = (x - x.mean(0)) @ h.pca
    assert unpack_bits(h.encode(x), 8).tolist() == (v @ h.R > 0).astype(int).tolist()


def test_klsh_faithful() -> None:
    x, _ = blobs(200, 8)
    h = KLSH(12, seed=2, anchors=50, t=30)
    h.fit(x, labels=Untouchable())  # check 5: never reads labels
    p = h.anchors.shape[0]
    assert p == 50
    # sigma = mean squared train-anchor distance, k = exp(-d^2 / (2 sigma))
    d2 = np.array([[float(((a - b) ** 2).sum()) for b in h.anchors] for a in x])
    assert h.sigma == pytest.approx(d2.mean())
    k = np.exp(-np.array([[float(((a - b) ** 2).sum()) for b in h.anchors] for a in h.anchors]) / (2 * h.sigma))
    hm = np.eye(p) - 1.0 / p
    kc = hm @ k @ hm
    # check 4: w = K^{-1/2} e_S (pseudo-inverse square root on the centred kernel's range), t = 30 per bit
    assert (h.e_s.sum(0) == 30).all() and set(np.unique(h.e_s)) == {0.0, 1.0}
    evals, evecs = np.linalg.eigh(kc)
    keep = evals > evals.max() * 1e-8
    k_inv_half = evecs[:, keep] @ np.diag(evals[keep] ** -0.5) @ evecs[:, keep].T
    np.testing.assert_allclose(h.W, k_inv_half @ h.e_s, atol=1e-6)
    # K^{-1/2} K K^{-1/2} is the projector onto the range of K_c
    np.testing.assert_allclose(k_inv_half @ kc @ k_inv_half @ kc, kc, atol=1e-6)
    # bit = [k_c(x, anchors) . w > 0] with the query kernel centred like K_c
    kx = np.exp(-d2[:5] / (2 * h.sigma))
    kx_c = kx - kx.mean(1, keepdims=True) - k.mean(0) + k.mean()
    assert unpack_bits(h.encode(x[:5]), 12).tolist() == (kx_c @ h.W > 0).astype(int).tolist()


def test_similarity_matrix_multilabel() -> None:
    # items 0 and 1 share label 2; item 2 shares nothing with 0; 1 and 2 share label 0
    lab = np.array([[0, 0, 1], [1, 0, 1], [1, 1, 0]])
    assert similarity_matrix(lab).tolist() == [[1, 1, -1], [1, 1, 1], [-1, 1, 1]]
    assert similarity_matrix(np.array([3, 3, 1])).tolist() == [[1, 1, -1], [1, 1, -1], [-1, -1, 1]]
    assert phi(np.array([0.0]))[0] == 0.0 and phi(np.array([2.0]))[0] == pytest.approx(2 / (1 + np.exp(-2)) - 1)


def test_kslsh_faithful() -> None:
    x, y = blobs(240, 8, k=3, seed=4)
    h = KSLSH(6, seed=0, anchors=40, labelled=120)
    h.fit(x, y)
    # check 1: centred RBF features, sigma = mean squared train-anchor distance, mu = training column means
    d2 = ((x[:, None, :] - h.anchors[None]) ** 2).sum(-1)
    assert h.sigma == pytest.approx(d2.mean())
    np.testing.assert_allclose(h.mu, np.exp(-d2 / (2 * h.sigma)).mean(0))
    kbar = np.exp(-d2 / (2 * h.sigma)) - h.mu
    np.testing.assert_allclose(h.kernel(x), kbar, atol=1e-10)
    # codes = sign of the projection on A
    assert unpack_bits(h.encode(x), 6).tolist() == (kbar @ h.A > 0).astype(int).tolist()
    # check 2: residual R_k = r S - sum y y^T; replay it by hand from the learned A on the same labelled sample
    rng = np.random.default_rng(0)
    rng.choice(240, 40, replace=False)  # the anchor draw comes first
    sel = np.sort(rng.choice(240, 120, replace=False))
    kk = kbar[sel]
    s = similarity_matrix(y[sel])
    r = 6 * s
    for k in range(6):
        yk = np.where(kk @ h.A[:, k] > 0, 1.0, -1.0)
        r = r - np.outer(yk, yk)
        assert h.residual_trace[k] == pytest.approx(float((r * r).sum()))
    # the greedy fit reduces ||r S - H H^T||^2 below ||r S||^2
    assert h.residual_trace[-1] < float(((6 * s) ** 2).sum())
    assert set(h.chosen) <= {"init", "optimised"}
    with pytest.raises(HasherError, match="supervised"):
        KSLSH(4).fit(x)


def test_kslsh_keeps_better_of_init_and_optimised(monkeypatch: pytest.MonkeyPatch) -> None:
    # check 3: with an optimiser that returns a useless vector, every bit must keep the spectral init
    import rsir.hashing.kslsh as mod

    monkeypatch.setattr(mod, "optimise_bit", lambda a0, kk, r, max_iter=500: (-a0 * 0 + 1e-9, 0))
    x, y = blobs(150, 6, k=3, seed=5)
    h = KSLSH(4, anchors=30, labelled=100).fit(x, y)
    assert h.chosen == ["init"] * 4


def test_features_indices_and_texture() -> None:
    bands = ["B03", "B04", "B08", "B11"]
    raw = np.zeros((1, 4, 4, 4))
    raw[0, 0], raw[0, 1], raw[0, 2], raw[0, 3] = 0.1, 0.1, 0.5, 0.3
    fe = FeatureExtractor(bands, band_mean=[0, 0, 0, 0], band_std=[1, 1, 1, 1])
    f = dict(zip(fe.names, fe.raw(raw)[0], strict=True))
    assert f["ndvi_mean"] == pytest.approx((0.5 - 0.1) / 0.6)  # (B08 - B04) / (B08 + B04)
    assert f["ndwi_mean"] == pytest.approx((0.1 - 0.5) / 0.6)  # (B03 - B08) / (B03 + B08)
    assert f["ndbi_mean"] == pytest.approx((0.3 - 0.5) / 0.8)  # (B11 - B08) / (B11 + B08)
    assert "vv_minus_vh_db_mean" not in f
    s1 = FeatureExtractor(["VV", "VH"])
    assert "vv_minus_vh_db_mean" in s1.names and "ndvi_mean" not in s1.names
    # GLCM on a 2x2 checkerboard of levels 0/1: every neighbour pair differs by 1 -> contrast 1, homogeneity 1/2
    c, hmg = glcm_contrast_homogeneity(np.array([[[0, 1], [1, 0]]]))
    assert c[0] == pytest.approx(1.0) and hmg[0] == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    imgs = rng.normal(size=(20, 4, 8, 8)).astype(np.float32)
    fe.fit(fe.raw(imgs))
    z = fe(imgs)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    with pytest.raises(RsirError):
        fe(imgs[:, :2])


def test_hasher_damaged_file(tmp_path: Path) -> None:
    x, _ = blobs(60, 8)
    out = make_hasher("lsh", 8).fit(x).save(tmp_path / "h")
    f = out / "arrays.safetensors"
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(HasherError, match="truncated"):
        Hasher.load(out)


def test_features_band_by_band_equal_whole_array_reference() -> None:
    # raw() works band by band (no float64 copy of the whole batch, only the index bands de-normalised); the
    # features must equal the whole-array computation it replaced, for float32 and float64 input, and leave
    # the caller's images untouched (the percentiles partition scratch copies in place).
    bands = ["B02", "B03", "B04", "B08", "B11"]
    mean, std = np.array([400.0, 600, 500, 2500, 1800]), np.array([90.0, 120, 150, 700, 400])
    fe = FeatureExtractor(bands, mean, std)
    imgs = np.random.default_rng(3).normal(size=(5, 5, 12, 10)).astype(np.float32)
    x = imgs.astype(np.float64)
    refl = x * std[None, :, None, None] + mean[None, :, None, None]
    ref = []
    for c in range(5):
        flat = x[:, c].reshape(5, -1)
        ref += [flat.mean(1), flat.std(1), *np.percentile(flat, (10, 50, 90), axis=1)]
    col = {b: i for i, b in enumerate(bands)}
    for a, b in (("B08", "B04"), ("B03", "B08"), ("B11", "B08")):
        va, vb = refl[:, col[a]], refl[:, col[b]]
        ratio = np.clip((va - vb) / (va + vb), -1, 1).reshape(5, -1)
        ref += [ratio.mean(1), ratio.std(1), *np.percentile(ratio, (10, 90), axis=1)]
    before = imgs.copy()
    got = fe.raw(imgs)
    np.testing.assert_array_equal(got[:, :len(ref)], np.stack(ref, axis=1))
    np.testing.assert_array_equal(got, fe.raw(x))
    np.testing.assert_array_equal(imgs, before)
    x_before = x.copy()
    fe.raw(x)
    np.testing.assert_array_equal(x, x_before)


def test_kslsh_surrogate_value_is_the_surrogate() -> None:
    rng = np.random.default_rng(4)
    kk, a = rng.normal(size=(30, 6)), rng.normal(size=6)
    r = 3.0 * np.where(rng.random((30, 30)) > 0.5, 1.0, -1.0)
    r = (r + r.T) / 2
    assert surrogate_value(a, kk, r) == surrogate(a, kk, r)[0]


def test_row_split_percentiles_equal_one_numpy_call() -> None:
    from rsir.hashing.features import _percentiles

    x = np.random.default_rng(3).normal(size=(70, 500))
    ref = np.percentile(x, (10, 50, 90), axis=1)
    np.testing.assert_array_equal(_percentiles(x.copy(), (10, 50, 90), overwrite=True), ref)
    np.testing.assert_array_equal(_percentiles(x, (10, 50, 90), overwrite=False), ref)
    small = x[:5]
    np.testing.assert_array_equal(_percentiles(small, (10, 90), overwrite=False), np.percentile(small, (10, 90), axis=1))
