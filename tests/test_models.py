"""Every model: output shape and activation, and exact invariance to extra padding."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from data_helpers.config import validate
from models import MODELS, build_model

BASE = {"train_data": "x", "eval_data": "y", "embedding_size": 16, "num_filters": 8, "filter_sizes": [2, 3, 5],
        "hidden_sizes": [8, 6], "filters": 16, "num_heads": 2, "num_blocks": 2, "keep_prob": 0.5}


def cfg(name, **kw):
    return validate({**BASE, "model_name": name, **kw})


def random_ids(rng, lengths, width, vocab=50):
    x = np.zeros((len(lengths), width), np.int32)
    for i, n in enumerate(lengths):
        x[i, :n] = rng.integers(2, vocab, n)
    return x


@pytest.mark.parametrize("ngrams", [{}, {"ngram_buckets": 97, "ngram_max": 3}], ids=["tokens", "ngrams"])
@pytest.mark.parametrize("name", list(MODELS))
def test_extra_padding_never_changes_the_output(name, ngrams):
    model = build_model(cfg(name, **ngrams), vocab_size=50, num_outputs=3)
    assert ("ngram_embedding" in [l.name for l in model.layers]) == bool(ngrams)
    rng = np.random.default_rng(0)
    lengths = [1, 2, 4, 7, 12]  # some shorter than the widest filter
    short = random_ids(rng, lengths, 12)
    long = np.pad(short, ((0, 0), (0, 20)))
    a = model(short, training=False).numpy()
    b = model(long, training=False).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_all_padding_row_gives_finite_probabilities(name):
    model = build_model(cfg(name), vocab_size=50, num_outputs=3)
    out = model(np.zeros((2, 6), np.int32), training=False).numpy()
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_binary_model_has_one_sigmoid_output(name):
    model = build_model(cfg(name), vocab_size=50, num_outputs=1)
    out = model(random_ids(np.random.default_rng(1), [3, 5], 8), training=False).numpy()
    assert out.shape == (2, 1) and ((out > 0) & (out < 1)).all()
    assert model.get_layer("probabilities").activation.__name__ == "sigmoid"


def test_bilstm_pooling_last_is_padding_invariant_too():
    model = build_model(cfg("bilstm", pooling="last"), vocab_size=50, num_outputs=3)
    short = random_ids(np.random.default_rng(3), [1, 4, 9], 9)
    np.testing.assert_allclose(model(short).numpy(), model(np.pad(short, ((0, 0), (0, 7)))).numpy(), atol=1e-5)
    assert "max_pool" not in [l.name for l in model.layers]


@pytest.mark.parametrize("name,pooling,default", [("bilstm", "mean", "max"), ("bilstm", "max_mean", "max"),
                                                  ("fasttext", "max", "mean"), ("fasttext", "max_mean", "mean")])
def test_pooling_choices_are_padding_invariant_and_pool_what_they_say(name, pooling, default):
    """pooling: the model's own by default; max_mean concatenates the max and the mean of the same vectors."""
    model = build_model(cfg(name, pooling=pooling, hidden_sizes=[6]), vocab_size=50, num_outputs=3)
    short = random_ids(np.random.default_rng(5), [1, 4, 9], 9)
    np.testing.assert_allclose(model(short).numpy(), model(np.pad(short, ((0, 0), (0, 7)))).numpy(), atol=1e-5)
    names = [l.name for l in model.layers]
    assert ("max_pool" in names) == (pooling in ("max", "max_mean")) and ("mean_pool" in names) == (pooling in ("mean", "max_mean"))
    if pooling == "max_mean":
        both = model.get_layer("max_mean_pool").output
        width = model.get_layer("max_pool").output.shape[-1]
        assert both.shape[-1] == 2 * width
        parts = keras.Model(model.input, [model.get_layer("max_pool").output, model.get_layer("mean_pool").output, both])
        mx, mean, cat = (t.numpy() for t in parts(short))
        np.testing.assert_allclose(cat, np.concatenate([mx, mean], axis=1))
        assert not np.allclose(mx, mean)
    plain = [l.name for l in build_model(cfg(name, hidden_sizes=[6]), vocab_size=50, num_outputs=3).layers]
    assert f"{default}_pool" in plain and "max_mean_pool" not in plain


def test_pooling_last_is_refused_for_fasttext():
    from data_helpers.config import ConfigError

    with pytest.raises(ConfigError, match="key 'pooling' last is for the BiLSTM"):
        cfg("fasttext", pooling="last")


def test_l2_applies_to_the_output_layer():
    plain = build_model(cfg("textcnn"), 50, 3)
    reg = build_model(cfg("textcnn", l2_reg_lambda=0.1), 50, 3)
    assert not plain.losses and len(reg.losses) == 2


def test_bilstm_atten_shared_attention_is_padding_invariant_too():
    model = build_model(cfg("bilstm_atten", attention="shared"), vocab_size=50, num_outputs=3)
    short = random_ids(np.random.default_rng(4), [1, 4, 9], 9)
    np.testing.assert_allclose(model(short).numpy(), model(np.pad(short, ((0, 0), (0, 7)))).numpy(), atol=1e-5)
    assert type(model.get_layer("attention")).__name__ == "AdditiveAttentionPooling"


def test_bilstm_atten_per_label_reads_each_label_from_its_own_attention():
    model = build_model(cfg("bilstm_atten", l2_reg_lambda=0.1), vocab_size=50, num_outputs=4)
    assert model.get_layer("attention").num_labels == 4
    assert len(model.losses) == 2  # the label-wise output layer's kernel and bias carry the L2
    # A label's logit moves only with its own attention: flattening label 1's (a zero kernel
    # column: equal weights) changes label 1's logit and no other.
    ids = random_ids(np.random.default_rng(5), [3, 8], 8)
    model.get_layer("probabilities").activation = keras.activations.linear
    before = model(ids).numpy()
    kernel = model.get_layer("attention").attention_kernel
    kernel.assign(np.concatenate([kernel.numpy()[:, :1], np.zeros_like(kernel.numpy()[:, 1:2]), kernel.numpy()[:, 2:]], 1))
    after = model(ids).numpy()
    np.testing.assert_allclose(after[:, [0, 2, 3]], before[:, [0, 2, 3]], atol=1e-6)
    assert np.abs(after[:, 1] - before[:, 1]).max() > 0
