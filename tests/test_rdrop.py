"""rdrop_alpha: R-Drop's consistency penalty (a pure function) and the doubled training step."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from data_helpers.config import ConfigError, load_config, validate
from tests.conftest import assert_export_scores_as_trained, quiet, tiny_config
from trainers.losses import consistency_kl

probs_rows = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=5)


def softmax_rows(rows):
    x = np.asarray(rows, np.float64) + 1e-3
    return (x / x.sum(axis=-1, keepdims=True)).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4).flatmap(lambda n: st.tuples(*[st.tuples(probs_rows, probs_rows)] * n)),
       st.sampled_from(["softmax", "binary", "multi_label"]))
def test_the_penalty_is_a_symmetric_divergence(pairs, kind):
    width = 1 if kind == "binary" else min(min(len(a), len(b)) for a, b in pairs)
    p = np.array([a[:width] for a, _ in pairs], np.float32)
    q = np.array([b[:width] for _, b in pairs], np.float32)
    if kind == "softmax":
        p, q = softmax_rows(p), softmax_rows(q)
    pq, qp, pp = (consistency_kl(tf.constant(a), tf.constant(b), kind).numpy() for a, b in ((p, q), (q, p), (p, p)))
    assert pq.shape == (len(pairs),)
    assert np.isfinite(pq).all() and (pq >= 0).all()  # probabilities of exactly 0 and 1 included
    np.testing.assert_allclose(pq, qp, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pp, 0.0)


@pytest.mark.parametrize("kind", ["softmax", "binary", "multi_label"])
def test_the_penalty_is_the_mean_of_both_kl_divergences(kind):
    rng = np.random.default_rng(0)
    if kind == "softmax":
        p, q = softmax_rows(rng.random((3, 4))), softmax_rows(rng.random((3, 4)))
        dists = [(p, q)]
    else:
        p, q = rng.uniform(0.05, 0.95, (3, 1 if kind == "binary" else 4)).astype(np.float32), None
        q = rng.uniform(0.05, 0.95, p.shape).astype(np.float32)
        dists = [(p, q), (1 - p, 1 - q)]  # each sigmoid is a distribution over two outcomes
    kl = lambda a, b: sum(x * np.log(x / y) for x, y in zip(a, b))  # noqa: E731
    want = 0.5 * (kl([a for a, _ in dists], [b for _, b in dists]) + kl([b for _, b in dists], [a for a, _ in dists]))
    want = want.sum(-1) if kind != "multi_label" else want.mean(-1)
    np.testing.assert_allclose(consistency_kl(tf.constant(p), tf.constant(q), kind).numpy(), want, rtol=1e-4)


def test_without_dropout_the_doubled_step_is_the_plain_step():
    """Both passes agree without dropout, so the penalty is 0 and R-Drop's loss and update are the plain ones:
    the doubled batch is split back into the right halves, each paired with its own labels."""
    import keras

    from trainers.loop import TrainStep
    from trainers.losses import per_example_loss
    from trainers.optimizers import pre_reduced

    x = tf.constant(np.random.default_rng(1).integers(1, 20, (8, 5)), tf.int32)
    y = tf.constant([0, 1, 2, 0, 1, 2, 2, 1], tf.int32)
    results = []
    for alpha in (0.0, 4.0):
        keras.utils.set_random_seed(3)
        ids = keras.Input((None,), dtype="int32")
        h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 6)(ids))
        model = keras.Model(ids, keras.layers.Dense(3, activation="softmax")(h))
        optimizer = pre_reduced(keras.optimizers.Adam)(learning_rate=0.1)
        optimizer.build(model.trainable_variables)
        loss_fn = lambda t, p: per_example_loss(t, p, kind="softmax", num_labels=3, label_smoothing=0.1)  # noqa: E731
        step = TrainStep(tf.distribute.get_strategy(), model, optimizer, loss_fn, "softmax", 8, 5.0, rdrop_alpha=alpha)
        batches = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
        out = [step(batches) for _ in range(2)]
        results.append((out, [v.numpy() for v in model.trainable_variables]))
    (plain, w0), (rdrop, w1) = results
    np.testing.assert_allclose(np.array(rdrop), np.array(plain), rtol=1e-5)
    for a, b in zip(w0, w1):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)  # the sums run in another order


def test_rdrop_trains_and_exports(tmp_path, corpus):
    from trainers.trainer import Trainer

    path = tiny_config(tmp_path, corpus, "textcnn", rdrop_alpha=1.0, keep_prob=0.7)
    logs = []
    report = Trainer(load_config(path, log=quiet), log=logs.append, verbose=0).train()
    assert any("R-Drop" in m and "1.0 x" in m for m in logs)
    assert report["accuracy"] >= 0.9, report["accuracy"]
    assert_export_scores_as_trained(tmp_path / "pb" / "1", corpus, report)


def test_negative_alpha_is_refused():
    with pytest.raises(ConfigError, match="key 'rdrop_alpha' must be >= 0"):
        validate({"model_name": "textcnn", "train_data": "x", "eval_data": "y", "rdrop_alpha": -0.5})
